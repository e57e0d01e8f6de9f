"""The deploy modal's rules, field by field.

`ServiceForm` is the one place where a service spec is validated: the deploy modal posts to
it, and the YAML importer turns each service of a file into the same form data
(`form_data_from_spec`) and runs it through the same form, so a rule never exists twice.

`cleaned_data` holds the spec under the model's field names (`cpu_millicores`, `memory_mib`,
`env_vars` as a list of dicts...), ready for `services.actions.deploy_service`.
"""

from __future__ import annotations

import re
import shlex
from decimal import Decimal
from typing import Any

from django import forms
from django.core.validators import URLValidator

from environments.models import Environment
from services.models import SPEC_FIELDS, Service, disk_rule_errors, validate_service_name

MIN_CPU = Decimal("0.1")
MAX_CPU = Decimal("16")
MIN_MEMORY_MIB = 16
MAX_MEMORY_MIB = 64 * 1024
MAX_DISK_MIB = 100 * 1024
MAX_REPLICAS = 50
MAX_ENV_VARS = 500
MAX_CUSTOM_DOMAINS = 20

# docker/distribution's reference grammar: [domain[:port]/]path[:tag][@digest].
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_REF_RE = re.compile(r"^\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")
_MIB_PER_UNIT = {"": 1, "m": 1, "mi": 1, "mb": 1, "mib": 1, "g": 1024, "gi": 1024, "gb": 1024, "gib": 1024}
_HOST_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# What `git check-ref-format --branch` refuses, in short.
_BRANCH_RE = re.compile(r"^(?!/)(?!.*(?:\.\.|//|@\{|\.lock$|/$|\.$))[^\s~^:?*\[\\\x00-\x1f\x7f]+$")

IMAGE_EXAMPLES = "nginx:1.27, ghcr.io/acme/api:v2 or registry.example.com:5000/team/app@sha256:…"


# --- parsers (pure: also used by the YAML importer through the form) -----------------------------


def parse_image(value: str) -> str:
    value = value.strip()
    if not value:
        raise forms.ValidationError("Give the container image to run.")
    if any(ch.isspace() for ch in value):
        raise forms.ValidationError("An image reference has no spaces.")
    if len(value) > 500:
        raise forms.ValidationError("An image reference is at most 500 characters.")
    if not IMAGE_RE.match(value):
        # Registry hosts may have capitals, repository paths may not: say so when that is all.
        first, slash, rest = value.partition("/")
        has_domain = slash and ("." in first or ":" in first or first == "localhost")
        lowered = f"{first}/{rest.lower()}" if has_domain else value.lower()
        if IMAGE_RE.match(lowered):
            raise forms.ValidationError("Repository names are lowercase (the registry host may not be).")
        raise forms.ValidationError(f"This is not an image reference. Use one like {IMAGE_EXAMPLES}.")
    return value


def split_command(value: str) -> list[str]:
    """A shell-like string split into words, as a shell would (quotes group, no expansion)."""
    try:
        return shlex.split(value)
    except ValueError:
        raise forms.ValidationError(
            "A quote is not closed. Close it, or escape a literal quote with a backslash."
        ) from None


def parse_env_vars(text: str) -> list[dict[str, str]]:
    """`KEY=value` lines → `[{"name", "value"} | {"name", "secret"}]`.

    Blank lines and `#` comments are skipped; one pair of matching quotes around a value is
    removed (as in a `.env` file); `${{ secrets.NAME }}` refers to the environment secret NAME.
    """
    result: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            errors.append(f"Line {number}: write KEY=value.")
            continue
        if not ENV_KEY_RE.match(key):
            errors.append(
                f"Line {number}: “{key}” is not a valid variable name: use letters, digits and "
                "underscores, not starting with a digit."
            )
            continue
        if key in seen:
            errors.append(f"Line {number}: {key} is already set on line {seen[key]}.")
            continue
        seen[key] = number
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        secret = SECRET_REF_RE.match(value)
        if secret:
            result.append({"name": key, "secret": secret.group(1)})
        elif "${{" in value:
            errors.append(
                f"Line {number}: a secret reference is the whole value, written ${{{{ secrets.NAME }}}}."
            )
        else:
            result.append({"name": key, "value": value})
    if len(result) > MAX_ENV_VARS:
        errors.append(f"At most {MAX_ENV_VARS} variables.")
    if errors:
        raise forms.ValidationError(errors)
    return result


