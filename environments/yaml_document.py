"""The YAML document of an environment: every service's deployment settings, in one file.

    apiVersion: ale/v1
    kind: Environment
    metadata: {name, project, exportedAt}
    spec:
      services: [{name, kind, image, repository, port, command, args, env, resources,
                  healthCheckPath, customDomains, state}, ...]   # sorted by name
      secrets: [KEY, ...]                                          # keys only, never values
      firewall: {allowExternalTcp, allowCidrs}

Export writes keys in a fixed order and services sorted by name, so export → import into an
empty environment → export gives the same `spec` byte for byte (metadata says where and when).

Import reads untrusted bytes. It refuses before parsing what is too large or not UTF-8 text,
then composes values from YAML parser events, refusing anchors and aliases (billion laughs), any
tag but the standard scalars and collections (`!!python/object`...), nesting deeper than
`MAX_DEPTH` and more than `MAX_NODES` nodes; each service then goes through the deploy modal's
own rules (`services.forms.ServiceForm`). Every error names the field path and the line.
Applying is one transaction over bulk writes, then one `reconcile_environment` that fans out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from environments.forms import validate_cidrs
from environments.models import Environment, EnvironmentVariable
from services import guards, lifecycle, queue
from services.forms import ENV_KEY_RE, ServiceForm, form_data_from_spec, format_mib
from services.models import Service, disk_rule_errors, spec_secret_keys
from spaces import audit
from spaces.resources import check_allocation, spec_from_fields

API_VERSION = "ale/v1"
KIND = "Environment"
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 20
# About 550 bytes of composed node each: the limit keeps a parse under ~30 MiB, well above
# what 500 fully specified services need (about 80 nodes each).
MAX_NODES = 50_000
MAX_SERVICES = 500
MAX_ERRORS = 50

_YAML = "tag:yaml.org,2002:"
# Explicit tags a person might write without meaning harm; everything else (python/*,
# binary, set, omap, timestamp...) is refused.
ALLOWED_TAGS = {None, "!", *(f"{_YAML}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))}
_PLAIN_SCALARS = {f"{_YAML}{name}" for name in ("str", "int", "float", "bool", "null")}

Path = tuple[str | int, ...]


class DocumentError(Exception):
    """The file is refused; `messages` are the sentences to show, each naming line and field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


