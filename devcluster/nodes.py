"""The devcluster's one Node, as its kubelet registers it: `kubectl get nodes`, `kubectl top nodes`."""
from __future__ import annotations

import hashlib

from .jsontree import clone
from .api import Api
from .controllers.objects import HOST_IP, NODE
from .kinds import Obj, find_kind
from .usage import NODE_CPU_CORES, NODE_MEMORY_BYTES

NODE_KIND = find_kind("v1", "nodes")
assert NODE_KIND is not None
KUBELET_VERSION = "v1.31.4"


def _condition(type_: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {"type": type_, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def node_status(now: str) -> Obj:
    resources = {"cpu": str(NODE_CPU_CORES), "ephemeral-storage": "102626232Ki", "hugepages-1Gi": "0",
                 "hugepages-2Mi": "0", "memory": f"{NODE_MEMORY_BYTES // 1024}Ki", "pods": "110"}
    machine = hashlib.sha256(NODE.encode()).hexdigest()
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": [
            _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory "
                       "available", now),
            _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
            _condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
            _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now),
        ],
        "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": machine[:32], "systemUUID": f"{machine[:8]}-{machine[8:12]}-{machine[12:16]}-"
                     f"{machine[16:20]}-{machine[20:32]}", "bootID": machine[32:64],
                     "kernelVersion": "6.1.0-28-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                     "containerRuntimeVersion": "containerd://1.7.18", "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64"},
    }


def ensure_node(api: Api, now: str) -> Obj:
    """Register the node (once) and report it Ready, as a kubelet does when it starts."""
    assert NODE_KIND is not None
    node = api.find(NODE_KIND, "", NODE)
    if node is None:
        node = api.create(NODE_KIND, "", {"metadata": {"name": NODE, "labels": {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"],
                     "providerID": f"kind://docker/{NODE}/{NODE}"}}, manager="kubelet")
    new = clone(node)
    new["status"] = node_status(now)
    return api.write(NODE_KIND, node, new, manager="kubelet", subresource="status", trusted=True)
