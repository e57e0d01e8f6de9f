"""The RBAC rules in deploy/kubernetes/base/rbac.yaml are exactly what ale's code needs.

The needs are derived from the code, not listed by hand: every module of ale's apps is parsed,
and each call of a `KubeClient` method is turned into (API group, resource, verb) through the client's own kind
table (`clusters.kinds.KINDS`). Arguments that are not literals are resolved the way Python
would: module constants (`LEASE_API_VERSION`), and loop variables over module-level tables
(`for api_version, kind in MANAGED_KINDS`, `... for name, api_version, kind, selector in
WATCHED`). Writes of whole manifests (`apply`, `create`, `replace`) write the kinds that the
module, or the `*.manifests` modules it imports, build as dict literals.

The Lease calls of `clusters/leader.py` belong to the namespaced Role (ale's own namespace);
everything else to the ClusterRole. Both must match exactly: a missing rule breaks ale in a
real cluster, an extra one grants what nothing uses.
"""

from __future__ import annotations

import ast
import functools
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.client import KubeClient
from clusters.kinds import KINDS
from tests.deploy.kustomize import load_documents

BASE_DIR = Path(__file__).resolve().parents[2]
APPS = ("ale_site", "clusters", "environments", "services", "spaces")
LEADER_MODULE = "clusters.leader"

# KubeClient method → (subresource, verbs). Server-side apply is a PATCH that creates missing
# objects, and the API server authorises that creation as `create` too. The exec websocket is a
# GET, authorised as `get`, and from Kubernetes 1.30 on also as `create` (the
# AuthorizePodWebsocketUpgradeCreatePermission gate, on by default).
KIND_METHODS: dict[str, tuple[str, frozenset[str]]] = {
    "get": ("", frozenset({"get"})),
    "list": ("", frozenset({"list"})),
    "watch": ("", frozenset({"watch"})),
    "delete": ("", frozenset({"delete"})),
}
MANIFEST_METHODS: dict[str, frozenset[str]] = {
    "apply": frozenset({"patch", "create"}),
    "create": frozenset({"create"}),
    "replace": frozenset({"update"}),
}
FIXED_METHODS: dict[str, set[tuple[str, str, str]]] = {
    "delete_namespace": {("", "namespaces", "delete")},
    "scale": {("apps", "deployments/scale", "patch")},
    "events": {("", "events", "list")},
    "open_log_stream": {("", "pods/log", "get")},
    "open_log_stream_async": {("", "pods/log", "get")},
    "open_exec": {("", "pods/exec", "get"), ("", "pods/exec", "create")},
    "can_i": {("authorization.k8s.io", "selfsubjectaccessreviews", "create")},
    "pod_metrics": {("metrics.k8s.io", "pods", "list")},
}
# Classes that take (client, api_version, kind) and then list and watch that kind.
FORWARDERS = {"ResourceWatcher": (1, frozenset({"list", "watch"}))}
# The list-watch loop itself: its calls take the kind from its constructor, resolved above.
GENERIC_MODULES = {"clusters.watch"}


def group_resource(api_version: str, kind: str) -> tuple[str, str]:
    info = KINDS[(api_version, kind)]
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group, info.plural


def app_modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of ale's apps: a client can be handed to a module that never imports it."""
    for app in APPS:
        for path in sorted((BASE_DIR / app).rglob("*.py")):
            relative = path.relative_to(BASE_DIR)
            if "migrations" in relative.parts or relative == Path("clusters/client.py"):
                continue
            yield ".".join(relative.with_suffix("").parts), ast.parse(path.read_text(), str(path))


def _imports_client(tree: ast.Module) -> bool:
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return bool(imported & {"clusters.client", "clusters.watch"})


def _receiver_is_a_client(func: ast.Attribute) -> bool:
    receiver = func.value
    if isinstance(receiver, ast.Call):  # client_for(cluster).apply(...)
        receiver = receiver.func
    name = receiver.id if isinstance(receiver, ast.Name) else receiver.attr if isinstance(receiver, ast.Attribute) else ""
    return "kube" in name.lower() or "client" in name.lower()


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _constant(module: Any, node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(module, node.id, None), str):
        return getattr(module, node.id)
    return None