# libyaml's scanner and parser when the wheel has them (about 20 times faster), else PyYAML's
# own: either way only events come out of it, and the values are composed here.
_EventParser: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Composer:
    """Values from parser events under the limits: no aliases or anchors, known tags only,
    bounded depth and node count. Building the values directly, without PyYAML's node tree,
    keeps memory to the values themselves."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        # Scalars are resolved (`80` → int) and constructed the way SafeLoader does it.
        self.scalars = yaml.SafeLoader("")
        self.nodes = 0
        self.lines: dict[Path, int] = {}

    def _check(self, event: Any, depth: int) -> None:
        if isinstance(event, AliasEvent):
            raise DocumentError([f"{_at(event.start_mark)}: aliases (*{event.anchor}) are not allowed in an ale file."])
        if getattr(event, "anchor", None) is not None:
            raise DocumentError([f"{_at(event.start_mark)}: anchors (&{event.anchor}) are not allowed in an ale file."])
        tag = getattr(event, "tag", None)
        if tag not in ALLOWED_TAGS:
            raise DocumentError([f"{_at(event.start_mark)}: the tag {tag} is not allowed in an ale file."])
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise DocumentError([f"{_at(event.start_mark)}: the file has more than {MAX_NODES} values."])
        if depth > MAX_DEPTH:
            raise DocumentError([f"{_at(event.start_mark)}: the file is nested more than {MAX_DEPTH} levels deep."])

    def _scalar(self, event: ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.scalars.resolve(ScalarNode, event.value, event.implicit)
        if tag not in _PLAIN_SCALARS:
            # Implicitly resolved timestamps and the like stay the text that was written.
            return event.value
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            return self.scalars.construct_object(node, deep=True)
        except (ValueError, yaml.YAMLError):
            # An integer with too many digits, for one.
            raise DocumentError([f"{_at(event.start_mark)}: this value cannot be read."]) from None

    def value(self, path: Path, depth: int) -> Any:
        event = self.parser.get_event()
        self._check(event, depth)
        self.lines[path] = event.start_mark.line + 1
        if isinstance(event, ScalarEvent):
            return self._scalar(event)
        if isinstance(event, SequenceStartEvent):
            items = []
            while not self.parser.check_event(SequenceEndEvent):
                items.append(self.value(path + (len(items),), depth + 1))
            self.parser.get_event()
            return items
        if isinstance(event, MappingStartEvent):
            result: dict[str, Any] = {}
            while not self.parser.check_event(MappingEndEvent):
                key_event = self.parser.peek_event()
                if not isinstance(key_event, ScalarEvent):
                    raise DocumentError([f"{_at(key_event.start_mark)}: a key must be a plain name."])
                self.parser.get_event()
                self._check(key_event, depth + 1)
                key = key_event.value
                if key in result:
                    raise DocumentError([f"{_at(key_event.start_mark)}: {_where(path + (key,), None)} is given twice."])
                result[key] = self.value(path + (key,), depth + 1)
            self.parser.get_event()
            return result
        raise DocumentError([f"{_at(event.start_mark)}: this is not valid YAML."])

    def document(self) -> Any:
        self.parser.get_event()  # StreamStartEvent
        if self.parser.check_event(StreamEndEvent):
            raise DocumentError(["The file is empty."])
        self.parser.get_event()  # DocumentStartEvent
        value = self.value((), 1)
        self.parser.get_event()  # DocumentEndEvent
        if not self.parser.check_event(StreamEndEvent):
            event = self.parser.get_event()
            raise DocumentError(
                [f"{_at(event.start_mark)}: this is not valid YAML (expected a single document in the stream, "
                 "but found another document)."]
            )  # fmt: skip
        return value


# --- reading -------------------------------------------------------------------------------------


def decode(data: bytes) -> str:
    """The text of an uploaded file, refused before any parsing when too large or not text."""
    if len(data) > MAX_BYTES:
        raise DocumentError([f"The file is larger than 1 MiB ({len(data):,} bytes); an ale file is much smaller."])
    if b"\x00" in data:
        raise DocumentError(["This is not a YAML file: it holds binary data."])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DocumentError([f"line {line}: this is not UTF-8 text; save the file as UTF-8."]) from None


def load(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document under the limits; returns the value and the line of each path."""
    parser = _EventParser(text)
    composer = _Composer(parser)
    try:
        value = composer.document()
    except DocumentError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{_at(mark)}: " if mark else ""
        detail = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise DocumentError([f"{where}this is not valid YAML ({detail})."]) from None
    except yaml.YAMLError as exc:
        raise DocumentError([f"This is not valid YAML ({exc})."]) from None
    finally:
        parser.dispose()
    if value is None:
        raise DocumentError(["The file is empty."])
    return value, composer.lines


# --- validation ----------------------------------------------------------------------------------


def _where(path: Path, lines: dict[Path, int] | None) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    text = text or "the document"
    if lines is not None:
        # The nearest enclosing value that has a line (a missing field: its parent).
        for cut in range(len(path), -1, -1):
            if path[:cut] in lines:
                return f"{text} (line {lines[path[:cut]]})"
    return text


@dataclass
class ParsedService:
    name: str
    spec: dict[str, Any]
    state: str
    index: int


@dataclass
class ParsedDocument:
    services: list[ParsedService]
    secret_keys: list[str]
    firewall: tuple[bool, list[str]] | None
    digest: str


SERVICE_KEYS = (
    "name", "kind", "image", "repository", "port", "command", "args", "env",
    "resources", "healthCheckPath", "customDomains", "state",
)  # fmt: skip
RESOURCE_KEYS = ("capacity", "cpu", "memory", "disk", "replicas")
REPOSITORY_KEYS = ("url", "branch", "path", "dockerfile", "buildArgs", "tokenSecret")
_REPOSITORY_TEXT_KEYS = ("url", "branch", "path", "dockerfile", "tokenSecret")
# ServiceForm field → where it sits in a service of the file.
FORM_FIELD_PATHS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "kind": ("kind",),
    "source": ("repository",),
    "image": ("image",),
    "repository_url": ("repository", "url"),
    "branch": ("repository", "branch"),
    "repository_path": ("repository", "path"),
    "dockerfile": ("repository", "dockerfile"),
    "build_args": ("repository", "buildArgs"),
    "git_token_secret": ("repository", "tokenSecret"),
    "port": ("port",),
    "command": ("command",),
    "args": ("args",),
    "env_vars": ("env",),
    "capacity": ("resources", "capacity"),
    "cpu": ("resources", "cpu"),
    "memory": ("resources", "memory"),
    "disk": ("resources", "disk"),
    "replicas": ("resources", "replicas"),
    "health_check_path": ("healthCheckPath",),
    "custom_domains": ("customDomains",),
}


