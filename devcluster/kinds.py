"""The resource kinds the devcluster serves: discovery data, defaulting, validation, field labels.

Defaulting and validation follow kube-apiserver v1.31 for the fields ale and its tests touch, so
that an object read back from the devcluster looks like one read back from a real cluster.
"""
from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .jsontree import clone

Obj = dict[str, Any]


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# Go's time.RFC3339, element by element, as time.Parse reads it (fractional seconds are accepted
# after the seconds although the layout has none).
_RFC3339_ELEMENTS = (("2006", r"\d{4}"), ("-", "-"), ("01", r"\d{2}"), ("-", "-"), ("02", r"\d{2}"), ("T", "T"),
                     ("15", r"\d{2}"), (":", ":"), ("04", r"\d{2}"), (":", ":"), ("05", r"\d{2}(?:\.\d+)?"),
                     ("Z07:00", r"Z|[+-]\d{2}:\d{2}"))
_RFC3339_RANGES = ((2, 1, 12, "month"), (4, 1, 31, "day"), (6, 0, 23, "hour"), (8, 0, 59, "minute"),
                   (10, 0, 59, "second"))


_RFC3339_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})\Z")


def _in_range(value: str) -> bool:
    try:
        datetime(int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                 int(value[17:19]))
    except ValueError:
        return False
    return True