def _loop_bindings(module: Any, call: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[dict[str, Any]]:
    """Every binding of the loop variables around `call` over a module-level table."""
    node: ast.AST | None = call
    while node is not None:
        loops: list[ast.comprehension | ast.For] = []
        if isinstance(node, ast.For):
            loops = [node]
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            loops = list(node.generators)
        for loop in loops:
            if isinstance(loop.target, ast.Tuple) and isinstance(loop.iter, ast.Name):
                names = [t.id if isinstance(t, ast.Name) else None for t in loop.target.elts]
                table = getattr(module, loop.iter.id, None)
                if table is not None:
                    return [dict(zip(names, row)) for row in table]
        node = parents.get(node)
    return []


def _expand_starred(module: Any, args: list[ast.AST]) -> list[Any]:
    """`kube.get(*JOB, name)` with `JOB = ("batch/v1", "Job")`: the table's values in place."""
    expanded: list[Any] = []
    for arg in args:
        if isinstance(arg, ast.Starred):
            table = getattr(module, arg.value.id, None) if isinstance(arg.value, ast.Name) else None
            if not isinstance(table, tuple):
                return [arg]  # unresolvable
            expanded += [ast.Constant(value) for value in table]
        else:
            expanded.append(arg)
    return expanded


def _kinds_of(module: Any, call: ast.Call, parents: dict, args: list[Any]) -> list[tuple[str, str]] | None:
    if any(isinstance(arg, ast.Starred) for arg in args):
        return None
    values = [_constant(module, arg) for arg in args]
    if all(isinstance(v, str) for v in values):
        return [tuple(values)]  # type: ignore[list-item]
    names = [arg.id for arg in args if isinstance(arg, ast.Name)]
    if len(names) != len(args):
        return None
    bindings = _loop_bindings(module, call, parents)
    kinds = [(b[names[0]], b[names[1]]) for b in bindings if names[0] in b and names[1] in b]
    return kinds or None


def _manifest_kinds(module: Any, tree: ast.Module, imported: set[str]) -> set[tuple[str, str]]:
    """(apiVersion, kind) of the dict literals built in this module and its manifests modules."""
    sources = [(module, tree)]
    for name in sorted(imported):
        if name.endswith(".manifests"):
            path = BASE_DIR / Path(*name.split(".")).with_suffix(".py")
            sources.append((importlib.import_module(name), ast.parse(path.read_text())))
    kinds = set()
    for source_module, source_tree in sources:
        for node in ast.walk(source_tree):
            if not isinstance(node, ast.Dict):
                continue
            fields = {_constant(source_module, k): v for k, v in zip(node.keys, node.values) if k is not None}
            if "apiVersion" in fields and "kind" in fields:
                api_version, kind = _constant(source_module, fields["apiVersion"]), _constant(source_module, fields["kind"])
                if (api_version, kind) in KINDS:
                    kinds.add((api_version, kind))
    return kinds


@functools.cache
def derive() -> dict[str, frozenset[tuple[str, str, str]]]:
    """{"cluster": rules, "leader": rules} as (group, resource, verb) sets."""
    needs: dict[str, set[tuple[str, str, str]]] = {"cluster": set(), "leader": set()}
    for name, tree in app_modules():
        module = importlib.import_module(name)
        parents = _parents(tree)
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        scope = "leader" if name == LEADER_MODULE else "cluster"
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            method = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if method in FORWARDERS and len(call.args) >= FORWARDERS[method][0] + 2:
                first, verbs = FORWARDERS[method]
                kinds = _kinds_of(module, call, parents, call.args[first : first + 2])
                assert kinds, f"{name}:{call.lineno}: {method}(...) with a kind this test cannot resolve"
                needs[scope] |= {(*group_resource(*k), verb) for k in kinds for verb in verbs}
            if not isinstance(func, ast.Attribute):
                continue
            args = _expand_starred(module, call.args)
            if method in KIND_METHODS and (len(args) >= 2 or any(isinstance(a, ast.Starred) for a in args)):
                kinds = _kinds_of(module, call, parents, args[:2])
                if kinds is None or not all(k in KINDS for k in kinds):
                    # dict.get("metadata", {}) and friends; and the generic loop's own calls.
                    unresolved_client_call = (
                        name not in GENERIC_MODULES
                        and (_imports_client(tree) or _receiver_is_a_client(func))
                        and (any(isinstance(a, ast.Starred) for a in args) or _looks_like_kind(args[:2]))
                    )
                    assert not unresolved_client_call, f"{name}:{call.lineno}: cannot resolve the kind of .{method}()"
                    continue
                subresource, verbs = KIND_METHODS[method]
                needs[scope] |= {(*group_resource(*k), verb) for k in kinds for verb in verbs}
            elif method in MANIFEST_METHODS and len(call.args) == 1 and (
                _imports_client(tree) or _receiver_is_a_client(func)
            ):
                # One positional argument: KubeClient's signature (ClusterState.apply takes
                # three, the ORM's create keywords only).
                kinds = _manifest_kinds(module, tree, imported)
                assert kinds, f"{name}:{call.lineno}: .{method}() of manifests this test cannot find"
                needs[scope] |= {(*group_resource(*k), verb) for k in kinds for verb in MANIFEST_METHODS[method]}
            elif method in FIXED_METHODS:
                needs[scope] |= FIXED_METHODS[method]
    return {scope: frozenset(rules) for scope, rules in needs.items()}


def _looks_like_kind(args: list[ast.AST]) -> bool:
    names = [a.id.lower() for a in args if isinstance(a, ast.Name)]
    return any("kind" in n or "version" in n for n in names)


def granted(kind: str) -> set[tuple[str, str, str]]:
    documents = load_documents(BASE_DIR / "deploy" / "kubernetes" / "base" / "rbac.yaml")
    (role,) = [d for d in documents if d["kind"] == kind]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.fixture(scope="module")
def needs() -> dict[str, frozenset[tuple[str, str, str]]]:
    return derive()


def test_it_grants_the_cluster_role_exactly_what_the_code_uses(needs):
    have = granted("ClusterRole")
    assert not needs["cluster"] - have, f"missing from the ClusterRole: {sorted(needs['cluster'] - have)}"
    assert not have - needs["cluster"], f"granted but never used: {sorted(have - needs['cluster'])}"


def test_it_grants_the_leader_role_exactly_the_lease_calls(needs):
    assert needs["leader"] == granted("Role")
    assert {resource for _, resource, _ in needs["leader"]} == {"leases"}


def test_it_sees_the_calls_that_only_loops_and_streams_reveal(needs):
    # The derivation itself: kinds that reach the client only through a loop over a table (the
    # watcher's WATCHED, the reconcile's MANAGED_KINDS), a module constant or a stream method.
    cluster = needs["cluster"]
    assert ("", "pods", "watch") in cluster  # ResourceWatcher over WATCHED
    assert ("apps", "deployments", "delete") in cluster  # kube.delete over MANAGED_KINDS
    assert ("", "pods/exec", "create") in cluster and ("", "pods/log", "get") in cluster
    assert ("coordination.k8s.io", "leases", "update") in needs["leader"]  # LEASE_API_VERSION
    assert ("batch", "jobs", "get") in cluster  # kube.get(*JOB, ...)


def test_every_method_of_the_client_that_calls_the_api_is_known_here():
    # A new client method the tables above do not name would be a call this derivation misses.
    calling = {
        name
        for name, member in vars(KubeClient).items()
        if callable(member) and not name.startswith("_") and name not in {"close"}
    }
    known = set(KIND_METHODS) | set(MANIFEST_METHODS) | set(FIXED_METHODS)
    assert calling == known, f"unknown: {sorted(calling - known)}; stale: {sorted(known - calling)}"


def test_it_never_grants_wildcards_or_escalation():
    for kind in ("ClusterRole", "Role"):
        for group, resource, verb in granted(kind):
            assert "*" not in (group, resource, verb)
            assert verb not in {"escalate", "bind", "impersonate"}
            assert resource not in {"clusterroles", "clusterrolebindings", "roles", "rolebindings"}
