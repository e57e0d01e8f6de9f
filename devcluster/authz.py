"""Who is calling, and may they: bearer tokens, RBAC-like rules, access reviews.

The devcluster knows two users. The admin (the kubeconfig's `devcluster` context) may do
everything, like kind's `kubernetes-admin`. The optional restricted user (`--restricted-identity`,
the kubeconfig's `devcluster-restricted` context) may do only what its rules grant, so that
denials can be tested: a refused request answers 403 with kube-apiserver's Status message, and
SelfSubjectAccessReview / SelfSubjectRulesReview (what `kubectl auth can-i` asks) answer from
the same rules. Every authenticated user also holds `system:basic-user` and `system:discovery`,
as on a real cluster: access reviews and discovery are always allowed.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

from aiohttp import web

from .api import ApiError, bad_request, parse_body
from .kinds import Obj

ADMIN_USER = "kubernetes-admin"
ADMIN_GROUPS = ("kubeadm:cluster-admins", "system:authenticated")
RESTRICTED_USER = "restricted"
RESTRICTED_BINDING = "devcluster-restricted"

# The verbs a rule may name: the REST verbs kube-apiserver's RequestInfo resolves requests to.
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# system:basic-user: every authenticated user may review its own access.
BASIC_USER = (("authorization.k8s.io", "selfsubjectaccessreviews"), ("authorization.k8s.io", "selfsubjectrulesreviews"),
              ("authentication.k8s.io", "selfsubjectreviews"))
# system:discovery and system:public-info-viewer: what any client reads before its first call.
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                  "/version", "/version/")

PROTOBUF = "application/vnd.kubernetes.protobuf"

# Path segments after a namespace name that belong to the namespace itself, not a resource in it.
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class Rule:
    """One `VERBS:RESOURCES` grant: verbs on (group, resource) pairs; `*` matches anything."""

    verbs: frozenset[str]
    resources: frozenset[tuple[str, str]]

    def grants(self, verb: str, group: str, resource: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        return any(g in ("*", group) and r in ("*", resource) for g, r in self.resources)


def parse_rule(spec: str) -> Rule:
    """`get,list,watch:pods,pods/log,deployments.apps` (a resource's group after its first dot).

    Raises ValueError naming what is wrong, for the command line to print.
    """
    verbs_part, sep, resources_part = spec.partition(":")
    if not sep:
        raise ValueError(f"{spec!r}: expected VERBS:RESOURCES, e.g. get,list:pods,deployments.apps")
    verbs = frozenset(v.strip() for v in verbs_part.split(",") if v.strip())
    unknown = sorted(verbs - set(VERBS) - {"*"})
    if not verbs or unknown:
        raise ValueError(f"{spec!r}: unknown verb(s) {', '.join(unknown) or '(none given)'}; "
                         f"verbs are {', '.join(VERBS)} or *")
    resources = set()
    for item in (r.strip() for r in resources_part.split(",")):
        if not item:
            continue
        base, _, sub = item.partition("/")
        plural, _, group = base.partition(".")
        resources.add((group if plural != "*" else "*", f"{plural}/{sub}" if sub else plural))
    if not resources:
        raise ValueError(f"{spec!r}: no resources named")
    return Rule(verbs, frozenset(resources))


@dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...]
    # None: cluster-admin. Otherwise the grants beyond basic-user and discovery.
    rules: tuple[Rule, ...] | None = None

    def allowed(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, the reason RBAC gives) for a request or a review's attributes."""
        if self.rules is None:
            return True, (f'RBAC: allowed by ClusterRoleBinding "{ADMIN_GROUPS[0]}" of ClusterRole "cluster-admin" to '
                          f'Group "{ADMIN_GROUPS[0]}"')
        if not attrs.resource_request:
            if attrs.verb == "get" and _url_matches(attrs.path, DISCOVERY_URLS):
                return True, ('RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole '
                              '"system:discovery" to Group "system:authenticated"')
            return False, ""
        if attrs.verb == "create" and (attrs.group, attrs.resource) in BASIC_USER and not attrs.subresource:
            return True, ('RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" '
                          'to Group "system:authenticated"')
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        if any(rule.grants(attrs.verb, attrs.group, resource) for rule in self.rules):
            return True, (f'RBAC: allowed by ClusterRoleBinding "{RESTRICTED_BINDING}" of ClusterRole '
                          f'"{RESTRICTED_BINDING}" to User "{self.name}"')
        return False, ""

    def resource_rules(self) -> list[Obj]:
        """SelfSubjectRulesReview's resourceRules, one per rule and API group, basic-user first."""
        out: list[Obj] = [
            {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
            {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
        ]
        if self.rules is None:
            return [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, *out]
        for rule in self.rules:
            by_group: dict[str, list[str]] = {}
            for group, resource in sorted(rule.resources):
                by_group.setdefault(group, []).append(resource)
            for group, resources in by_group.items():
                out.append({"verbs": sorted(rule.verbs), "apiGroups": [group], "resources": resources})
        return out

    def non_resource_rules(self) -> list[Obj]:
        if self.rules is None:
            return [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        return [{"verbs": ["get"], "nonResourceURLs": list(DISCOVERY_URLS)}]


# Where the authenticated identity travels from the middleware to the handlers.
IDENTITY = web.RequestKey("identity", Identity)


@dataclass
class Attributes:
    """What kube-apiserver's RequestInfo makes of a request: the input of every authorizer."""

    verb: str
    path: str = ""
    resource_request: bool = False
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def forbidden(self, user: str) -> ApiError:
        """The 403 kube-apiserver answers, with RBAC's own wording."""
        if not self.resource_request:
            return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {self.verb} path "{self.path}"', {})
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        scope = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        why = f'User "{user}" cannot {self.verb} resource "{resource}" in API group "{self.group}" {scope}'
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        target = f'{qualified} "{self.name}"' if self.name else qualified
        details: Obj = {"name": self.name} if self.name else {}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.resource
        return ApiError(403, "Forbidden", f"{target} is forbidden: {why}", details)


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """kube-apiserver's RequestInfoFactory: /api/v1/namespaces/NS/pods/NAME/log and friends."""
    parts = [p for p in path.split("/") if p]
    # A non-resource request's verb is its method; a resource request's, the REST verb.
    verb = method.lower()
    rest_verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get",
                 "HEAD": "get"}.get(method, verb)
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(verb=verb, path=path)
    if not rest:
        return Attributes(verb=verb, path=path)
    attrs = Attributes(verb=rest_verb, path=path, resource_request=True, group=group, version=version)
    if rest[0] == "watch":
        attrs.verb, rest = "watch", rest[1:]
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        attrs.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return Attributes(verb=verb, path=path)
    attrs.resource = rest[0]
    if len(rest) > 1:
        attrs.name = rest[1]
    if len(rest) > 2:
        attrs.subresource = rest[2]
    if not attrs.name and attrs.verb == "get":
        attrs.verb = "watch" if query.get("watch", "").lower() in ("1", "true") else "list"
    elif attrs.name and attrs.verb == "get" and query.get("watch", "").lower() in ("1", "true"):
        attrs.verb = "watch"
    elif not attrs.name and attrs.verb == "delete":
        attrs.verb = "deletecollection"
    return attrs


def _url_matches(path: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if (pattern.endswith("*") and path.startswith(pattern[:-1])) or path == pattern:
            return True
    return False


@dataclass
class Authorizer:
    admin_token: str
    restricted_token: str | None = None
    restricted_rules: tuple[Rule, ...] = field(default_factory=tuple)

    def authenticate(self, header: str) -> Identity | None:
        """The identity a bearer token names, or None (401)."""
        presented = header.encode()
        if secrets.compare_digest(presented, f"Bearer {self.admin_token}".encode()):
            return Identity(ADMIN_USER, ADMIN_GROUPS)
        if self.restricted_token and secrets.compare_digest(presented, f"Bearer {self.restricted_token}".encode()):
            return Identity(RESTRICTED_USER, ("system:authenticated",), self.restricted_rules)
        return None

    @staticmethod
    def refusal(identity: Identity, request: web.Request) -> ApiError | None:
        """The 403 for this request, or None when the identity may make it."""
        attrs = request_attributes(request.method, request.path.rstrip("/") or "/", request.query)
        allowed, _ = identity.allowed(attrs)
        return None if allowed else attrs.forbidden(identity.name)

    @staticmethod
    async def serve(request: web.Request, kind_name: str, identity: Identity) -> web.Response:
        """POST of a SelfSubjectAccessReview or a SelfSubjectRulesReview: the answer, not stored."""
        if request.method != "POST":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                           {})
        raw = await request.read()
        if request.content_type == PROTOBUF:
            body = review_from_protobuf(raw, kind_name)
        else:
            body = parse_body(raw, request.content_type)
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized (must be of type object)")
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        if kind_name == "SelfSubjectRulesReview":
            status: Obj = {"resourceRules": identity.resource_rules(),
                           "nonResourceRules": identity.non_resource_rules(), "incomplete": False}
        else:
            status = _access_review(identity, spec)
        answer = {"kind": kind_name, "apiVersion": "authorization.k8s.io/v1",
                  "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        return web.Response(status=201, body=json.dumps(answer).encode(), content_type="application/json")


def _access_review(identity: Identity, spec: Obj) -> Obj:
    resource_attrs, non_resource_attrs = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource_attrs is None) == (non_resource_attrs is None):
        # Validation's wording: the value shown is nonResourceAttributes in both cases.
        if resource_attrs is None:
            field_path, value = "spec.resourceAttributes", '"null"'
            message = "exactly one of nonResourceAttributes or resourceAttributes must be specified"
        else:
            field_path, value = "spec.nonResourceAttributes", json.dumps(non_resource_attrs, separators=(",", ":"))
            message = "cannot be specified in combination with resourceAttributes"
        raise ApiError(422, "Invalid", f'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
                       f"{field_path}: Invalid value: {value}: {message}",
                       {"group": "authorization.k8s.io", "kind": "SelfSubjectAccessReview",
                        "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: {value}: {message}",
                                    "field": field_path}]})
    if non_resource_attrs is not None:
        attrs = Attributes(verb=str(non_resource_attrs.get("verb") or ""), path=str(non_resource_attrs.get("path") or ""))
    else:
        attrs = Attributes(verb=str(resource_attrs.get("verb") or ""), resource_request=True,
                           group=str(resource_attrs.get("group") or ""),
                           version=str(resource_attrs.get("version") or ""),
                           resource=str(resource_attrs.get("resource") or ""),
                           subresource=str(resource_attrs.get("subresource") or ""),
                           namespace=str(resource_attrs.get("namespace") or ""),
                           name=str(resource_attrs.get("name") or ""))
    allowed, reason = identity.allowed(attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


# --- protobuf ---------------------------------------------------------------------------------------
# kubectl from 1.33 on sends its access reviews as protobuf (and accepts JSON back). The envelope is
# "k8s\0" + runtime.Unknown{typeMeta, raw}; the fields of the review are numbered as in
# k8s.io/api/authorization/v1/generated.proto.

_RESOURCE_ATTRIBUTES = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource",
                        7: "name"}
_NON_RESOURCE_ATTRIBUTES = {1: "path", 2: "verb"}


def _fields(data: bytes) -> dict[int, list[bytes | int]]:
    """A protobuf message's fields by number: varints as ints, length-delimited ones as bytes."""
    out: dict[int, list[bytes | int]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data):
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.setdefault(number, []).append(varint())
        elif wire == 2:
            length = varint()
            out.setdefault(number, []).append(data[pos:pos + length])
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _message(data: bytes, names: dict[int, str]) -> Obj:
    fields = _fields(data)
    return {name: fields[n][0].decode() for n, name in names.items()  # type: ignore[union-attr]
            if n in fields and isinstance(fields[n][0], bytes)}


def review_from_protobuf(raw: bytes, kind_name: str) -> Obj:
    """The JSON form of a protobuf SelfSubjectAccessReview or SelfSubjectRulesReview."""
    try:
        if not raw.startswith(b"k8s\x00"):
            raise ValueError("missing the k8s protobuf envelope")
        unknown = _fields(raw[4:])
        (obj,) = unknown.get(2) or [b""]
        spec_bytes = (_fields(obj).get(2) or [b""])[0]  # type: ignore[arg-type]
        spec_fields = _fields(spec_bytes)  # type: ignore[arg-type]
        spec: Obj = {}
        if kind_name == "SelfSubjectRulesReview":
            spec = _message(spec_bytes, {1: "namespace"})  # type: ignore[arg-type]
        else:
            if 1 in spec_fields:
                spec["resourceAttributes"] = _message(spec_fields[1][0], _RESOURCE_ATTRIBUTES)  # type: ignore[arg-type]
            if 2 in spec_fields:
                spec["nonResourceAttributes"] = _message(spec_fields[2][0], _NON_RESOURCE_ATTRIBUTES)  # type: ignore[arg-type]
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"error decoding protobuf: {exc}") from None
    return {"kind": kind_name, "apiVersion": "authorization.k8s.io/v1", "spec": spec}