class _Errors:
    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines
        self.messages: list[str] = []

    def add(self, path: Path, message: str) -> None:
        if len(self.messages) < MAX_ERRORS:
            self.messages.append(f"{_where(path, self.lines)}: {message}")
        elif len(self.messages) == MAX_ERRORS:
            self.messages.append("…and more errors; fix these first.")

    def unknown(self, value: dict, allowed: tuple[str, ...], path: Path) -> None:
        for key in value:
            if key not in allowed:
                self.add(path + (key,), f"unknown field “{key}”; the fields here are {', '.join(allowed)}.")


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _expect(errors: _Errors, value: Any, kinds: tuple[type, ...], what: str, path: Path) -> bool:
    # bool is an int to Python, never to a person writing `port: true`.
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        errors.add(path, f"expected {what}, got {_type_name(value)}.")
    return ok


def _optional(errors: _Errors, mapping: dict, key: str, kinds: tuple[type, ...], what: str, path: Path, default: Any) -> Any:
    if key not in mapping:
        return default
    value = mapping[key]
    return value if _expect(errors, value, kinds, what, path + (key,)) else None


def _string_list(errors: _Errors, mapping: dict, key: str, path: Path) -> list[str] | None:
    value = _optional(errors, mapping, key, (list,), "a list of text", path, [])
    if value is None:
        return None
    ok = True
    for i, item in enumerate(value):
        ok = _expect(errors, item, (str,), "text", path + (key, i)) and ok
    return value if ok else None


def _quantity_text(value: Any) -> str:
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


