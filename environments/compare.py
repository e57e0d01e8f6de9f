"""Two environments of a project side by side, from their exported documents (pure).

Only what a person compares: per service the image (of image services), the repository and
branch, resources, replicas, port, domains, state and the service's variables (names and
plain values; a secret reference shows the key, never a value); per environment, which
secrets are set and which are missing, and the plain variables' values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldDiff:
    field: str
    a: str
    b: str


@dataclass
class ServiceDiff:
    name: str
    differences: list[FieldDiff]


@dataclass
class SecretRow:
    key: str
    in_a: bool
    in_b: bool


@dataclass
class Comparison:
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    differing: list[ServiceDiff] = field(default_factory=list)
    same: list[str] = field(default_factory=list)
    secrets: list[SecretRow] = field(default_factory=list)
    variables: list[FieldDiff] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.only_in_a or self.only_in_b or self.differing or self.variables
                    or any(row.in_a != row.in_b for row in self.secrets))  # fmt: skip


def service_fields(item: dict[str, Any]) -> dict[str, str]:
    """One service of an exported document as the fields the comparison shows, in order."""
    repository = item.get("repository") or {}
    resources = item.get("resources") or {}
    fields = {"Source": "Git repository" if repository else "Container image"}
    if repository:
        fields["Repository"] = str(repository.get("url", ""))
        fields["Branch"] = str(repository.get("branch", ""))
    else:
        # A Git service's image is its own build's: it always differs, so it is not shown.
        fields["Image"] = str(item.get("image", ""))
    fields["Kind"] = str(item.get("kind", ""))
    fields["Port"] = str(item.get("port", ""))
    fields["Capacity"] = str(resources.get("capacity", ""))
    fields["CPU"] = str(resources.get("cpu", ""))
    fields["Memory"] = str(resources.get("memory", ""))
    fields["Disk"] = str(resources.get("disk", "—"))
    fields["Replicas"] = str(resources.get("replicas", ""))
    fields["Domains"] = ", ".join(item.get("customDomains") or []) or "—"
    fields["State"] = str(item.get("state", ""))
    for variable in item.get("env") or []:
        value = f"${{{{ secrets.{variable['secret']} }}}}" if "secret" in variable else str(variable.get("value", ""))
        fields[f"Variable {variable['name']}"] = value
    return fields


def compare(
    document_a: dict[str, Any],
    document_b: dict[str, Any],
    variables_a: dict[str, str | None],
    variables_b: dict[str, str | None],
) -> Comparison:
    """`document_*` as `export_document` writes them; `variables_*`: key → plain value, or
    None for a secret (whose value is never read for this)."""
    services_a = {item["name"]: item for item in document_a["spec"]["services"]}
    services_b = {item["name"]: item for item in document_b["spec"]["services"]}
    result = Comparison(
        only_in_a=sorted(set(services_a) - set(services_b)),
        only_in_b=sorted(set(services_b) - set(services_a)),
    )
    for name in sorted(set(services_a) & set(services_b)):
        a, b = service_fields(services_a[name]), service_fields(services_b[name])
        differences = [
            FieldDiff(key, a.get(key, "—"), b.get(key, "—")) for key in dict.fromkeys([*a, *b]) if a.get(key) != b.get(key)
        ]
        if differences:
            result.differing.append(ServiceDiff(name, differences))
        else:
            result.same.append(name)
    secret_keys = set(document_a["spec"].get("secrets") or []) | set(document_b["spec"].get("secrets") or [])
    plain_a = {k: v for k, v in variables_a.items() if v is not None}
    plain_b = {k: v for k, v in variables_b.items() if v is not None}
    secret_keys -= set(plain_a) | set(plain_b)
    result.secrets = [
        SecretRow(key, variables_a.get(key, "") is None, variables_b.get(key, "") is None) for key in sorted(secret_keys)
    ]
    result.variables = [
        FieldDiff(key, plain_a.get(key, "—"), plain_b.get(key, "—"))
        for key in sorted(set(plain_a) | set(plain_b))
        if plain_a.get(key) != plain_b.get(key)
    ]
    return result