def format_env_vars(env_vars: list[dict[str, str]]) -> str:
    """The inverse of `parse_env_vars`: what the textarea shows for a saved service."""
    lines = []
    for item in env_vars:
        if "secret" in item:
            lines.append(f"{item['name']}=${{{{ secrets.{item['secret']} }}}}")
            continue
        value = item.get("value", "")
        # Quote what parsing would otherwise change: surrounding spaces or quotes.
        if value != value.strip() or (len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'"):
            value = f'"{value}"'
        lines.append(f"{item['name']}={value}")
    return "\n".join(lines)


def parse_mib(value: str | int, *, what: str) -> int:
    """`512`, `512Mi`, `1Gi`, `1.5 GiB` → MiB. Units are binary: G and GB mean GiB."""
    text = str(value).strip()
    match = _QUANTITY_RE.match(text)
    if not match or match.group(2).lower() not in _MIB_PER_UNIT:
        raise forms.ValidationError(f"Give the {what} in MiB or GiB, like 512, 512Mi or 1.5Gi.")
    mib = Decimal(match.group(1)) * _MIB_PER_UNIT[match.group(2).lower()]
    if mib != mib.to_integral_value():
        raise forms.ValidationError(f"Give the {what} as a whole number of MiB.")
    return int(mib)


def format_mib(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib and mib % 1024 == 0 else f"{mib}Mi"


def _hostname_error(host: str) -> str | None:
    if len(host) > 253:
        return f"{host} is longer than 253 characters."
    labels = host.split(".")
    if len(labels) < 2:
        return f"{host} is not a full domain name (like www.example.com)."
    for label in labels:
        if not _HOST_LABEL_RE.match(label):
            return (
                f"{host} is not a valid domain name: each part between dots has 1–63 letters, "
                "digits or hyphens, and does not start or end with a hyphen."
            )
    if labels[-1].isdigit():
        return f"{host} is an IP address, not a domain name."
    return None


def parse_domains(text: str) -> list[str]:
    """Comma-, space- or newline-separated host names, lowercased, in the order given."""
    domains: list[str] = []
    errors: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        host = item.lower().rstrip(".")
        if "://" in host or "/" in host:
            errors.append(f"{item}: give only the host name, without http:// or a path.")
            continue
        error = _hostname_error(host)
        if error:
            errors.append(error)
        elif host in domains:
            errors.append(f"{host} is listed twice.")
        else:
            domains.append(host)
    if len(domains) > MAX_CUSTOM_DOMAINS:
        errors.append(f"At most {MAX_CUSTOM_DOMAINS} custom domains.")
    if errors:
        raise forms.ValidationError(errors)
    return domains


# --- the form ------------------------------------------------------------------------------------


class ServiceForm(forms.Form):
    """Every field of the deploy modal. On edit (`service=`) the name is fixed."""

    name = forms.CharField(
        label="Service name",
        max_length=63,
        validators=[validate_service_name],
        help_text="Also the host name other services of the environment use to reach it.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    kind = forms.ChoiceField(label="Kind", choices=Service.Kind.choices, initial=Service.Kind.WEB)
    # "Image" rather than the model's "Container image": that is the image field's label, and
    # a radio with the same name would make both hard to tell apart for a screen reader.
    source = forms.ChoiceField(
        label="Source",
        choices=[(Service.Source.IMAGE, "Image"), (Service.Source.GIT, "Git repository")],
        initial=Service.Source.IMAGE,
        widget=forms.RadioSelect,
    )
    image = forms.CharField(label="Container image", required=False, max_length=500)
    repository_url = forms.CharField(label="Repository URL", required=False, max_length=500)
    # Prefilled like the Dockerfile: most repositories build from `main`.
    branch = forms.CharField(label="Branch", required=False, max_length=200, initial="main")
    repository_path = forms.CharField(label="Path in the repository", required=False, max_length=500)
    dockerfile = forms.CharField(label="Dockerfile", required=False, max_length=500, initial="Dockerfile")
    build_args = forms.CharField(
        label="Build arguments",
        required=False,
        max_length=16 * 1024,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="One KEY=value per line, passed to the Dockerfile's ARG instructions.",
    )
    git_token_secret = forms.CharField(
        label="Token secret",
        required=False,
        max_length=253,
        help_text="For a private repository: the name of the environment secret holding an access token.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    port = forms.IntegerField(
        label="Port",
        min_value=1,
        max_value=65535,
        initial=8080,
        error_messages={
            "required": "Give the port the container listens on.",
            "invalid": "A port is a whole number from 1 to 65535.",
            "min_value": "A port is a whole number from 1 to 65535.",
            "max_value": "A port is a whole number from 1 to 65535.",
        },
    )
    command = forms.CharField(label="Command", required=False, max_length=4000)
    args = forms.CharField(label="Arguments", required=False, max_length=4000)
    env_vars = forms.CharField(
        label="Environment variables",
        required=False,
        max_length=64 * 1024,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="One KEY=value per line; ${{ secrets.NAME }} uses the environment secret NAME.",
    )
    capacity = forms.ChoiceField(label="Capacity", choices=Service.Capacity.choices, initial=Service.Capacity.ON_DEMAND)
    cpu = forms.DecimalField(
        label="CPU (vCPU)",
        max_digits=6,
        decimal_places=3,
        initial=Decimal("0.25"),
        error_messages={
            "required": "Give the CPU in vCPU, at least 0.1.",
            "invalid": "Give the CPU as a number of vCPU, like 0.5.",
            "min_value": f"Give at least {MIN_CPU} vCPU.",
            "max_value": f"At most {MAX_CPU} vCPU per replica.",
            "max_decimal_places": "Give the CPU with at most three decimals (1 millicore).",
        },
        min_value=MIN_CPU,
        max_value=MAX_CPU,
    )
    memory = forms.CharField(label="Memory", initial="256Mi", max_length=20, help_text="MiB, or 512Mi, 1Gi, 1.5 GiB.")
    disk = forms.CharField(
        label="Disk",
        required=False,
        max_length=20,
        help_text="TCP services only, mounted at /data; kept while the service is stopped. It can grow, never shrink.",
    )
    replicas = forms.IntegerField(
        label="Replicas",
        min_value=1,
        max_value=MAX_REPLICAS,
        initial=1,
        error_messages={
            "required": "Give the number of replicas.",
            "invalid": f"Replicas is a whole number from 1 to {MAX_REPLICAS}.",
            "min_value": f"Replicas is a whole number from 1 to {MAX_REPLICAS}.",
            "max_value": f"Replicas is a whole number from 1 to {MAX_REPLICAS}.",
        },
    )
    health_check_path = forms.CharField(label="Health-check path", required=False, max_length=500, initial="/")
    deploy_on_push = forms.BooleanField(
        label="Deploy on push",
        required=False,
        initial=True,
        help_text="A push to this branch builds and deploys the service (through the project's webhook).",
    )
    custom_domains = forms.CharField(
        label="Custom domains",
        required=False,
        max_length=8000,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="Web services only; separate them with commas, spaces or new lines.",
    )

    def __init__(self, *args: Any, environment: Environment, service: Service | None = None, **kwargs: Any) -> None:
        if service is not None:
            kwargs["initial"] = {**spec_of(service), **(kwargs.get("initial") or {})}
        super().__init__(*args, **kwargs)
        self.environment = environment
        self.service = service
        if service is not None:
            # A disabled field takes its initial value whatever is posted.
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "The name of a service cannot change."

    # -- one field at a time

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if self.service is not None:
            return self.service.name
        if Service.objects.filter(environment=self.environment, name=name).exists():
            raise forms.ValidationError("This environment already has a service with this name.")
        return name

    def clean_build_args(self) -> list[dict[str, str]]:
        args = parse_env_vars(self.cleaned_data["build_args"])
        if any("secret" in arg for arg in args):
            # A build argument ends up in the image's history, readable by anyone who pulls it.
            raise forms.ValidationError("Build arguments are stored in the image: do not pass secrets through them.")
        return args

    def clean_git_token_secret(self) -> str:
        value = self.cleaned_data["git_token_secret"].strip()
        if value and not ENV_KEY_RE.match(value):
            raise forms.ValidationError("Give the name of an environment secret, like GIT_TOKEN.")
        return value

    def clean_image(self) -> str:
        value = self.cleaned_data["image"]
        return parse_image(value) if value.strip() else ""

    def clean_repository_url(self) -> str:
        value = self.cleaned_data["repository_url"].strip()
        if value:
            try:
                URLValidator(schemes=["https", "http", "ssh", "git"])(value)
            except forms.ValidationError:
                raise forms.ValidationError(
                    "Give the repository's URL, like https://github.com/acme/shop.git."
                ) from None
        return value

    def clean_deploy_on_push(self) -> bool:
        # An unticked checkbox sends nothing: only a form that showed the box (the deploy
        # modal marks it) can turn it off. Elsewhere (a YAML file, a clone) it stays as it was,
        # on for a new service.
        if "deploy_on_push_shown" not in self.data:
            return self.service.deploy_on_push if self.service is not None else True
        return bool(self.cleaned_data.get("deploy_on_push"))

    def clean_branch(self) -> str:
        value = self.cleaned_data["branch"].strip()
        if value and not _BRANCH_RE.match(value):
            raise forms.ValidationError("This is not a valid branch name.")
        return value

    def _clean_relative_path(self, field: str) -> str:
        value = self.cleaned_data[field].strip()
        if value.startswith("/") or ".." in value.split("/") or any(ch.isspace() for ch in value):
            raise forms.ValidationError("Give a path inside the repository, like services/api (no .., no spaces).")
        return value

    def clean_repository_path(self) -> str:
        return self._clean_relative_path("repository_path")

    def clean_dockerfile(self) -> str:
        return self._clean_relative_path("dockerfile") or "Dockerfile"

    def clean_command(self) -> list[str]:
        return split_command(self.cleaned_data["command"])

    def clean_args(self) -> list[str]:
        return split_command(self.cleaned_data["args"])

    def clean_env_vars(self) -> list[dict[str, str]]:
        return parse_env_vars(self.cleaned_data["env_vars"])

    def clean_memory(self) -> int:
        mib = parse_mib(self.cleaned_data["memory"], what="memory")
        if mib < MIN_MEMORY_MIB:
            raise forms.ValidationError(f"Give at least {MIN_MEMORY_MIB} MiB of memory.")
        if mib > MAX_MEMORY_MIB:
            raise forms.ValidationError(f"At most {format_mib(MAX_MEMORY_MIB)} of memory per replica.")
        return mib

    def clean_disk(self) -> int:
        value = self.cleaned_data["disk"].strip()
        if not value:
            return 0
        mib = parse_mib(value, what="disk")
        if mib > MAX_DISK_MIB:
            raise forms.ValidationError(f"At most {format_mib(MAX_DISK_MIB)} of disk.")
        return mib

    def clean_health_check_path(self) -> str:
        value = self.cleaned_data["health_check_path"].strip() or "/"
        if not value.startswith("/"):
            raise forms.ValidationError("The health-check path starts with /, like /healthz.")
        if any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise forms.ValidationError("The health-check path has no spaces.")
        return value

    def clean_custom_domains(self) -> list[str]:
        domains = parse_domains(self.cleaned_data["custom_domains"])
        ingress_domain = self.environment.cluster.ingress_domain.strip(".").lower()
        errors = []
        for host in domains:
            # Hosts under the cluster's own domain are the generated Access URLs of services.
            if ingress_domain and (host == ingress_domain or host.endswith(f".{ingress_domain}")):
                errors.append(f"{host} is under {ingress_domain}, which ale uses for Access URLs.")
        taken = self._domains_in_use()
        errors += [f"{host} is already used by another service." for host in domains if host in taken]
        if errors:
            raise forms.ValidationError(errors)
        return domains

    def _domains_in_use(self) -> set[str]:
        """Custom domains of the other services on the same cluster: one host, one service."""
        others = Service.objects.filter(environment__cluster_id=self.environment.cluster_id).exclude(custom_domains=[])
        if self.service is not None:
            others = others.exclude(pk=self.service.pk)
        return {host for domains in others.values_list("custom_domains", flat=True) for host in domains}

    def _current_disk_mib(self) -> int:
        """The disk the service being edited holds now: what a change may grow but not shrink."""
        return self.service.disk_mib_held if self.service is not None else 0

    # -- rules across fields

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source") == Service.Source.IMAGE and "image" in data and not data["image"]:
            self.add_error("image", "Give the container image to run.")
        if data.get("source") == Service.Source.GIT:
            if "repository_url" in data and not data["repository_url"]:
                self.add_error("repository_url", "Give the repository's URL, like https://github.com/acme/shop.git.")
            if "branch" in data and not data["branch"]:
                self.add_error("branch", "Give the branch to build, like main.")
            if not self.environment.cluster.registry:
                self.add_error(
                    "source",
                    f"The cluster {self.environment.cluster.label} has no image registry for builds: "
                    "ask operations to set one, or give a container image.",
                )
            # The image of a Git service is the one its last build pushed, never what was typed.
            data["image"] = self.service.image if self.service is not None and self.service.is_git else ""
        kind = data.get("kind")
        if kind == Service.Kind.WEB and data.get("disk"):
            self.add_error("disk", "Only TCP services (databases and the like) get a disk; a web service has none.")
        if kind == Service.Kind.TCP and data.get("custom_domains"):
            self.add_error("custom_domains", "Custom domains are for web services; a TCP service has an address.")
        if kind and "disk" in data and "replicas" in data:
            proposed = {"kind": kind, "disk_mib": data["disk"], "replicas": data["replicas"]}
            for field, message in disk_rule_errors(self._current_disk_mib(), proposed).items():
                self.add_error(field, message)
        # The spec under the model's names, for deploy_service.
        if "cpu" in data:
            data["cpu_millicores"] = int(data["cpu"] * 1000)
        if "memory" in data:
            data["memory_mib"] = data["memory"]
        if "disk" in data:
            data["disk_mib"] = data["disk"]
        return data

    @property
    def spec(self) -> dict[str, Any]:
        """The validated spec (SPEC_FIELDS); only after `is_valid()`."""
        return {field: self.cleaned_data[field] for field in SPEC_FIELDS}


def form_data_from_spec(spec: dict[str, Any], *, name: str = "") -> dict[str, Any]:
    """A spec (a Revision's, a YAML file's) as the form's data: what the user would type."""
    data: dict[str, Any] = {
        "name": name,
        "kind": spec.get("kind", Service.Kind.WEB),
        "source": spec.get("source", Service.Source.IMAGE),
        "image": spec.get("image", ""),
        "repository_url": spec.get("repository_url", ""),
        "branch": spec.get("branch", ""),
        "repository_path": spec.get("repository_path", ""),
        "dockerfile": spec.get("dockerfile", "Dockerfile"),
        "build_args": format_env_vars(spec.get("build_args") or []),
        "git_token_secret": spec.get("git_token_secret", ""),
        "port": spec.get("port", ""),
        "command": shlex.join(spec.get("command") or []),
        "args": shlex.join(spec.get("args") or []),
        "env_vars": format_env_vars(spec.get("env_vars") or []),
        "capacity": spec.get("capacity", Service.Capacity.ON_DEMAND),
        "cpu": str(Decimal(spec.get("cpu_millicores", 250)) / 1000),
        "memory": format_mib(spec.get("memory_mib", 256)),
        "disk": format_mib(spec["disk_mib"]) if spec.get("disk_mib") else "",
        "replicas": spec.get("replicas", 1),
        "health_check_path": spec.get("health_check_path", "/"),
        "custom_domains": "\n".join(spec.get("custom_domains") or []),
    }
    return data


def spec_of(service: Service) -> dict[str, Any]:
    """The deploy modal pre-filled from a service (edit, redeploy)."""
    return {**form_data_from_spec(service.snapshot(), name=service.name), "deploy_on_push": service.deploy_on_push}