class ImportServiceForm(ServiceForm):
    """The deploy modal's form with the rules that ask the database answered from what the
    importer loaded once for the whole file (a query per service would not scale)."""

    def __init__(self, *args: Any, taken_domains: set[str], current_disks: dict[str, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._taken_domains = taken_domains
        self._current_disks = current_disks

    def clean_name(self) -> str:
        # Existing services are updated, not refused: the importer decides create or change.
        return self.cleaned_data["name"]

    def _domains_in_use(self) -> set[str]:
        return self._taken_domains

    def _current_disk_mib(self) -> int:
        # A service of the file that exists already is changed, so its disk may only grow.
        return self._current_disks.get(self.cleaned_data.get("name", ""), 0)


def _service_form_data(errors: _Errors, item: dict, path: Path) -> tuple[dict[str, Any], str] | None:
    """One service of the file as the deploy modal's form data, after the type checks."""
    before = len(errors.messages)
    errors.unknown(item, SERVICE_KEYS, path)
    if "name" not in item:
        errors.add(path, "a service needs a name.")
    name = _optional(errors, item, "name", (str,), "text", path, "")
    kind = _optional(errors, item, "kind", (str,), "web or tcp", path, Service.Kind.WEB)
    image = _optional(errors, item, "image", (str,), "text", path, "")
    if "port" not in item:
        errors.add(path, "a service needs a port.")
    port = _optional(errors, item, "port", (int,), "a whole number", path, "")
    command = _string_list(errors, item, "command", path)
    args = _string_list(errors, item, "args", path)
    health = _optional(errors, item, "healthCheckPath", (str,), "text", path, "/")
    domains = _string_list(errors, item, "customDomains", path)
    state = _optional(errors, item, "state", (str,), "running or stopped", path, Service.DesiredState.RUNNING)
    if isinstance(state, str) and state not in Service.DesiredState.values:
        errors.add(path + ("state",), f"“{state}” is not a state; use running or stopped.")

    env_vars: list[dict[str, str]] = []
    env = _optional(errors, item, "env", (list,), "a list of {name, value} or {name, secret}", path, [])
    for i, entry in enumerate(env or []):
        where = path + ("env", i)
        if not _expect(errors, entry, (dict,), "{name, value} or {name, secret}", where):
            continue
        errors.unknown(entry, ("name", "value", "secret"), where)
        key = entry.get("name")
        if not isinstance(key, str):
            errors.add(where + ("name",), "each variable needs a name (text).")
            continue
        if ("value" in entry) == ("secret" in entry):
            errors.add(where, "give either value or secret (the key of an environment secret).")
            continue
        if "secret" in entry:
            ref = entry["secret"]
            if not isinstance(ref, str) or not ENV_KEY_RE.match(ref):
                errors.add(where + ("secret",), "the key of an environment secret: letters, digits and underscores.")
                continue
            env_vars.append({"name": key, "secret": ref})
        else:
            value = entry["value"]
            if not _expect(errors, value, (str,), "text (quote numbers and true/false)", where + ("value",)):
                continue
            if "\n" in value or "\r" in value:
                errors.add(where + ("value",), "a variable's value is one line.")
                continue
            env_vars.append({"name": key, "value": value})

    resources = _optional(errors, item, "resources", (dict,), "a mapping", path, {}) or {}
    errors.unknown(resources, RESOURCE_KEYS, path + ("resources",))
    rpath = path + ("resources",)
    capacity = _optional(errors, resources, "capacity", (str,), "on_demand or spot", rpath, Service.Capacity.ON_DEMAND)
    cpu = _optional(errors, resources, "cpu", (int, float, str), "a number of vCPU", rpath, "0.25")
    memory = _optional(errors, resources, "memory", (int, str), "a size like 512Mi", rpath, "256Mi")
    disk = _optional(errors, resources, "disk", (int, str), "a size like 1Gi", rpath, "")
    replicas = _optional(errors, resources, "replicas", (int,), "a whole number", rpath, 1)

    repository = _optional(errors, item, "repository", (dict,), "a mapping", path, None)
    source = Service.Source.IMAGE
    repo_fields: dict[str, str] = {}
    build_args: list[dict[str, str]] = []
    if repository is not None:
        source = Service.Source.GIT
        rpath = path + ("repository",)
        errors.unknown(repository, REPOSITORY_KEYS, rpath)
        for key in _REPOSITORY_TEXT_KEYS:
            value = _optional(errors, repository, key, (str,), "text", rpath, "")
            repo_fields[key] = value or ""
        raw_args = _optional(errors, repository, "buildArgs", (list,), "a list of {name, value}", rpath, []) or []
        for i, entry in enumerate(raw_args):
            where = rpath + ("buildArgs", i)
            if not _expect(errors, entry, (dict,), "{name, value}", where):
                continue
            errors.unknown(entry, ("name", "value"), where)
            key, value = entry.get("name"), entry.get("value", "")
            if not isinstance(key, str) or not isinstance(value, str) or "\n" in value:
                errors.add(where, "a build argument is a name and a one-line text value.")
                continue
            build_args.append({"name": key, "value": value})
    if len(errors.messages) != before:
        return None
    data = form_data_from_spec(
        {
            "kind": kind,
            "source": source,
            "image": image,
            "repository_url": repo_fields.get("url", ""),
            "branch": repo_fields.get("branch", ""),
            "repository_path": repo_fields.get("path", ""),
            "dockerfile": repo_fields.get("dockerfile") or "Dockerfile",
            "build_args": build_args,
            "git_token_secret": repo_fields.get("tokenSecret", ""),
            "port": port,
            "command": command,
            "args": args,
            "env_vars": env_vars,
            "capacity": capacity,
            "replicas": replicas,
            "health_check_path": health,
            "custom_domains": domains,
        },
        name=name,
    )
    # Sizes go to the form as written, so that its messages are about what the person wrote.
    data.update(cpu=_quantity_text(cpu), memory=_quantity_text(memory), disk=_quantity_text(disk))
    return data, state


def _taken_domains(environment: Environment, names_in_file: set[str]) -> set[str]:
    """Custom domains of services the file does not describe, on the environment's cluster."""
    others = (
        Service.objects.filter(environment__cluster_id=environment.cluster_id)
        .exclude(custom_domains=[])
        .values_list("environment_id", "name", "custom_domains")
    )
    return {
        host
        for env_id, name, domains in others
        if not (env_id == environment.pk and name in names_in_file)
        for host in domains
    }


def current_disks(environment: Environment) -> dict[str, int]:
    """The disk each service of the environment holds now, by name (TCP services only)."""
    rows = Service.objects.filter(environment=environment, kind=Service.Kind.TCP, disk_mib__gt=0)
    return dict(rows.values_list("name", "disk_mib"))


def parse_document(data: bytes, environment: Environment) -> ParsedDocument:
    """Bytes of an uploaded file → a validated document; DocumentError with every problem."""
    digest = hashlib.sha256(data).hexdigest()
    text = decode(data)
    document, lines = load(text)
    errors = _Errors(lines)
    if not isinstance(document, dict):
        raise DocumentError([f"line 1: an ale file is a mapping with apiVersion, kind, metadata and spec, not {_type_name(document)}."])
    errors.unknown(document, ("apiVersion", "kind", "metadata", "spec"), ())
    if "apiVersion" not in document:
        errors.add((), f"the document needs apiVersion {API_VERSION}.")
    elif document["apiVersion"] != API_VERSION:
        errors.add(("apiVersion",), f"this reads apiVersion {API_VERSION}, not {document['apiVersion']!r}.")
    if "kind" not in document:
        errors.add((), f"the document needs kind {KIND}.")
    elif document["kind"] != KIND:
        errors.add(("kind",), f"expected kind {KIND}, not {document['kind']!r}.")
    metadata = _optional(errors, document, "metadata", (dict,), "a mapping", (), {}) or {}
    errors.unknown(metadata, ("name", "project", "exportedAt"), ("metadata",))
    for key in ("name", "project", "exportedAt"):
        _optional(errors, metadata, key, (str,), "text", ("metadata",), "")
    if "spec" not in document:
        errors.add((), "the document needs a spec with its services.")
    spec = _optional(errors, document, "spec", (dict,), "a mapping", (), {}) or {}
    errors.unknown(spec, ("services", "secrets", "firewall"), ("spec",))
    items = _optional(errors, spec, "services", (list,), "a list of services", ("spec",), []) or []
    if len(items) > MAX_SERVICES:
        # Checked before the services themselves: no point validating 10,000 of them.
        errors.add(("spec", "services"), f"{len(items)} services; an environment holds at most {MAX_SERVICES}.")
        raise DocumentError(errors.messages)

    secret_keys = _string_list(errors, spec, "secrets", ("spec",)) or []
    for i, key in enumerate(secret_keys):
        if not ENV_KEY_RE.match(key):
            errors.add(("spec", "secrets", i), f"“{key}” is not a variable name: letters, digits and underscores.")

    firewall: tuple[bool, list[str]] | None = None
    if "firewall" in spec:
        block = _optional(errors, spec, "firewall", (dict,), "a mapping", ("spec",), {}) or {}
        errors.unknown(block, ("allowExternalTcp", "allowCidrs"), ("spec", "firewall"))
        allow = _optional(errors, block, "allowExternalTcp", (bool,), "true or false", ("spec", "firewall"), False)
        cidrs = _string_list(errors, block, "allowCidrs", ("spec", "firewall")) or []
        try:
            cidrs = validate_cidrs(cidrs)
        except ValueError as exc:
            errors.add(("spec", "firewall", "allowCidrs"), str(exc))
        firewall = (bool(allow), cidrs)

    prepared: list[tuple[int, dict[str, Any], str]] = []
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        path: Path = ("spec", "services", index)
        if not _expect(errors, item, (dict,), "a service (a mapping)", path):
            continue
        result = _service_form_data(errors, item, path)
        if result is None:
            continue
        form_data, state = result
        name = form_data["name"]
        if name in first_seen:
            errors.add(path + ("name",), f"“{name}” is also the name of {_where(('spec', 'services', first_seen[name]), lines)}.")
            continue
        first_seen[name] = index
        prepared.append((index, form_data, state))

    taken = _taken_domains(environment, set(first_seen))
    disks = current_disks(environment)
    in_file: dict[str, int] = {}
    services: list[ParsedService] = []
    for index, form_data, state in prepared:
        path = ("spec", "services", index)
        form = ImportServiceForm(form_data, environment=environment, taken_domains=taken, current_disks=disks)
        if not form.is_valid():
            for field_name, messages in form.errors.items():
                where = path + FORM_FIELD_PATHS.get(field_name, ())
                for message in messages:
                    errors.add(where, message)
            continue
        for host in form.cleaned_data["custom_domains"]:
            if host in in_file:
                errors.add(path + ("customDomains",), f"{host} is also a domain of spec.services[{in_file[host]}].")
            in_file[host] = index
        services.append(ParsedService(name=form.cleaned_data["name"], spec=form.spec, state=state, index=index))
    if errors.messages:
        raise DocumentError(errors.messages)
    services.sort(key=lambda s: s.name)
    return ParsedDocument(
        services=services,
        secret_keys=sorted(set(secret_keys)),
        firewall=firewall,
        digest=digest,
    )


# --- export --------------------------------------------------------------------------------------


def _cpu_value(millicores: int) -> int | float:
    cpu = Decimal(millicores) / 1000
    return int(cpu) if cpu == cpu.to_integral_value() else float(cpu)


def service_document(name: str, spec: dict[str, Any], state: str) -> dict[str, Any]:
    """One service as the file writes it: fixed key order, empty things left out."""
    item: dict[str, Any] = {"name": name, "kind": spec["kind"]}
    if spec["source"] == Service.Source.GIT:
        repository: dict[str, Any] = {
            "url": spec["repository_url"],
            "branch": spec["branch"],
            "path": spec["repository_path"],
            "dockerfile": spec["dockerfile"],
        }
        if spec.get("build_args"):
            repository["buildArgs"] = [{"name": a["name"], "value": a.get("value", "")} for a in spec["build_args"]]
        if spec.get("git_token_secret"):
            repository["tokenSecret"] = spec["git_token_secret"]
        item["repository"] = repository
    else:
        item["image"] = spec["image"]
    item["port"] = spec["port"]
    if spec["command"]:
        item["command"] = list(spec["command"])
    if spec["args"]:
        item["args"] = list(spec["args"])
    if spec["env_vars"]:
        item["env"] = [
            {"name": v["name"], "secret": v["secret"]} if "secret" in v else {"name": v["name"], "value": v.get("value", "")}
            for v in spec["env_vars"]
        ]
    resources: dict[str, Any] = {"capacity": spec["capacity"], "cpu": _cpu_value(spec["cpu_millicores"])}
    resources["memory"] = format_mib(spec["memory_mib"])
    if spec["disk_mib"]:
        resources["disk"] = format_mib(spec["disk_mib"])
    resources["replicas"] = spec["replicas"]
    item["resources"] = resources
    item["healthCheckPath"] = spec["health_check_path"]
    if spec["custom_domains"]:
        item["customDomains"] = list(spec["custom_domains"])
    item["state"] = state
    return item


def referenced_secret_keys(services: list[Service]) -> list[str]:
    return sorted({key for s in services for key in spec_secret_keys({"env_vars": s.env_vars, "git_token_secret": s.git_token_secret})})


def export_document(environment: Environment) -> dict[str, Any]:
    services = list(environment.services.exclude(status=Service.Status.DELETING).order_by("name"))
    variable_keys = set(environment.variables.values_list("key", flat=True))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": environment.name,
            "project": environment.project.name,
            "exportedAt": timezone.now().replace(microsecond=0).isoformat(),
        },
        "spec": {
            "services": [service_document(s.name, s.snapshot(), s.desired_state) for s in services],
            # The keys the target must fill in: set here and those the services refer to.
            "secrets": sorted(variable_keys | set(referenced_secret_keys(services))),
            "firewall": {
                "allowExternalTcp": environment.allow_external_tcp,
                "allowCidrs": list(environment.external_allow_cidrs),
            },
        },
    }


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def export_yaml(environment: Environment) -> str:
    return dump(export_document(environment))