def time_parse_error(value: str) -> str | None:
    """Why metav1.Time's decoding (Go's time.Parse with RFC 3339) refuses `value`, in its words;
    None when it is a time."""
    if _RFC3339_TIME.match(value) and _in_range(value):
        return None  # the common case, in one match: every Event the controllers write has two
    layout = "2006-01-02T15:04:05Z07:00"
    rest, parts = value, []
    for element, pattern in _RFC3339_ELEMENTS:
        found = re.match(pattern, rest)
        if found is None:
            return f'parsing time "{value}" as "{layout}": cannot parse "{rest}" as "{element}"'
        parts.append(found.group())
        rest = rest[found.end():]
    if rest:
        return f'parsing time "{value}": extra text: "{rest}"'
    for index, low, high, what in _RFC3339_RANGES:
        if not low <= int(float(parts[index])) <= high:
            return f'parsing time "{value}": {what} out of range'
    try:
        datetime(int(parts[0]), int(parts[2]), int(parts[4]))
    except ValueError:
        return f'parsing time "{value}": day out of range'
    return None


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Events are stored once and served by two APIs; `storage` names the shared bucket.
    storage: str = ""
    extra_field_labels: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """`deployments.apps` — the spelling kube-apiserver uses in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def bucket(self) -> str:
        return self.storage or self.resource

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS: list[Kind] = [
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
         subresources=("status", "finalize"), extra_field_labels=("status.phase",),
         verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Kind("", "v1", "pods", "Pod", short_names=("po",), subresources=("status", "log", "exec"),
         extra_field_labels=("status.phase", "spec.nodeName", "spec.restartPolicy",
                             "spec.schedulerName", "spec.serviceAccountName", "status.podIP",
                             "status.nominatedNodeName", "spec.hostNetwork")),
    Kind("", "v1", "services", "Service", short_names=("svc",), subresources=("status",),
         extra_field_labels=("spec.clusterIP", "spec.type"),
         verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    Kind("", "v1", "secrets", "Secret", extra_field_labels=("type",)),
    Kind("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Kind("", "v1", "events", "Event", short_names=("ev",), storage="events",
         extra_field_labels=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                             "involvedObject.uid", "involvedObject.apiVersion",
                             "involvedObject.resourceVersion", "involvedObject.fieldPath",
                             "reason", "reportingComponent", "source", "type")),
    Kind("", "v1", "resourcequotas", "ResourceQuota", short_names=("quota",), subresources=("status",)),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",),
         subresources=("status",)),
    Kind("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
         subresources=("status", "scale")),
    Kind("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=("status", "scale")),
    Kind("batch", "v1", "jobs", "Job", subresources=("status",), extra_field_labels=("status.successful",)),
    Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    Kind("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), subresources=("status",)),
    Kind("events.k8s.io", "v1", "events", "Event", short_names=("ev",), storage="events",
         extra_field_labels=("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                             "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath",
                             "reason", "reportingController", "type", "deprecatedSource.component")),
    Kind("coordination.k8s.io", "v1", "leases", "Lease"),
    Kind("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False, short_names=("sc",)),
    Kind("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), subresources=("status",),
         extra_field_labels=("spec.unschedulable",)),
    # Served by authz.py and metrics.py, not stored: reviews are answered, metrics computed.
    Kind("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False,
         verbs=("create",)),
    Kind("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", namespaced=False,
         verbs=("create",)),
    Kind("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", namespaced=False, verbs=("get", "list")),
    Kind("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", verbs=("get", "list")),
]

GROUP_VERSIONS: dict[str, list[Kind]] = {}
for _k in KINDS:
    GROUP_VERSIONS.setdefault(_k.api_version, []).append(_k)

CORE_EVENTS = next(k for k in KINDS if k.bucket == "events" and k.group == "")


def find_kind(api_version: str, plural: str) -> Kind | None:
    for k in GROUP_VERSIONS.get(api_version, []):
        if k.plural == plural:
            return k
    return None


def kind_by_name(api_version: str, kind: str) -> Kind | None:
    for k in GROUP_VERSIONS.get(api_version, []):
        if k.kind == kind:
            return k
    return None


def kind_for_bucket(bucket: str) -> Kind:
    """The canonical kind stored in a bucket (events are stored in their core/v1 shape)."""
    for k in KINDS:
        if k.bucket == bucket and (bucket != "events" or k.group == ""):
            return k
    raise KeyError(bucket)


# --- events.k8s.io/v1 <-> core/v1 -------------------------------------------------------------

_EVENT_RENAMES = [
    ("involvedObject", "regarding"), ("message", "note"), ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"), ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"), ("reportingComponent", "reportingController"),
]


def event_to_v1(core: Obj) -> Obj:
    out = {k: v for k, v in core.items() if k not in {a for a, _ in _EVENT_RENAMES}}
    for old, new in _EVENT_RENAMES:
        if old in core and core[old] not in (None, "", {}):
            out[new] = core[old]
    out.setdefault("eventTime", None)
    if "series" in core and core["series"]:
        out["series"] = {"count": core["series"].get("count"), "lastObservedTime": core["series"].get("lastObservedTime")}
    return out


def event_from_v1(ev: Obj) -> Obj:
    out = {k: v for k, v in ev.items() if k not in {b for _, b in _EVENT_RENAMES}}
    for old, new in _EVENT_RENAMES:
        if new in ev:
            out[old] = ev[new]
    return out


def to_wire(kind: Kind, obj: Obj, *, in_list: bool = False) -> Obj:
    """The stored object as this kind's API version presents it."""
    if kind.bucket == "events" and kind.group == "events.k8s.io":
        obj = event_to_v1(obj)
    out = dict(obj)
    if in_list:
        out.pop("kind", None)
        out.pop("apiVersion", None)
        return out
    return {"kind": kind.kind, "apiVersion": kind.api_version, **{k: v for k, v in out.items() if k not in ("kind", "apiVersion")}}


def from_wire(kind: Kind, obj: Obj) -> Obj:
    if kind.bucket == "events" and kind.group == "events.k8s.io":
        obj = event_from_v1(obj)
        obj["kind"], obj["apiVersion"] = "Event", "v1"
    return obj


# --- field selectors ------------------------------------------------------------------------------

