"""Server-side tables: the `Accept: application/json;as=Table;g=meta.k8s.io` answer kubectl asks for.

kubectl prints what the server puts in a Table; it has no printers of its own for built-in kinds.
Columns and cells follow kube-apiserver's pkg/printers/internalversion/printers.go: the server
always fills the wide cells and marks them priority 1, and kubectl hides those without `-o wide`.
Kinds kube-apiserver has no printer for get its default Name / Created At table.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .kinds import Kind, Obj, parse_iso
from .selectors import selector_string

TABLE_GROUP = "meta.k8s.io"
_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
             "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
             "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_AGE_DOC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
            "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
            "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
            "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
            "#metadata")
_CONTAINERS_DOC = "Names of each container in the template."
_IMAGES_DOC = "Images referenced by each container in the template."

Column = dict[str, Any]
Printer = Callable[[Obj, float], list[Any]]


def _col(name: str, type_: str = "string", description: str = "", *, priority: int = 0, fmt: str = "") -> Column:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


NAME = _col("Name", fmt="name", description=_NAME_DOC)
AGE = _col("Age", description=_AGE_DOC)


def accepted_table_version(accept: str) -> str | None:
    """The meta.k8s.io version of the Table the client asks for first, or None for plain objects."""
    for media in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in media.split(";")[1:] if "=" in p)
        kind = media.split(";")[0].strip()
        if kind not in ("application/json", "*/*", "application/*"):
            continue
        if params.get("as") == "Table":
            if params.get("g") == TABLE_GROUP and params.get("v") in ("v1", "v1beta1"):
                return params["v"]
            continue
        # The client lists plain JSON before any Table: it wants the objects.
        return None
    return None


# --- cell helpers (duration.HumanDuration and the printers' little formatters) -----------------

def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None, now: float) -> str:
    if not timestamp:
        return "<unknown>"
    return human_duration(now - parse_iso(timestamp))


def _age(obj: Obj, now: float) -> str:
    return since(obj["metadata"].get("creationTimestamp"), now)


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _labels(labels: Obj | None) -> str:
    # labels.FormatLabels: sorted key=value pairs, "<none>" when empty.
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _label_selector(selector: Obj | None) -> str:
    # metav1.FormatLabelSelector: "<none>" for an empty selector.
    return selector_string(selector) or "<none>"


def _has_condition(obj: Obj, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


# --- printers, one per kind ---------------------------------------------------------------------

def _pod(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    restarts, ready = 0, 0
    last_restart: float | None = None
    reason = status.get("reason") or status.get("phase") or ""

    def note_restart(container: Obj) -> None:
        nonlocal last_restart
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or parse_iso(finished) > last_restart):
            last_restart = parse_iso(finished)

    initializing = False
    init_specs = spec.get("initContainers") or []
    for i, container in enumerate(status.get("initContainerStatuses") or []):
        restarts += container.get("restartCount", 0)
        note_restart(container)
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if terminated is not None:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing:
        restarts, has_running = 0, False
        for container in reversed(status.get("containerStatuses") or []):
            restarts += container.get("restartCount", 0)
            note_restart(container)
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                          else f"ExitCode:{terminated.get('exitCode', 0)}")
            elif container.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(obj, "Ready") else "NotReady"
    if obj["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restarts_cell = str(restarts)
    if last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    ips = status.get("podIPs") or []
    gates = spec.get("readinessGates") or []
    gates_cell = "<none>"
    if gates:
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gates_cell = f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    return [obj["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", reason, restarts_cell,
            _age(obj, now), (ips[0].get("ip") if ips else "") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def _deployment(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), _age(obj, now), names, images,
            _label_selector(spec.get("selector"))]


def _replica_set(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _containers(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), _age(obj, now), names, images, _label_selector(spec.get("selector"))]


def _job(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if status.get("startTime"):
        end = parse_iso(status["completionTime"]) if status.get("completionTime") else now
        duration = human_duration(end - parse_iso(status["startTime"]))
    if _has_condition(obj, "Complete"):
        state = "Complete"
    elif _has_condition(obj, "Failed"):
        state = "Failed"
    elif obj["metadata"].get("deletionTimestamp"):
        state = "Terminating"
    elif _has_condition(obj, "Suspended"):
        state = "Suspended"
    elif _has_condition(obj, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(((spec.get("template") or {}).get("spec")) or {})
    return [obj["metadata"]["name"], state, completions, duration, _age(obj, now), names, images,
            _label_selector(spec.get("selector"))]


def _load_balancer(status: Obj, wide: bool) -> str:
    found = sorted({i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []
                    if i.get("ip") or i.get("hostname")})
    text = ",".join(found)
    return text if wide or len(text) <= 16 else text[:13] + "..."


def _service(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    external_ips = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        external = ",".join(external_ips) or "<none>"
    elif kind == "LoadBalancer":
        balancer = _load_balancer(obj.get("status") or {}, True)
        external = ",".join(([balancer] if balancer else []) + external_ips) or "<pending>"
    elif kind == "ExternalName":
        external = spec.get("externalName", "")
    else:
        external = "<unknown>"
    ports = ",".join(f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
                     else f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [obj["metadata"]["name"], kind, (spec.get("clusterIPs") or ["<none>"])[0], external, ports or "<none>",
            _age(obj, now), _labels(spec.get("selector"))]


def _ingress(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")][:3]
    hosts_cell = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        hosts_cell += f" + {len(rules) - 3} more..."
    return [obj["metadata"]["name"], spec.get("ingressClassName") or "<none>", hosts_cell,
            _load_balancer(obj.get("status") or {}, True), "80, 443" if spec.get("tls") else "80", _age(obj, now)]


def _event(obj: Obj, now: float) -> list[Any]:
    first = since(obj.get("firstTimestamp"), now) if obj.get("firstTimestamp") else since(obj.get("eventTime"), now)
    last = since(obj["lastTimestamp"], now) if obj.get("lastTimestamp") else first
    count = obj.get("count") or 0
    series = obj.get("series")
    if series:
        last, count = since(series.get("lastObservedTime"), now), series.get("count", 0)
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    involved = obj.get("involvedObject") or {}
    target = involved.get("kind", "").lower()
    if involved.get("name"):
        target = f"{target}/{involved['name']}"
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingComponent") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return [last, obj.get("type", ""), obj.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{component}, {instance}" if instance else component, (obj.get("message") or "").strip(), first, count,
            obj["metadata"]["name"]]


def _namespace(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], (obj.get("status") or {}).get("phase", ""), _age(obj, now)]


def _secret(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj.get("type", ""), len(obj.get("data") or {}), _age(obj, now)]


def _config_map(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj, now)]


def _service_account(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("secrets") or []), _age(obj, now)]


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _claim(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = "Terminating" if obj["metadata"].get("deletionTimestamp") else status.get("phase", "")
    capacity = modes = ""
    if spec.get("volumeName"):
        capacity = (status.get("capacity") or {}).get("storage", "")
        # helper.GetAccessModesAsString: a fixed order, whatever order the claim lists them in.
        present = status.get("accessModes") or []
        modes = ",".join(short for mode, short in _ACCESS_MODES.items() if mode in present)
    return [obj["metadata"]["name"], phase, spec.get("volumeName", ""), capacity, modes,
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>", _age(obj, now),
            spec.get("volumeMode") or "<unset>"]


def _quota(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests, limits = [], []
    for resource in sorted(hard):
        target = limits if resource.split(".")[0] == "limits" and "." in resource else requests
        target.append(f"{resource}: {used.get(resource, '0')}/{hard[resource]}")
    return [obj["metadata"]["name"], _age(obj, now), ", ".join(requests), ", ".join(limits)]


def _network_policy(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], _label_selector((obj.get("spec") or {}).get("podSelector")), _age(obj, now)]


def _lease(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], (obj.get("spec") or {}).get("holderIdentity") or "", _age(obj, now)]


def _storage_class(obj: Obj, now: float) -> list[Any]:
    annotations = obj["metadata"].get("annotations") or {}
    default = any(annotations.get(k) == "true" for k in ("storageclass.kubernetes.io/is-default-class",
                                                          "storageclass.beta.kubernetes.io/is-default-class"))
    name = obj["metadata"]["name"] + (" (default)" if default else "")
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate", bool(obj.get("allowVolumeExpansion")), _age(obj, now)]


def _default(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


_WORKLOAD_WIDE = [_col("Containers", description=_CONTAINERS_DOC, priority=1),
                  _col("Images", description=_IMAGES_DOC, priority=1),
                  _col("Selector", description="A label query over pods that should match the replica count.",
                       priority=1)]

PRINTERS: dict[str, tuple[list[Column], Printer]] = {
    "Pod": ([NAME, _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
             _col("Status", description="The aggregate status of the containers in this pod."),
             _col("Restarts", description="The number of times the containers in this pod have been restarted and "
                                          "when the last container in this pod has restarted."),
             AGE, _col("IP", description="podIP address allocated to the pod.", priority=1),
             _col("Node", description="NodeName indicates in which node this pod is scheduled.", priority=1),
             _col("Nominated Node", description="nominatedNodeName is set only when this pod preempts other pods "
                                                "on the node.", priority=1),
             _col("Readiness Gates", description="If specified, all readiness gates will be evaluated for pod "
                                                 "readiness.", priority=1)], _pod),
    "Deployment": ([NAME, _col("Ready", description="Number of the pod with ready state"),
                    _col("Up-to-date", description="Total number of non-terminated pods targeted by this "
                                                   "deployment that have the desired template spec."),
                    _col("Available", description="Total number of available pods (ready for at least "
                                                  "minReadySeconds) targeted by this deployment."),
                    AGE, *_WORKLOAD_WIDE], _deployment),
    "ReplicaSet": ([NAME, _col("Desired", "integer", "Replicas is the number of desired replicas."),
                    _col("Current", "integer", "Replicas is the most recently observed number of replicas."),
                    _col("Ready", "integer", "The number of ready replicas for this replica set."),
                    AGE, *_WORKLOAD_WIDE], _replica_set),
    "Job": ([NAME, _col("Status", description="Status of the job."),
             _col("Completions", description="The number of pods which reached phase Succeeded."),
             _col("Duration", description="Time required to complete the job."), AGE, *_WORKLOAD_WIDE], _job),
    "Service": ([NAME, _col("Type", description="type determines how the Service is exposed."),
                 _col("Cluster-IP", description="clusterIP is the IP address of the service."),
                 _col("External-IP", description="externalIPs is a list of IP addresses for which nodes in the "
                                                 "cluster will also accept traffic for this service."),
                 _col("Port(s)", description="The list of ports that are exposed by this service."), AGE,
                 _col("Selector", description="Route service traffic to pods with label keys and values matching "
                                              "this selector.", priority=1)], _service),
    "Ingress": ([NAME, _col("Class", description="The name of the IngressClass resource that should be used for "
                                                 "additional configuration"),
                 _col("Hosts", description="Hosts that incoming requests are matched against before the ingress "
                                           "rule"),
                 _col("Address", description="Address is a list containing ingress points for the load-balancer"),
                 _col("Ports", description="Ports of TLS configurations that open"), AGE], _ingress),
    "Event": ([_col("Last Seen", description="The time at which the most recent occurrence of this event was "
                                             "recorded."),
               _col("Type", description="Type of this event (Normal, Warning), new types could be added in the "
                                        "future"),
               _col("Reason", description="This should be a short, machine understandable string that gives the "
                                          "reason for the transition into the object's current status."),
               _col("Object", description="The object that this event is about."),
               _col("Subobject", description="If referring to a piece of an object instead of an entire object, "
                                             "this string should contain a valid JSON/Go field access statement.",
                    priority=1),
               _col("Source", description="The component reporting this event.", priority=1),
               _col("Message", description="A human-readable description of the status of this operation."),
               _col("First Seen", description="The time at which the event was first recorded.", priority=1),
               _col("Count", description="The number of times this event has occurred.", priority=1),
               {**NAME, "priority": 1}], _event),
    "Namespace": ([NAME, _col("Status", description="The status of the namespace"), AGE], _namespace),
    "Secret": ([NAME, _col("Type", description="Used to facilitate programmatic handling of secret data."),
                _col("Data", description="Data contains the secret data."), AGE], _secret),
    "ConfigMap": ([NAME, _col("Data", description="Data contains the configuration data."), AGE], _config_map),
    "ServiceAccount": ([NAME, _col("Secrets", description="Secrets is a list of the secrets in the same "
                                                          "namespace that pods running using this ServiceAccount "
                                                          "are allowed to use."), AGE], _service_account),
    "PersistentVolumeClaim": ([NAME, _col("Status", description="phase represents the current phase of "
                                                                "PersistentVolumeClaim."),
                               _col("Volume", description="volumeName is the binding reference to the "
                                                          "PersistentVolume backing this claim."),
                               _col("Capacity", description="capacity represents the actual resources of the "
                                                            "underlying volume."),
                               _col("Access Modes", description="accessModes contains the actual access modes the "
                                                                "volume backing the PVC has."),
                               _col("StorageClass", description="StorageClass of the pvc"),
                               _col("VolumeAttributesClass", description="VolumeAttributesClass of the pvc"), AGE,
                               _col("VolumeMode", description="volumeMode defines what type of volume is required "
                                                              "by the claim.", priority=1)], _claim),
    "ResourceQuota": ([NAME, AGE,
                       _col("Request", description="Request represents a minimum amount of cpu/memory that a "
                                                   "container may consume."),
                       _col("Limit", description="Limits control the maximum amount of cpu/memory that a container "
                                                 "may use independent of contention on the node.")], _quota),
    "NetworkPolicy": ([NAME, _col("Pod-Selector", description="Selects the pods to which this NetworkPolicy object "
                                                              "applies."), AGE], _network_policy),
    "Lease": ([NAME, _col("Holder", description="holderIdentity contains the identity of the holder of a current "
                                                "lease."), AGE], _lease),
    "StorageClass": ([NAME, _col("Provisioner", description="provisioner indicates the type of the provisioner."),
                      _col("ReclaimPolicy", description="reclaimPolicy controls the reclaimPolicy for dynamically "
                                                        "provisioned PersistentVolumes of this storage class."),
                      _col("VolumeBindingMode", description="volumeBindingMode indicates how PersistentVolumeClaims "
                                                            "should be provisioned and bound."),
                      _col("AllowVolumeExpansion", description="allowVolumeExpansion shows whether the storage class "
                                                               "allow volume expand."), AGE], _storage_class),
}
_DEFAULT = ([NAME, _col("Created At", "date", "CreationTimestamp is a timestamp representing the server time when "
                                              "this object was created.")], _default)


def _printer(kind: Kind) -> tuple[list[Column], Printer]:
    return PRINTERS.get(kind.kind, _DEFAULT)


def _row_object(wire: Obj, include: str, table_version: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return wire
    return {"kind": "PartialObjectMetadata", "apiVersion": f"{TABLE_GROUP}/{table_version}",
            "metadata": wire.get("metadata") or {}}


def _row(kind: Kind, wire: Obj, include: str, table_version: str, now: float) -> Obj:
    row: Obj = {"cells": _printer(kind)[1](wire, now)}
    obj = _row_object(wire, include, table_version)
    if obj is not None:
        row["object"] = obj
    if kind.kind == "Pod" and (wire.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        phase = wire["status"]["phase"]
        row["conditions"] = [{"type": "Completed", "status": "True", "reason": phase,
                              "message": "The pod has completed successfully." if phase == "Succeeded"
                              else "The pod failed."}]
    return row


def table(kind: Kind, wires: list[Obj], *, table_version: str, include: str = "Metadata",
          list_meta: Obj | None = None, headers: bool = True) -> Obj:
    """A meta.k8s.io Table of `wires` (objects as this kind's API version presents them)."""
    now = time.time()
    return {"kind": "Table", "apiVersion": f"{TABLE_GROUP}/{table_version}", "metadata": list_meta or {},
            "columnDefinitions": list(_printer(kind)[0]) if headers else [],
            "rows": [_row(kind, w, include, table_version, now) for w in wires]}


def list_table(kind: Kind, listed: Obj, *, table_version: str, include: str) -> Obj:
    items = [{"kind": kind.kind, "apiVersion": kind.api_version, **item} for item in listed["items"]]
    return table(kind, items, table_version=table_version, include=include, list_meta=listed["metadata"])


def object_table(kind: Kind, wire: Obj, *, table_version: str, include: str) -> Obj:
    return table(kind, [wire], table_version=table_version, include=include,
                 list_meta={"resourceVersion": wire["metadata"].get("resourceVersion", "")})


class WatchTables:
    """Turns each watched object into a one-row Table; only the first event carries the columns,
    as kube-apiserver's watch encoder does."""

    def __init__(self, kind: Kind, table_version: str, include: str):
        self.kind, self.table_version, self.include = kind, table_version, include
        self.headers_sent = False

    def __call__(self, wire: Obj) -> Obj:
        out = table(self.kind, [wire], table_version=self.table_version, include=self.include,
                    list_meta={"resourceVersion": wire["metadata"].get("resourceVersion", "")},
                    headers=not self.headers_sent)
        self.headers_sent = True
        return out