def export_filename(environment: Environment) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in environment.name.lower()).strip("-") or "environment"
    return f"{environment.project.name}-{safe}.ale.yaml"


# --- preview and apply ---------------------------------------------------------------------------


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return ", ".join(f"{v['name']}=${{{{ secrets.{v['secret']} }}}}" if "secret" in v else f"{v['name']}={v['value']}" for v in value)
        return " ".join(str(v) for v in value) or "—"
    return str(value)


@dataclass
class FieldChange:
    field: str
    old: str
    new: str


@dataclass
class PlannedService:
    name: str
    action: str  # "create" | "change" | "unchanged"
    spec: dict[str, Any]
    state: str
    service: Service | None = None
    changes: list[FieldChange] = field(default_factory=list)
    spec_changed: bool = False


@dataclass
class Plan:
    services: list[PlannedService]
    untouched: list[str]
    missing_secrets: list[str]
    firewall_change: tuple[bool, list[str]] | None
    opens_firewall: bool
    blocked: list[str]

    @property
    def created(self) -> list[PlannedService]:
        return [s for s in self.services if s.action == "create"]

    @property
    def changed(self) -> list[PlannedService]:
        return [s for s in self.services if s.action == "change"]

    @property
    def unchanged(self) -> list[PlannedService]:
        return [s for s in self.services if s.action == "unchanged"]

    @property
    def change_count(self) -> int:
        return len(self.created) + len(self.changed) + (1 if self.firewall_change else 0)


