"""A small kustomize in Python: the features `deploy/kubernetes/` uses, so the tests can render
the overlays where no kustomize binary is installed.

Supported: `resources` (files and directories with a kustomization.yaml), `namespace`,
`labels` (metadata only: no `includeSelectors`/`includeTemplates`), `images` (`newName`,
`newTag`, `digest`) and `patches` with an inline JSON 6902 `patch` and a `target` by kind and
name. Anything else in a kustomization.yaml is refused, so that a manifest change that needs
more cannot pass the tests unrendered. When `kubectl` is at hand, the tests compare this
rendering with `kubectl kustomize`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
# The cluster-scoped kinds these manifests contain: `namespace` does not apply to them.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "Pod": ("spec",),
}


class KustomizeError(Exception):
    pass


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources of the kustomization in `directory`, transformed, in kustomize's order of
    appearance (not sorted: compare them as sets keyed by kind, namespace and name)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        target = (directory / entry).resolve()
        resources += render(target) if target.is_dir() else load_documents(target)
    for patch in kustomization.get("patches") or []:
        _patch(resources, patch, directory)
    for image in kustomization.get("images") or []:
        for resource in resources:
            _set_image(resource, image)
    for group in kustomization.get("labels") or []:
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise KustomizeError("labels: only metadata labels are supported")
        for resource in resources:
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    if kustomization.get("namespace"):
        for resource in resources:
            _set_namespace(resource, kustomization["namespace"])
    return resources


def _set_namespace(resource: dict[str, Any], namespace: str) -> None:
    if resource["kind"] not in CLUSTER_SCOPED:
        resource["metadata"]["namespace"] = namespace
    if resource["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        # As kustomize does: service-account subjects follow the namespace they were bound in.
        for subject in resource.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (None, "default"):
                subject["namespace"] = namespace


def _set_image(resource: dict[str, Any], image: dict[str, str]) -> None:
    path = POD_TEMPLATE_PATHS.get(resource["kind"])
    if path is None:
        return
    spec: Any = resource
    for key in path:
        spec = spec.get(key) or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        name, tag, digest = _split_image(container["image"])
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if image.get("digest"):
            container["image"] = f"{name}@{image['digest']}"
        else:
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else (f"{name}@{digest}" if digest else name)


def _split_image(image: str) -> tuple[str, str, str]:
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "", digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :], ""
    return image, "", ""


def _patch(resources: list[dict[str, Any]], patch: dict[str, Any], directory: Path) -> None:
    if "path" in patch or not isinstance(patch.get("patch"), str):
        raise KustomizeError("patches: only an inline JSON 6902 patch is supported")
    target = patch.get("target") or {}
    if set(target) - {"kind", "name"}:
        raise KustomizeError("patches: targets by kind and name only")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError("patches: only JSON 6902 (a list of operations) is supported")
    matched = [
        r for r in resources
        if r["kind"] == target.get("kind", r["kind"]) and r["metadata"]["name"] == target.get("name", r["metadata"]["name"])
    ]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches nothing")
    for resource in matched:
        for operation in operations:
            _apply_operation(resource, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _apply_operation(document: dict[str, Any], operation: dict[str, Any]) -> None:
    op, parts = operation["op"], _pointer(operation["path"])
    parent: Any = document
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[index]
        else:
            raise KustomizeError(f"unsupported operation {op!r}")
        return
    if op == "add":
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "replace":
        if last not in parent:
            raise KustomizeError(f"replace of a missing {operation['path']}")
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"unsupported operation {op!r}")