def dig(obj: Obj, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def field_value(kind: Kind, obj: Obj, label: str) -> str | None:
    """The value of a field label, or None when the kind does not support it."""
    if label in ("metadata.name", "metadata.namespace"):
        return str(dig(obj, label) or "")
    if label not in kind.extra_field_labels:
        return None
    if label.startswith("regarding."):
        label = "involvedObject." + label.removeprefix("regarding.")
    elif label == "reportingController":
        label = "reportingComponent"
    elif label in ("source", "deprecatedSource.component"):
        return str(dig(obj, "source.component") or "")
    value = dig(obj, label)
    if isinstance(value, bool):
        return "true" if value else "false"
    if label == "status.successful":
        return str(value or 0)
    return "" if value is None else str(value)


# --- validation ------------------------------------------------------------------------------------

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
C_IDENTIFIER_ENV = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
QUALIFIED_NAME_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                      "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                      "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


@dataclass
class Cause:
    reason: str
    field: str
    message: str

    def as_dict(self) -> Obj:
        return {"reason": self.reason, "message": self.message, "field": self.field}


def go_repr(value: Any) -> str:
    """Render a value the way kube-apiserver's Go %#v does in Invalid messages."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{go_repr(k)}:{go_repr(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if value is None:
        return "null"
    return str(value)


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", path, f"Invalid value: {go_repr(value)}: {detail}")


def required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def not_supported(path: str, value: Any, allowed: list[str]) -> Cause:
    options = ", ".join(f'"{a}"' for a in allowed)
    return Cause("FieldValueNotSupported", path, f"Unsupported value: {go_repr(value)}: supported values: {options}")


def duplicate(path: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", path, f"Duplicate value: {go_repr(value)}")


def forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", path, f"Forbidden: {detail}")


def _validate_qualified_key(path: str, key: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    causes = []
    if prefix and not DNS1123_SUBDOMAIN.match(prefix):
        causes.append(invalid(path, key, "prefix part " + SUBDOMAIN_MSG))
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        causes.append(invalid(path, key, QUALIFIED_NAME_MSG))
    return causes


def validate_labels(path: str, labels: Any) -> list[Cause]:
    causes: list[Cause] = []
    if labels is None:
        return causes
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map of strings")]
    for key, value in labels.items():
        causes += _validate_qualified_key(path, key)
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(invalid(f"{path}", value, LABEL_VALUE_MSG if isinstance(value, str) and len(value) <= 63
                                  else "must be no more than 63 characters"))
    return causes


def validate_meta(kind: Kind, obj: Obj) -> list[Cause]:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[Cause] = []
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif kind.kind in ("Namespace",):
        if not DNS1123_LABEL.match(name) or len(name) > 63:
            causes.append(invalid("metadata.name", name, LABEL_MSG))
    elif kind.kind == "Service":
        if not DNS1035_LABEL.match(name) or len(name) > 63:
            causes.append(invalid("metadata.name", name, DNS1035_MSG))
    elif kind.kind in ("Deployment",):
        if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append(invalid("metadata.name", name, SUBDOMAIN_MSG))
    elif kind.kind in ("Pod", "ReplicaSet", "Job", "Secret", "ConfigMap", "ResourceQuota", "ServiceAccount",
                       "NetworkPolicy", "Ingress", "Lease", "Event", "PersistentVolumeClaim", "StorageClass"):
        if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append(invalid("metadata.name", name, SUBDOMAIN_MSG))
    causes += validate_labels("metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations")
    if annotations is not None:
        for key, value in annotations.items():
            causes += _validate_qualified_key("metadata.annotations", key)
            if not isinstance(value, str):
                causes.append(invalid("metadata.annotations", value, "must be a string"))
    return causes


def _quantity_ok(value: Any) -> bool:
    return parse_quantity(value) is not None


_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4, "Pi": 1024 ** 5, "Ei": 1024 ** 6,
           "n": 1e-9, "u": 1e-6}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(e[+-]?[0-9]+|E[+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    m = _QUANTITY.match(value.strip())
    if not m:
        return None
    try:
        number = float(m.group(1))
    except ValueError:
        return None
    suffix = m.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def format_quantity(value: float, like: str) -> str:
    """Render a sum in the unit family of `like`, the way resource.Quantity canonicalises."""
    if abs(value) < 1e-12:
        return "0"
    m = _QUANTITY.match(str(like).strip())
    suffix = (m.group(2) or "") if m else ""
    if suffix.endswith("i"):
        for s in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if value >= _SUFFIX[s] and value % _SUFFIX[s] == 0:
                return f"{int(value // _SUFFIX[s])}{s}"
    elif suffix in ("k", "M", "G", "T", "P", "E"):
        for s in ("E", "P", "T", "G", "M", "k"):
            if value >= _SUFFIX[s] and round(value) % int(_SUFFIX[s]) == 0:
                return f"{int(round(value) // int(_SUFFIX[s]))}{s}"
    milli = round(value * 1000)
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"


def qos_class(spec: Obj) -> str:
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in limits or parse_quantity(requests.get(r, limits[r])) != parse_quantity(limits[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def validate_container(path: str, c: Any, names: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(c, dict):
        return [invalid(path, c, "must be an object")]
    name = c.get("name")
    if not name:
        causes.append(required(f"{path}.name"))
    elif not DNS1123_LABEL.match(name) or len(name) > 63:
        causes.append(invalid(f"{path}.name", name, LABEL_MSG))
    elif name in names:
        causes.append(duplicate(f"{path}.name", name))
    else:
        names.add(name)
    if not c.get("image"):
        causes.append(required(f"{path}.image"))
    port_names: set[str] = set()
    for i, port in enumerate(c.get("ports") or []):
        cp = port.get("containerPort")
        if not isinstance(cp, int) or not 0 < cp < 65536:
            causes.append(required(f"{path}.ports[{i}].containerPort") if cp is None else
                          invalid(f"{path}.ports[{i}].containerPort", cp, "must be between 1 and 65535, inclusive"))
        pname = port.get("name")
        if pname:
            if pname in port_names:
                causes.append(duplicate(f"{path}.ports[{i}].name", pname))
            port_names.add(pname)
        proto = port.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            causes.append(not_supported(f"{path}.ports[{i}].protocol", proto, ["SCTP", "TCP", "UDP"]))
    for i, env in enumerate(c.get("env") or []):
        ename = env.get("name")
        if not ename:
            causes.append(required(f"{path}.env[{i}].name"))
        elif not C_IDENTIFIER_ENV.match(ename):
            causes.append(invalid(f"{path}.env[{i}].name", ename,
                                  "a valid environment variable name must consist of alphabetic characters, digits, "
                                  "'_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or "
                                  "'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is "
                                  "'[-._a-zA-Z][-._a-zA-Z0-9]*')"))
    resources = c.get("resources") or {}
    for section in ("limits", "requests"):
        for rname, q in (resources.get(section) or {}).items():
            if not _quantity_ok(q):
                causes.append(invalid(f"{path}.resources.{section}[{rname}]", q,
                                      "quantities must match the regular expression "
                                      "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    for rname, q in requests.items():
        requested, limit = parse_quantity(q), parse_quantity(limits.get(rname))
        if requested is not None and limit is not None:
            if requested > limit:
                causes.append(invalid(f"{path}.resources.requests", q,
                                      f"must be less than or equal to {rname} limit of {limits[rname]}"))
    return causes


def validate_pod_spec(path: str, spec: Any, *, restart_policies: tuple[str, ...] = ("Always", "OnFailure", "Never")) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(path)]
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(required(f"{path}.containers"))
    names: set[str] = set()
    for i, c in enumerate(containers or []):
        causes += validate_container(f"{path}.containers[{i}]", c, names)
    for i, c in enumerate(spec.get("initContainers") or []):
        causes += validate_container(f"{path}.initContainers[{i}]", c, names)
    policy = spec.get("restartPolicy", "Always")
    if policy not in restart_policies:
        causes.append(not_supported(f"{path}.restartPolicy", policy, list(restart_policies)))
    volume_names: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vname = v.get("name")
        if not vname:
            causes.append(required(f"{path}.volumes[{i}].name"))
        elif vname in volume_names:
            causes.append(duplicate(f"{path}.volumes[{i}].name", vname))
        volume_names.add(vname or "")
        claim = v.get("persistentVolumeClaim")
        if isinstance(claim, dict) and not claim.get("claimName"):
            causes.append(required(f"{path}.volumes[{i}].persistentVolumeClaim.claimName"))
    for ci, c in enumerate(containers or []):
        for mi, m in enumerate(c.get("volumeMounts") or []):
            if m.get("name") not in volume_names:
                causes.append(Cause("FieldValueNotFound", f"{path}.containers[{ci}].volumeMounts[{mi}].name",
                                    f"Not found: {go_repr(m.get('name'))}"))
    for i, t in enumerate(spec.get("tolerations") or []):
        op = t.get("operator", "Equal")
        if op not in ("Equal", "Exists"):
            causes.append(not_supported(f"{path}.tolerations[{i}].operator", op, ["Equal", "Exists"]))
    causes += validate_labels(f"{path}.nodeSelector", spec.get("nodeSelector"))
    return causes


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """LabelSelector (matchLabels + matchExpressions) semantics."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate_selector_and_template(kind: Kind, spec: Obj, *, require_selector: bool = True) -> list[Cause]:
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template")
    if selector is None:
        if require_selector:
            causes.append(required("spec.selector"))
    else:
        causes += validate_labels("spec.selector.matchLabels", selector.get("matchLabels"))
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(invalid("spec.selector", selector, "empty selector is invalid for deployment")
                          if kind.kind == "Deployment" else required("spec.selector"))
    if not isinstance(template, dict):
        causes.append(required("spec.template"))
        return causes
    labels = (template.get("metadata") or {}).get("labels") or {}
    causes += validate_labels("spec.template.metadata.labels", labels)
    if selector is not None and (selector.get("matchLabels") or selector.get("matchExpressions")):
        if not selector_matches(selector, labels):
            causes.append(invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    return causes


def _validate_replicas(spec: Obj) -> list[Cause]:
    r = spec.get("replicas", 1)
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        return [invalid("spec.replicas", r, "must be greater than or equal to 0")]
    return []


def validate(kind: Kind, obj: Obj) -> list[Cause]:
    causes = validate_meta(kind, obj)
    spec = obj.get("spec")
    k = kind.kind
    if k in ("Deployment", "ReplicaSet"):
        spec = spec or {}
        causes += _validate_replicas(spec)
        causes += validate_selector_and_template(kind, spec)
        if isinstance(spec.get("template"), dict):
            causes += validate_pod_spec("spec.template.spec", spec["template"].get("spec"), restart_policies=("Always",))
    elif k == "Pod":
        causes += validate_pod_spec("spec", spec)
    elif k == "Job":
        spec = spec or {}
        causes += validate_selector_and_template(kind, spec, require_selector=False)
        if isinstance(spec.get("template"), dict):
            tspec = spec["template"].get("spec") or {}
            if tspec.get("restartPolicy") not in ("OnFailure", "Never"):
                causes.append(required("spec.template.spec.restartPolicy") if "restartPolicy" not in tspec else
                              not_supported("spec.template.spec.restartPolicy", tspec.get("restartPolicy"),
                                            ["OnFailure", "Never"]))
            causes += validate_pod_spec("spec.template.spec", tspec, restart_policies=("OnFailure", "Never"))
        for fname in ("backoffLimit", "activeDeadlineSeconds", "completions", "parallelism"):
            v = spec.get(fname)
            if v is not None and (not isinstance(v, int) or v < 0):
                causes.append(invalid(f"spec.{fname}", v, "must be greater than or equal to 0"))
    elif k == "Service":
        causes += _validate_service(spec or {})
    elif k in ("Secret", "ConfigMap"):
        for section in ("data", "stringData", "binaryData"):
            for key in (obj.get(section) or {}):
                if not CONFIG_KEY.match(key) or len(key) > 253:
                    causes.append(invalid(f"{section}[{key}]", key,
                                          "a valid config key must consist of alphanumeric characters, '-', '_' or "
                                          "'.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
                                          "validation is '[-._a-zA-Z0-9]+')"))
        if k == "Secret":
            for key, value in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(value, validate=True)
                except Exception:
                    causes.append(invalid(f"data[{key}]", "<secret contents redacted>", "illegal base64 data"))
    elif k == "ResourceQuota":
        for rname, q in ((spec or {}).get("hard") or {}).items():
            if not _quantity_ok(q):
                causes.append(invalid(f"spec.hard[{rname}]", q, "quantities must match the regular expression "
                                      "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
    elif k == "Ingress":
        causes += _validate_ingress(spec or {})
    elif k == "NetworkPolicy":
        if spec is None or "podSelector" not in spec:
            causes.append(required("spec.podSelector"))
    elif k == "PersistentVolumeClaim":
        causes += _validate_claim_spec(spec or {})
    elif k == "StorageClass":
        causes += _validate_storage_class(obj)
    return causes


ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _validate_claim_spec(spec: Obj) -> list[Cause]:
    """ValidatePersistentVolumeClaimSpec: the paths and texts kube-apiserver reports."""
    causes: list[Cause] = []
    modes = spec.get("accessModes") or []
    if not modes:
        causes.append(required("spec.accessModes", "at least 1 access mode is required"))
    once_pod = others = False
    for mode in modes:
        if mode not in ACCESS_MODES:
            causes.append(not_supported("spec.accessModes", mode, ACCESS_MODES))
        elif mode == "ReadWriteOncePod":
            once_pod = True
        else:
            others = True
    if once_pod and others:
        causes.append(forbidden("spec.accessModes", "may not use ReadWriteOncePod with other access modes"))
    # The real path is "spec.resources[storage]": the validator keys `resources`, not `resources.requests`.
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.append(required("spec.resources[storage]"))
    else:
        value = parse_quantity(storage)
        if value is None:
            causes.append(invalid("spec.resources.requests[storage]", storage,
                                  "quantities must match the regular expression "
                                  "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
        elif value <= 0:
            causes.append(invalid("spec.resources[storage]", str(storage), "must be greater than zero"))
    class_name = spec.get("storageClassName")
    if class_name and (not DNS1123_SUBDOMAIN.match(class_name) or len(class_name) > 253):
        causes.append(invalid("spec.storageClassName", class_name, SUBDOMAIN_MSG))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        causes.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    return causes


def _validate_storage_class(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    if not obj.get("provisioner"):
        causes.append(required("provisioner"))
    policy = obj.get("reclaimPolicy")
    if policy not in (None, "Delete", "Retain"):
        causes.append(not_supported("reclaimPolicy", policy, ["Delete", "Retain"]))
    binding = obj.get("volumeBindingMode")
    if binding not in (None, "Immediate", "WaitForFirstConsumer"):
        causes.append(not_supported("volumeBindingMode", binding, ["Immediate", "WaitForFirstConsumer"]))
    return causes


def _validate_service(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(not_supported("spec.type", stype, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]))
    ports = spec.get("ports") or []
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(required("spec.ports"))
    seen: set[tuple[Any, str]] = set()
    names: set[str] = set()
    for i, p in enumerate(ports):
        port = p.get("port")
        if port is None:
            causes.append(required(f"spec.ports[{i}].port"))
        elif not isinstance(port, int) or not 0 < port < 65536:
            causes.append(invalid(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not p.get("name"):
            causes.append(required(f"spec.ports[{i}].name"))
        if p.get("name"):
            if p["name"] in names:
                causes.append(duplicate(f"spec.ports[{i}].name", p["name"]))
            names.add(p["name"])
        key = (port, p.get("protocol", "TCP"))
        if key in seen:
            causes.append(duplicate(f"spec.ports[{i}]", f"{port}/{key[1]}"))
        seen.add(key)
        np_ = p.get("nodePort")
        if np_ and stype == "ClusterIP":
            causes.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
        if np_ and not 30000 <= np_ <= 32767:
            causes.append(invalid(f"spec.ports[{i}].nodePort", np_,
                                  "provided port is not in the valid range. The range of valid ports is 30000-32767"))
    causes += validate_labels("spec.selector", spec.get("selector"))
    return causes


def _validate_ingress(spec: Obj) -> list[Cause]:
    causes: list[Cause] = []
    if not spec.get("rules") and not spec.get("defaultBackend"):
        causes.append(invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    for i, rule in enumerate(spec.get("rules") or []):
        host = rule.get("host")
        if host and not DNS1123_SUBDOMAIN.match(host.removeprefix("*.")):
            causes.append(invalid(f"spec.rules[{i}].host", host, SUBDOMAIN_MSG))
        for j, path in enumerate(((rule.get("http") or {}).get("paths")) or []):
            where = f"spec.rules[{i}].http.paths[{j}]"
            if not path.get("pathType"):
                causes.append(required(f"{where}.pathType", "pathType must be specified"))
            elif path["pathType"] not in ("Exact", "Prefix", "ImplementationSpecific"):
                causes.append(not_supported(f"{where}.pathType", path["pathType"],
                                            ["Exact", "ImplementationSpecific", "Prefix"]))
            if path.get("pathType") in ("Exact", "Prefix") and not str(path.get("path", "")).startswith("/"):
                causes.append(invalid(f"{where}.path", path.get("path", ""), "must be an absolute path"))
            backend = path.get("backend") or {}
            if not backend.get("service") and not backend.get("resource"):
                causes.append(invalid(f"{where}.backend", backend, "one backend must be specified"))
    return causes


# --- defaulting ------------------------------------------------------------------------------------

def _default_container(c: Obj) -> None:
    image = c.get("image") or ""
    tagless = "@" not in image and ":" not in image.rsplit("/", 1)[-1]
    c.setdefault("imagePullPolicy", "Always" if tagless or image.endswith(":latest") else "IfNotPresent")
    c.setdefault("resources", {})
    # A container that sets limits only gets requests equal to them, as the real defaulter does.
    limits = c["resources"].get("limits") or {}
    if limits:
        requests = c["resources"].setdefault("requests", {})
        for rname, q in limits.items():
            requests.setdefault(rname, q)
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if ref:
            ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: Obj) -> None:
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for v in spec.get("volumes") or []:
        if "secret" in v:
            v["secret"].setdefault("defaultMode", 420)
        if "configMap" in v:
            v["configMap"].setdefault("defaultMode", 420)
        if "emptyDir" in v and v["emptyDir"] is None:
            v["emptyDir"] = {}


def _default_template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    if isinstance(template.get("metadata"), dict):
        template["metadata"].setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))


def default(kind: Kind, obj: Obj) -> None:
    """Apply kube-apiserver defaults in place (idempotent)."""
    spec = obj.get("spec")
    k = kind.kind
    if k == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec)
    elif k == "ReplicaSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        _default_template(spec)
    elif k == "Job":
        spec = obj.setdefault("spec", {})
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        _default_template(spec)
    elif k == "Pod":
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        tolerations = spec.setdefault("tolerations", [])
        for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == taint for t in tolerations):
                tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        obj.setdefault("status", {"phase": "Pending", "qosClass": qos_class(spec)})
    elif k == "Service":
        spec = obj.setdefault("spec", {})
        stype = spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if stype != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if stype in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if stype == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        obj.setdefault("status", {"loadBalancer": {}})
    elif k == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif k == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj.setdefault("status", {"phase": "Active"})
    elif k == "NetworkPolicy":
        spec = obj.setdefault("spec", {})
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for p in rule.get("ports") or []:
                    p.setdefault("protocol", "TCP")
    elif k == "Ingress":
        obj.setdefault("status", {"loadBalancer": {}})
    elif k == "ResourceQuota":
        obj.setdefault("spec", {})
    elif k == "PersistentVolumeClaim":
        spec = obj.setdefault("spec", {})
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {"phase": "Pending"})
    elif k == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    if k in ("Deployment", "ReplicaSet", "Job") and spec is not None:
        obj.setdefault("status", {})


def random_suffix(n: int = 5) -> str:
    """The alphabet kube's rand.String uses: no vowels or look-alikes, so names never spell words."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


def deep_copy(obj: Obj) -> Obj:
    return clone(obj)