def plan(environment: Environment, document: ParsedDocument, *, lock: bool = False) -> Plan:
    """What applying the document would do to the environment, field by field.

    `lock` (when applying): the services' rows are locked as the service verbs lock them, so
    that a deploy or stop running meanwhile waits instead of losing its generation to ours."""
    services = Service.objects.filter(environment=environment)
    if lock:
        services = services.select_for_update(of=("self",)).order_by("pk")
    existing = {s.name: s for s in services}
    planned: list[PlannedService] = []
    blocked: list[str] = []
    for parsed in document.services:
        service = existing.get(parsed.name)
        if service is None:
            planned.append(PlannedService(parsed.name, "create", parsed.spec, parsed.state))
            continue
        if service.status == Service.Status.DELETING:
            blocked.append(f"{parsed.name} is being deleted; apply the file again once it is gone.")
            continue
        # Checked when the file was read; again here, under the lock, for a disk grown since.
        refusals = disk_rule_errors(service.disk_mib_held, parsed.spec)
        if refusals:
            blocked += [f"{parsed.name}: {message}" for message in refusals.values()]
            continue
        if parsed.spec["source"] == Service.Source.GIT and service.source == Service.Source.GIT:
            # The image of a Git service is what its last build pushed; a file cannot say it.
            parsed.spec["image"] = service.image
        old = _flatten(service_document(service.name, service.snapshot(), service.desired_state))
        new = _flatten(service_document(parsed.name, parsed.spec, parsed.state))
        changes = [
            FieldChange(key, _show(old.get(key)), _show(new.get(key)))
            for key in dict.fromkeys([*old, *new])
            if old.get(key) != new.get(key)
        ]
        spec_changed = service.snapshot() != parsed.spec
        action = "change" if changes else "unchanged"
        planned.append(PlannedService(parsed.name, action, parsed.spec, parsed.state, service, changes, spec_changed))
    in_file = {p.name for p in document.services}
    untouched = sorted(name for name, s in existing.items() if name not in in_file and s.status != Service.Status.DELETING)
    have = set(EnvironmentVariable.objects.filter(environment=environment).values_list("key", flat=True))
    wanted = set(document.secret_keys).union(*(spec_secret_keys(p.spec) for p in document.services))
    firewall_change = None
    opens = False
    if document.firewall is not None:
        allow, cidrs = document.firewall
        if (allow, cidrs) != (environment.allow_external_tcp, list(environment.external_allow_cidrs)):
            firewall_change = (allow, cidrs)
            opens = allow and not environment.allow_external_tcp
    return Plan(planned, untouched, sorted(wanted - have), firewall_change, opens, blocked)


@dataclass
class ApplyResult:
    created: list[str]
    changed: list[str]
    unchanged: list[str]
    firewall_changed: bool

    @property
    def change_count(self) -> int:
        return len(self.created) + len(self.changed) + (1 if self.firewall_changed else 0)


def writes_of(planned: list[PlannedService]) -> list[lifecycle.SpecWrite]:
    """The services a plan creates or changes, as the lifecycle's bulk write takes them."""
    return [
        lifecycle.SpecWrite(item.name, item.spec, item.state, item.service, item.spec_changed if item.service else True)
        for item in planned
        if item.action in ("create", "change")
    ]


def check_plan(environment: Environment, the_plan: Plan) -> None:
    """Raise what Apply refuses, as the deploy and the card's Start refuse it: a name held by a
    service being deleted, the disk's rules (`plan` collected both), the whole file against the
    space's allocation (all of it or nothing), and secrets missing for a stopped service the
    file starts. The preview runs it too, so that it shows the refusal before Apply."""
    if the_plan.blocked:
        raise ValidationError(the_plan.blocked)
    check_allocation(
        environment.project.space_id,
        [
            (item.service.pk if item.service else None,
             spec_from_fields(item.name, item.spec, running=item.state == Service.DesiredState.RUNNING))
            for item in the_plan.services
            if item.action in ("create", "change")
        ],
    )  # fmt: skip
    starting = {
        item.name: item.spec
        for item in the_plan.changed
        if item.service is not None
        and item.service.desired_state == Service.DesiredState.STOPPED
        and item.state == Service.DesiredState.RUNNING
    }
    guards.check_specs_secrets(environment.pk, environment.public_id, starting)


def preview_refusals(environment: Environment, the_plan: Plan) -> list[str]:
    """What `check_plan` would refuse now, as sentences for the preview (nothing is written)."""
    try:
        # The allocation check reads under the space's lock, as Apply does.
        with transaction.atomic():
            check_plan(environment, the_plan)
    except ValidationError as exc:
        return exc.messages
    return []


@transaction.atomic
def apply_document(
    acting_user: AbstractBaseUser | None,
    environment: Environment,
    document: ParsedDocument,
    *,
    confirm_firewall: bool = False,
    promoted_from: str = "",
) -> ApplyResult:
    """Apply a validated document: all of it or, on any error, nothing. `promoted_from` names
    the environment the document was exported from, for a promote's audit entry."""
    environment = lifecycle.lock_environment(environment)
    the_plan = plan(environment, document, lock=True)
    if the_plan.blocked:
        raise ValidationError(the_plan.blocked)
    if the_plan.opens_firewall and not confirm_firewall:
        raise ValidationError(
            "This file allows external TCP connections, which opens the environment to all IP addresses: "
            "confirm it to apply."
        )
    # Before anything is written: all of it, or nothing.
    check_plan(environment, the_plan)
    written = lifecycle.write_many(
        acting_user, environment, writes_of(the_plan.services), cause="promote" if promoted_from else "yaml"
    )
    firewall_changed = False
    if the_plan.firewall_change is not None:
        environment.allow_external_tcp, environment.external_allow_cidrs = the_plan.firewall_change
        environment.save(update_fields=["allow_external_tcp", "external_allow_cidrs"])
        firewall_changed = True
    if written or firewall_changed:
        audit.record(
            acting_user, environment.project.space_id,
            audit.Action.ENVIRONMENT_PROMOTE if promoted_from else audit.Action.YAML_APPLY,
            (f"Promoted {promoted_from} to {environment.name}" if promoted_from else f"Applied a YAML file to {environment.name}")
            + f": {len(the_plan.created)} created, {len(the_plan.changed)} changed",
            environment=environment,
            details={
                "created": [p.name for p in the_plan.created],
                "changed": [p.name for p in the_plan.changed],
                "firewall_changed": firewall_changed,
            },
        )
    if firewall_changed and not written:
        # The bulk write enqueued nothing: the environment's reconcile applies the firewall.
        queue.on_commit(queue.RECONCILE_ENVIRONMENT, environment.pk, [])
    return ApplyResult(
        created=[p.name for p in the_plan.created],
        changed=[p.name for p in the_plan.changed],
        unchanged=[p.name for p in the_plan.unchanged],
        firewall_changed=firewall_changed,
    )


def import_file(
    acting_user: AbstractBaseUser | None, environment: Environment, data: bytes, *, confirm_firewall: bool = False
) -> ApplyResult:
    """Parse, validate and apply in one go: what the upload's confirm step and the bench run."""
    return apply_document(acting_user, environment, parse_document(data, environment), confirm_firewall=confirm_firewall)
