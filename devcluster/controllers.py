"""The control plane and the node: scheduler, kubelet, and the controllers ale depends on.

Controllers are level-triggered like kube-controller-manager's: a store change enqueues a key,
one worker reconciles keys in order, and a periodic resync catches time-based transitions
(progress deadlines, job deadlines). The kubelet runs one task per pod.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from . import kinds, volumes
from .api import Api, ApiError
from .eventttl import DEFAULT_EVENT_TTL
from .kinds import Kind, Obj, find_kind
from .runtime_types import ContainerRun
from .store import Change
from .usage import LEAK_DEFAULT_MIB_PER_SECOND, seconds_until_oom
from .volumes import CLAIM, STORAGE_CLASS

from .podlogs import job_outcome

log = logging.getLogger("devcluster.controllers")

NODE = "devcluster"
HOST_IP = "172.18.0.2"

POD = find_kind("v1", "pods")
NAMESPACE = find_kind("v1", "namespaces")
EVENT = find_kind("v1", "events")
SERVICE = find_kind("v1", "services")
SECRET = find_kind("v1", "secrets")
SERVICE_ACCOUNT = find_kind("v1", "serviceaccounts")
CONFIGMAP = find_kind("v1", "configmaps")
QUOTA = find_kind("v1", "resourcequotas")
DEPLOYMENT = find_kind("apps/v1", "deployments")
REPLICASET = find_kind("apps/v1", "replicasets")
JOB = find_kind("batch/v1", "jobs")
INGRESS = find_kind("networking.k8s.io/v1", "ingresses")
NODE_KIND = find_kind("v1", "nodes")
assert all((NODE_KIND, POD, NAMESPACE, EVENT, SERVICE, SECRET, SERVICE_ACCOUNT, CONFIGMAP, QUOTA, DEPLOYMENT, REPLICASET,
            JOB, INGRESS))

ROOT_CA = ("-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlcm5l\n"
           "dGVzMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAwMDAwMFowFTETMBEGA1UEAxMK\na3ViZXJuZXRlczAKBggqhkjOPQQDAgNI"
           "ADBFAiEAdevclusterdevclusterdevcluster\n-----END CERTIFICATE-----\n")


def _strip_zero(status: Obj, keep: tuple[str, ...] = ()) -> Obj:
    """Go's omitempty: zero counters vanish from status."""
    return {k: v for k, v in status.items() if k in keep or v not in (0, None, [], {})}


def _owner_ref(kind: Kind, obj: Obj) -> Obj:
    return {"apiVersion": kind.api_version, "kind": kind.kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _safe_encode(text: str) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[b % len(alphabet)] for b in text.encode())


def pod_template_hash(template: Obj, collision_count: int = 0) -> str:
    """fnv32a over the template, encoded like the deployment controller's ComputeHash."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return _safe_encode(str(h))


def _resolve_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(value or 0)


def _condition(type_: str, status: str, reason: str, message: str, previous: list[Obj] | None,
               *, update_time: bool = True, probe: bool = False) -> Obj:
    """A condition that keeps lastTransitionTime while its status does not change."""
    now = kinds.now_iso()
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    out: Obj = {"type": type_, "status": status}
    if probe:
        out["lastProbeTime"] = None
    if update_time:
        same = old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message
        out["lastUpdateTime"] = old["lastUpdateTime"] if same and old.get("lastUpdateTime") else now
    out["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == status and \
        old.get("lastTransitionTime") else now
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _normalise_image(image: str) -> str:
    name = image
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return name


def _image_id(image: str) -> str:
    full = _normalise_image(image)
    repo = full.split("@", 1)[0].rsplit(":", 1)[0] if ":" in full.rsplit("/", 1)[-1] else full.split("@", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


# --- events ------------------------------------------------------------------------------------------

class Recorder:
    """Writes core/v1 Events the way client-go's legacy recorder does, aggregating repeats into count."""

    def __init__(self, api: Api):
        self.api = api

    def _ref(self, kind: Kind, obj: Obj, field_path: str = "") -> Obj:
        meta = obj["metadata"]
        ref = {"kind": kind.kind, "namespace": meta.get("namespace", ""), "name": meta["name"], "uid": meta["uid"],
               "apiVersion": kind.api_version, "resourceVersion": meta.get("resourceVersion", "")}
        if not kind.namespaced:
            ref.pop("namespace")
        if field_path:
            ref["fieldPath"] = field_path
        return ref

    def event(self, kind: Kind, obj: Obj, type_: str, reason: str, message: str, *, component: str,
              host: str = "", field_path: str = "") -> None:
        ns = obj["metadata"].get("namespace") or "default"
        ref = self._ref(kind, obj, field_path)
        for existing in self.api.store.list("events", ns):
            inv = existing.get("involvedObject") or {}
            if inv.get("uid") == ref["uid"] and existing.get("reason") == reason and \
                    existing.get("message") == message and (existing.get("source") or {}).get("component") == component \
                    and inv.get("fieldPath", "") == field_path and existing.get("type") == type_:
                new = copy.deepcopy(existing)
                new["count"] = int(existing.get("count") or 1) + 1
                new["lastTimestamp"] = kinds.now_iso()
                new["involvedObject"]["resourceVersion"] = ref["resourceVersion"]
                self._write(lambda: self.api.write(EVENT, existing, new, manager=component, trusted=True))
                return
        now = kinds.now_iso()
        source = {"component": component}
        if host:
            source["host"] = host
        body = {"metadata": {"name": f"{obj['metadata']['name']}.{time.time_ns():x}", "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message, "source": source,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_, "eventTime": None,
                "reportingComponent": component, "reportingInstance": host}
        self._write(lambda: self.api.create(EVENT, ns, body, manager=component))

    def scheduled(self, pod: Obj) -> None:
        ns = pod["metadata"]["namespace"]
        self.scheduler_event(pod, "Normal", "Scheduled", "Binding",
                             f"Successfully assigned {ns}/{pod['metadata']['name']} to {NODE}")

    def scheduler_event(self, pod: Obj, type_: str, reason: str, action: str, message: str) -> None:
        """The scheduler reports through events.k8s.io: eventTime set, legacy timestamps null."""
        ns = pod["metadata"]["namespace"]
        body = {"metadata": {"name": f"{pod['metadata']['name']}.{time.time_ns():x}", "namespace": ns},
                "involvedObject": self._ref(POD, pod), "reason": reason, "message": message,
                "source": {}, "firstTimestamp": None, "lastTimestamp": None, "type": type_,
                "eventTime": kinds.now_micro(), "action": action, "reportingComponent": "default-scheduler",
                "reportingInstance": f"default-scheduler-{NODE}"}
        self._write(lambda: self.api.create(EVENT, ns, body, manager="kube-scheduler"))

    @staticmethod
    def _write(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except ApiError as exc:
            # Events are best effort, as in client-go: a terminating namespace refuses them.
            log.debug("event dropped: %s", exc.message)


# --- kubelet -----------------------------------------------------------------------------------------

@dataclass
class ContainerState:
    name: str
    image: str
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    image_id: str = ""
    done: bool = False  # terminated for good (Jobs, restartPolicy Never)

    def as_status(self) -> Obj:
        out = {"name": self.name, "state": self.state, "lastState": self.last_state, "ready": self.ready,
               "restartCount": self.restart_count, "image": _normalise_image(self.image) if self.image_id else self.image,
               "imageID": self.image_id, "started": self.started}
        if self.container_id:
            out["containerID"] = self.container_id
        return out


@dataclass
class PodRuntime:
    namespace: str
    name: str
    uid: str
    containers: dict[str, ContainerState]
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    start_time: str = ""
    pod_ip: str = ""


class Kubelet:
    def __init__(self, api: Api, recorder: Recorder, *, ready_seconds: float, backoff_base: float,
                 leak_mib_per_second: float = LEAK_DEFAULT_MIB_PER_SECOND):
        self.api = api
        self.leak_mib_per_second = leak_mib_per_second
        self.recorder = recorder
        self.ready_seconds = ready_seconds
        self.backoff_base = backoff_base
        self.pods: dict[str, PodRuntime] = {}
        # Runs survive until the pod is deleted; keyed by pod uid then container name.
        self.runs: dict[str, dict[str, list[ContainerRun]]] = {}
        self.next_ip = 2
        self.on_pod_gone: list[Callable[[str], None]] = []

    def runs_for(self, namespace: str, name: str, container: str) -> list[ContainerRun] | None:
        pod = self.api.store.get("pods", namespace, name)
        if pod is None:
            return None
        return list(self.runs.get(pod["metadata"]["uid"], {}).get(container, []))

    def container_state(self, namespace: str, name: str, container: str) -> ContainerState | None:
        pod = self.api.store.get("pods", namespace, name)
        if pod is None:
            return None
        rt = self.pods.get(pod["metadata"]["uid"])
        return rt.containers.get(container) if rt else None

    def observe(self, change: Change) -> None:
        pod = change.obj
        uid = pod["metadata"]["uid"]
        if change.type == "DELETED":
            rt = self.pods.pop(uid, None)
            if rt:
                rt.stopping.set()
                if rt.task:
                    rt.task.cancel()
            self._finish_runs(uid)
            self.runs.pop(uid, None)
            for cb in self.on_pod_gone:
                cb(uid)
            return
        if pod["metadata"].get("deletionTimestamp"):
            rt = self.pods.get(uid)
            if rt is None:
                asyncio.get_running_loop().call_soon(self._remove, pod["metadata"]["namespace"],
                                                     pod["metadata"]["name"], uid)
            elif not rt.stopping.is_set():
                rt.stopping.set()
                asyncio.get_running_loop().create_task(self._terminate(rt))
            return
        if (pod.get("spec") or {}).get("nodeName") == NODE and uid not in self.pods:
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                return
            rt = PodRuntime(pod["metadata"]["namespace"], pod["metadata"]["name"], uid,
                            {c["name"]: ContainerState(c["name"], c.get("image", ""))
                             for c in pod["spec"].get("containers") or []})
            self.pods[uid] = rt
            rt.task = asyncio.get_running_loop().create_task(self._run_pod(rt))

    def _remove(self, namespace: str, name: str, uid: str) -> None:
        pod = self.api.store.get("pods", namespace, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            self.api.finish_deletion(POD, namespace, name)

    def _pod(self, rt: PodRuntime) -> Obj | None:
        pod = self.api.store.get("pods", rt.namespace, rt.name)
        return pod if pod is not None and pod["metadata"]["uid"] == rt.uid else None

    def _event(self, rt: PodRuntime, type_: str, reason: str, message: str, container: str = "") -> None:
        pod = self._pod(rt)
        if pod is None:
            return
        self.recorder.event(POD, pod, type_, reason, message, component="kubelet", host=NODE,
                            field_path=f"spec.containers{{{container}}}" if container else "")

    def _publish(self, rt: PodRuntime) -> None:
        """Write the pod status the kubelet would report for the current container states."""
        pod = self._pod(rt)
        if pod is None:
            return
        spec = pod.get("spec") or {}
        old_status = pod.get("status") or {}
        states = [rt.containers[c["name"]] for c in spec.get("containers") or [] if c["name"] in rt.containers]
        policy = spec.get("restartPolicy", "Always")
        all_done = states and all(s.done for s in states)
        if all_done:
            failed = any(s.state.get("terminated", {}).get("exitCode", 0) != 0 for s in states)
            phase = "Failed" if failed else "Succeeded"
        elif any(s.started or s.restart_count for s in states):
            phase = "Running"
        else:
            phase = "Pending"
        if policy == "Never" and phase == "Running" and all(
                "terminated" in s.state for s in states):
            phase = "Failed" if any(s.state["terminated"].get("exitCode") for s in states) else "Succeeded"
        unready = [s.name for s in states if not s.ready]
        conds = old_status.get("conditions")
        sandbox = "True" if rt.pod_ip and not all_done else "False"
        ready_reason = "PodCompleted" if all_done else ("ContainersNotReady" if unready else "")
        ready_msg = "" if all_done or not unready else f"containers with unready status: [{' '.join(unready)}]"
        status = "True" if not unready and not all_done else "False"
        conditions = [
            _condition("PodReadyToStartContainers", sandbox, "", "", conds, update_time=False, probe=True),
            _condition("Initialized", "True", "PodCompleted" if all_done else "", "", conds, update_time=False,
                       probe=True),
            _condition("Ready", status, ready_reason, ready_msg, conds, update_time=False, probe=True),
            _condition("ContainersReady", status, ready_reason, ready_msg, conds, update_time=False, probe=True),
            _condition("PodScheduled", "True", "", "", conds, update_time=False, probe=True),
        ]
        new_status: Obj = {"phase": phase, "conditions": conditions, "hostIP": HOST_IP,
                           "hostIPs": [{"ip": HOST_IP}]}
        if rt.pod_ip:
            new_status["podIP"] = rt.pod_ip
            new_status["podIPs"] = [{"ip": rt.pod_ip}]
        new_status["startTime"] = rt.start_time
        new_status["containerStatuses"] = [s.as_status() for s in states]
        new_status["qosClass"] = kinds.qos_class(spec)
        new = copy.deepcopy(pod)
        new["status"] = new_status
        try:
            self.api.write(POD, pod, new, manager="kubelet", subresource="status", trusted=True)
        except ApiError as exc:
            log.debug("pod status write failed: %s", exc.message)

    def _container_spec(self, pod: Obj, name: str) -> Obj:
        return next((c for c in pod["spec"].get("containers") or [] if c["name"] == name), {})

    def _start_run(self, rt: PodRuntime, pod: Obj, cs: ContainerState) -> ContainerRun:
        c = self._container_spec(pod, cs.name)
        env = {e["name"]: e["value"] for e in c.get("env") or [] if isinstance(e.get("value"), str)}
        run = ContainerRun(pod=rt.name, container=cs.name, image=c.get("image", ""), env=env,
                           args=list(c.get("command") or []) + list(c.get("args") or []), started_at=time.time(),
                           is_job=any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences") or []))
        self.runs.setdefault(rt.uid, {}).setdefault(cs.name, []).append(run)
        return run

    def _finish_runs(self, uid: str, exit_code: int = 143) -> None:
        for runs in self.runs.get(uid, {}).values():
            if runs and runs[-1].finished_at is None:
                runs[-1].finished_at = time.time()
                runs[-1].exit_code = exit_code

    async def _run_pod(self, rt: PodRuntime) -> None:
        try:
            pod = self._pod(rt)
            if pod is None:
                return
            rt.start_time = kinds.now_iso()
            rt.pod_ip = f"10.244.{(self.next_ip // 250) % 250}.{self.next_ip % 250 + 2}"
            self.next_ip += 1
            self._publish(rt)
            await asyncio.gather(*(self._run_container(rt, cs) for cs in rt.containers.values()))
        except asyncio.CancelledError:
            pass
        except Exception:  # a kubelet bug must not take the server down
            log.exception("pod %s/%s runtime failed", rt.namespace, rt.name)

    async def _sleep_or_stop(self, rt: PodRuntime, seconds: float) -> bool:
        """Sleep; True when the pod started terminating meanwhile."""
        try:
            await asyncio.wait_for(rt.stopping.wait(), timeout=max(seconds, 0))
            return True
        except asyncio.TimeoutError:
            return rt.stopping.is_set()

    async def _run_container(self, rt: PodRuntime, cs: ContainerState) -> None:
        pod = self._pod(rt)
        if pod is None:
            return
        image = cs.image
        policy = pod["spec"].get("restartPolicy", "Always")
        pulls = 0
        self._event(rt, "Normal", "Pulling", f'Pulling image "{image}"', cs.name)
        if await self._sleep_or_stop(rt, self.ready_seconds):
            return
        if "does-not-exist" in image:
            await self._image_pull_backoff(rt, cs)
            return
        ref = _normalise_image(image)
        self._event(rt, "Normal", "Pulled", f'Successfully pulled image "{image}" in {self.ready_seconds:.3g}s '
                    f'({self.ready_seconds:.3g}s including waiting). Image size: '
                    f'{int(hashlib.sha256(ref.encode()).hexdigest()[:6], 16) + 5_000_000} bytes.', cs.name)
        cs.image_id = _image_id(image)
        while True:
            pod = self._pod(rt)
            if pod is None or rt.stopping.is_set():
                return
            if pulls:
                self._event(rt, "Normal", "Pulled", f'Container image "{image}" already present on machine', cs.name)
            pulls += 1
            self._event(rt, "Normal", "Created", f"Created container {cs.name}", cs.name)
            cs.container_id = "containerd://" + hashlib.sha256(f"{rt.uid}/{cs.name}/{pulls}".encode()).hexdigest()
            run = self._start_run(rt, pod, cs)
            self._event(rt, "Normal", "Started", f"Started container {cs.name}", cs.name)
            started = kinds.now_iso()
            cs.state = {"running": {"startedAt": started}}
            cs.ready, cs.started = True, True
            self._publish(rt)
            oom_after = seconds_until_oom(image, run.env, self._container_spec(pod, cs.name).get("resources") or {},
                                          self.leak_mib_per_second)
            if run.is_job:
                duration, code = job_outcome(run)
            elif oom_after is not None:
                duration, code = oom_after, 137
            elif _crashes(image, run.args):
                duration, code = max(self.ready_seconds, 0.3), 1
            else:
                await rt.stopping.wait()
                return
            if await self._sleep_or_stop(rt, duration):
                return
            run.finished_at, run.exit_code = time.time(), code
            reason = "Completed" if code == 0 else "OOMKilled" if oom_after is not None else "Error"
            if oom_after is not None:
                self._system_oom(rt, cs)
            terminated = {"exitCode": code, "reason": reason, "startedAt": started,
                          "finishedAt": kinds.now_iso(), "containerID": cs.container_id}
            cs.ready, cs.started = False, False
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                cs.state = {"terminated": terminated}
                cs.done = True
                self._publish(rt)
                return
            cs.last_state = {"terminated": terminated}
            cs.restart_count += 1
            nominal = min(10 * 2 ** (cs.restart_count - 1), 300)
            cs.state = {"waiting": {"reason": "CrashLoopBackOff",
                                    "message": f"back-off {_go_duration(nominal)} restarting failed container="
                                               f"{cs.name} pod={rt.name}_{rt.namespace}({rt.uid})"}}
            self._publish(rt)
            self._event(rt, "Warning", "BackOff", f"Back-off restarting failed container {cs.name} in pod "
                                                  f"{rt.name}_{rt.namespace}({rt.uid})", cs.name)
            wait = min(self.backoff_base * 2 ** (cs.restart_count - 1), self.backoff_base * 30)
            if await self._sleep_or_stop(rt, wait):
                return

    def _system_oom(self, rt: PodRuntime, cs: ContainerState) -> None:
        """The kernel's OOM kill, as the kubelet's OOM watcher reports it on the Node."""
        node = self.api.store.get(NODE_KIND.bucket, "", NODE)
        if node is None:
            return
        process = cs.image.rsplit("/", 1)[-1].split("@")[0].split(":")[0] or cs.name
        pid = 1000 + zlib.crc32(f"{rt.uid}/{cs.name}/{cs.restart_count}".encode()) % 60000
        self.recorder.event(NODE_KIND, node, "Warning", "SystemOOM",
                            f"System OOM encountered, victim process: {process}, pid: {pid}", component="kubelet",
                            host=NODE)

    async def _image_pull_backoff(self, rt: PodRuntime, cs: ContainerState) -> None:
        image = cs.image
        ref = _normalise_image(image)
        attempt = 0
        while not rt.stopping.is_set():
            attempt += 1
            self._event(rt, "Warning", "Failed",
                        f'Failed to pull image "{image}": failed to pull and unpack image "{ref}": failed to resolve '
                        f'reference "{ref}": pull access denied, repository does not exist or may require '
                        f'authorization: server message: insufficient_scope: authorization failed', cs.name)
            self._event(rt, "Warning", "Failed", "Error: ErrImagePull", cs.name)
            cs.state = {"waiting": {"reason": "ErrImagePull",
                                    "message": f'failed to pull and unpack image "{ref}": failed to resolve reference '
                                               f'"{ref}": pull access denied, repository does not exist or may '
                                               f'require authorization: server message: insufficient_scope: '
                                               f'authorization failed'}}
            self._publish(rt)
            if await self._sleep_or_stop(rt, self.backoff_base / 2):
                return
            self._event(rt, "Normal", "BackOff", f'Back-off pulling image "{image}"', cs.name)
            self._event(rt, "Warning", "Failed", "Error: ImagePullBackOff", cs.name)
            cs.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}
            self._publish(rt)
            if await self._sleep_or_stop(rt, min(self.backoff_base * 2 ** attempt, self.backoff_base * 30)):
                return
            self._event(rt, "Normal", "Pulling", f'Pulling image "{image}"', cs.name)

    async def _terminate(self, rt: PodRuntime) -> None:
        pod = self._pod(rt)
        if pod is None:
            return
        for cs in rt.containers.values():
            if "running" in cs.state:
                self._event(rt, "Normal", "Killing", f"Stopping container {cs.name}", cs.name)
        grace = pod["metadata"].get("deletionGracePeriodSeconds", 30) or 0
        await asyncio.sleep(min(grace, max(self.ready_seconds / 2, 0.05)))
        self._finish_runs(rt.uid)
        if rt.task:
            rt.task.cancel()
        self._remove(rt.namespace, rt.name, rt.uid)

    async def stop(self) -> None:
        for rt in list(self.pods.values()):
            if rt.task:
                rt.task.cancel()
        tasks = [rt.task for rt in self.pods.values() if rt.task]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _crashes(image: str, args: list[str]) -> bool:
    """Images named like `crash`, or commands that say so, exit 1 shortly after starting."""
    return "crash" in image or any("crash" in a for a in args)


def _go_duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    return f"{seconds // 60}m{seconds % 60}s"


# --- controller manager ----------------------------------------------------------------------------

class ControllerManager:
    def __init__(self, api: Api, *, pod_ready_seconds: float = 1.0, backoff_base: float | None = None,
                 resync_seconds: float = 1.0, leak_mib_per_second: float = LEAK_DEFAULT_MIB_PER_SECOND):
        self.api = api
        self.store = api.store
        self.recorder = Recorder(api)
        self.kubelet = Kubelet(api, self.recorder, ready_seconds=pod_ready_seconds,
                               backoff_base=backoff_base if backoff_base is not None else max(pod_ready_seconds, 0.2),
                               leak_mib_per_second=leak_mib_per_second)
        self.pending: dict[tuple[str, str, str], None] = {}
        self.wake: asyncio.Event | None = None
        self.tasks: list[asyncio.Task] = []
        self.resync_seconds = resync_seconds
        self.job_retry_at: dict[str, float] = {}
        # Claims the persistentvolume controller could not provision; it retries on its resync period.
        self.claim_retry_at: dict[str, float] = {}
        self.claim_retry_seconds = 15.0
        self.event_ttl = DEFAULT_EVENT_TTL  # the server sets --event-ttl
        self.store.listeners.append(self.observe)

    # --- plumbing --------------------------------------------------------------------------------

    def start(self) -> None:
        self.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._worker()), loop.create_task(self._resync())]
        self._resync_all()

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.kubelet.stop()

    def enqueue(self, controller: str, namespace: str, name: str) -> None:
        self.pending[(controller, namespace, name)] = None
        if self.wake is not None:
            self.wake.set()

    async def _worker(self) -> None:
        assert self.wake is not None
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                key = next(iter(self.pending))
                del self.pending[key]
                try:
                    getattr(self, f"sync_{key[0]}")(key[1], key[2])
                except ApiError as exc:
                    log.debug("%s %s/%s: %s", key[0], key[1], key[2], exc.message)
                except Exception:
                    log.exception("controller %s failed on %s/%s", *key)
                await asyncio.sleep(0)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            self._resync_all()

    def _resync_all(self) -> None:
        self._expire_events()
        for d in self.store.list("deployments.apps"):
            self.enqueue("deployment", d["metadata"]["namespace"], d["metadata"]["name"])
        for j in self.store.list("jobs.batch"):
            if not _job_finished(j):
                self.enqueue("job", j["metadata"]["namespace"], j["metadata"]["name"])
        for ns in self.store.list("namespaces"):
            self.enqueue("namespace", "", ns["metadata"]["name"])
        for claim in self.store.list(CLAIM.bucket):
            if claim["metadata"].get("deletionTimestamp") or (claim.get("status") or {}).get("phase") != "Bound":
                self.enqueue("claim", claim["metadata"]["namespace"], claim["metadata"]["name"])
        for pod in self.store.list("pods"):
            # Unschedulable pods wait in the scheduler's queue; retrying them is cheap and idempotent.
            if not (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                self.enqueue("schedule", pod["metadata"]["namespace"], pod["metadata"]["name"])
        for bucket, items in list(self.store.buckets.items()):
            for obj in list(items.values()):
                if "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
                    self.enqueue("foreground", bucket, json.dumps([obj["metadata"].get("namespace", ""),
                                                                   obj["metadata"]["name"]]))

    def _expire_events(self) -> None:
        """Events live `event_ttl` seconds after their last write, as with kube-apiserver's --event-ttl."""
        cutoff = time.time() - self.event_ttl
        for ev in self.store.list("events"):
            stamp = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
            if stamp and kinds.parse_iso(stamp) < cutoff:
                self.store.delete("events", ev["metadata"]["namespace"], ev["metadata"]["name"])

    def observe(self, change: Change) -> None:
        obj, bucket = change.obj, change.bucket
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if bucket == "pods":
            self.kubelet.observe(change)
            if change.type == "ADDED" and not (obj.get("spec") or {}).get("nodeName"):
                self.enqueue("schedule", ns, name)
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "ReplicaSet":
                    self.enqueue("replicaset", ns, ref["name"])
                elif ref.get("kind") == "Job":
                    self.enqueue("job", ns, ref["name"])
            self.enqueue("quota", ns, "")
            # A pod that stops or goes may release a claim held by its protection finalizer.
            for claim_name in volumes.claim_names(obj):
                claim = self.store.get(CLAIM.bucket, ns, claim_name)
                if claim is not None and claim["metadata"].get("deletionTimestamp"):
                    self.enqueue("claim", ns, claim_name)
        elif bucket == CLAIM.bucket:
            self.enqueue("claim", ns, name)
            self.enqueue("quota", ns, "")
            # The scheduler requeues the pods that wait for this claim (a cluster event they care about).
            for pod in self.store.list("pods", ns):
                if not (pod.get("spec") or {}).get("nodeName") and name in volumes.claim_names(pod):
                    self.enqueue("schedule", ns, pod["metadata"]["name"])
        elif bucket == STORAGE_CLASS.bucket:
            for claim in self.store.list(CLAIM.bucket):
                if (claim.get("spec") or {}).get("storageClassName") == name:
                    self.claim_retry_at.pop(claim["metadata"]["uid"], None)
                    self.enqueue("claim", claim["metadata"]["namespace"], claim["metadata"]["name"])
        elif bucket == "replicasets.apps":
            self.enqueue("replicaset", ns, name)
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "Deployment":
                    self.enqueue("deployment", ns, ref["name"])
        elif bucket == "deployments.apps":
            self.enqueue("deployment", ns, name)
        elif bucket == "jobs.batch":
            self.enqueue("job", ns, name)
            if change.type == "DELETED":
                self.job_retry_at.pop(meta["uid"], None)
        elif bucket == "namespaces":
            self.enqueue("namespace", "", name)
        elif bucket == "services":
            self.enqueue("service", ns, name)
        elif bucket == "ingresses.networking.k8s.io":
            self.enqueue("ingress", ns, name)
        elif bucket == "resourcequotas":
            self.enqueue("quota", ns, "")
        if change.type == "DELETED":
            self.enqueue("gc", bucket, meta["uid"])
            owner_ns = self.store.get("namespaces", "", ns) if ns else None
            if owner_ns is not None and owner_ns["metadata"].get("deletionTimestamp"):
                self.enqueue("namespace", "", ns)
        elif "foregroundDeletion" in (meta.get("finalizers") or []):
            self.enqueue("foreground", bucket, json.dumps([ns, name]))

    # --- scheduler -------------------------------------------------------------------------------

    def sync_schedule(self, namespace: str, name: str) -> None:
        pod = self.store.get("pods", namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        reason = volumes.unschedulable_reason(self.api, pod)
        if reason is not None:
            self._unschedulable(pod, reason)
            return
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = NODE
        pod = self.api.write(POD, pod, bound, manager="kube-scheduler", trusted=True, subresource="binding")
        scheduled = copy.deepcopy(pod)
        scheduled.setdefault("status", {})["conditions"] = [
            _condition("PodScheduled", "True", "", "", None, update_time=False, probe=True)]
        stored = self.api.write(POD, pod, scheduled, manager="kube-scheduler", subresource="status", trusted=True)
        self.recorder.scheduled(stored)

    def _unschedulable(self, pod: Obj, message: str) -> None:
        """PodScheduled=False and a FailedScheduling event, once per distinct verdict.

        The real scheduler repeats the event when it retries (at most every few minutes); reporting
        each new verdict once keeps the resync's retries from flooding the namespace with events.
        """
        conds = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("message") == message:
            return
        new = copy.deepcopy(pod)
        status = new.setdefault("status", {})
        status["phase"] = "Pending"
        status["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [
            _condition("PodScheduled", "False", "Unschedulable", message, conds, update_time=False, probe=True)]
        stored = self.api.write(POD, pod, new, manager="kube-scheduler", subresource="status", trusted=True)
        self.recorder.scheduler_event(stored, "Warning", "FailedScheduling", "Scheduling", message)

    # --- persistent volumes ----------------------------------------------------------------------

    def sync_claim(self, namespace: str, name: str) -> None:
        """The persistentvolume controller with a dynamic provisioner, the expander and pvc-protection."""
        claim = self.store.get(CLAIM.bucket, namespace, name)
        if claim is None:
            return
        uid = claim["metadata"]["uid"]
        if claim["metadata"].get("deletionTimestamp"):
            self.claim_retry_at.pop(uid, None)
            finalizers = claim["metadata"].get("finalizers") or []
            if volumes.PROTECTION_FINALIZER in finalizers and not volumes.claim_in_use(self.api, claim):
                new = copy.deepcopy(claim)
                new["metadata"]["finalizers"] = [f for f in finalizers if f != volumes.PROTECTION_FINALIZER]
                if not new["metadata"]["finalizers"]:
                    del new["metadata"]["finalizers"]
                self.api.write(CLAIM, claim, new, manager="kube-controller-manager", trusted=True)
            return
        if (claim.get("status") or {}).get("phase") == "Bound":
            self._expand_claim(claim)
            return
        if time.time() < self.claim_retry_at.get(uid, 0):
            return
        self.claim_retry_at[uid] = time.time() + self.claim_retry_seconds
        class_name = (claim.get("spec") or {}).get("storageClassName")
        if not class_name:
            # No class, no provisioning: only a pre-created PersistentVolume could satisfy it.
            self.recorder.event(CLAIM, claim, "Normal", "FailedBinding", "no persistent volumes available for this "
                                "claim and no storage class is set", component="persistentvolume-controller")
            return
        sc = self.api.find(STORAGE_CLASS, "", class_name)
        if sc is None:
            self.recorder.event(CLAIM, claim, "Warning", "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{class_name}" not found',
                                component="persistentvolume-controller")
            return
        self._provision(claim, sc)

    def _provision(self, claim: Obj, sc: Obj) -> None:
        meta = claim["metadata"]
        provisioner = sc.get("provisioner", "")
        component = f"{provisioner}_local-path-provisioner-{NODE}"
        self.recorder.event(CLAIM, claim, "Normal", "Provisioning", "External provisioner is provisioning volume "
                            f'for claim "{meta["namespace"]}/{meta["name"]}"', component=component)
        volume = f"pvc-{meta['uid']}"
        bound = copy.deepcopy(claim)
        bound["spec"]["volumeName"] = volume
        bound["metadata"].setdefault("annotations", {}).update({
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": provisioner,
            "volume.kubernetes.io/storage-provisioner": provisioner})
        claim = self.api.write(CLAIM, claim, bound, manager="kube-controller-manager", trusted=True)
        new = copy.deepcopy(claim)
        new["status"] = {"phase": "Bound", "accessModes": list(claim["spec"].get("accessModes") or []),
                         "capacity": {"storage": volumes.storage_request(claim)}}
        stored = self.api.write(CLAIM, claim, new, manager="kube-controller-manager", subresource="status",
                                trusted=True)
        self.claim_retry_at.pop(meta["uid"], None)
        self.recorder.event(CLAIM, stored, "Normal", "ProvisioningSucceeded",
                            f"Successfully provisioned volume {volume}", component=component)

    def _expand_claim(self, claim: Obj) -> None:
        """A grown request becomes the claim's capacity (the resizer and kubelet finish at once here)."""
        request = volumes.storage_request(claim)
        capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
        wanted, have = kinds.parse_quantity(request), kinds.parse_quantity(capacity)
        if wanted is None or (have is not None and wanted <= have):
            return
        new = copy.deepcopy(claim)
        new["status"]["capacity"] = {**(new["status"].get("capacity") or {}), "storage": request}
        self.api.write(CLAIM, claim, new, manager="kube-controller-manager", subresource="status", trusted=True)
        self.recorder.event(CLAIM, claim, "Normal", "FileSystemResizeSuccessful",
                            f'MountVolume.NodeExpandVolume succeeded for volume "{claim["spec"].get("volumeName")}" '
                            f"{NODE}", component="kubelet", host=NODE)

    # --- garbage collector -----------------------------------------------------------------------

    def sync_gc(self, bucket: str, uid: str) -> None:
        for kind, dep in self.api.dependents(uid):
            if any(self._owner_alive(r, dep) for r in dep["metadata"].get("ownerReferences") or []
                   if r.get("uid") != uid):
                continue
            try:
                self.api.delete(kind, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                propagation="Background")
            except ApiError:
                pass

    def _owner_alive(self, ref: Obj, dependent: Obj) -> bool:
        kind = kinds.kind_by_name(ref.get("apiVersion", ""), ref.get("kind", ""))
        if kind is None:
            return False
        owner = self.api.find(kind, dependent["metadata"].get("namespace", ""), ref.get("name", ""))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def sync_foreground(self, bucket: str, key: str) -> None:
        ns, name = json.loads(key)
        obj = self.store.get(bucket, ns, name)
        if obj is None or "foregroundDeletion" not in (obj["metadata"].get("finalizers") or []):
            return
        kind = kinds.kind_for_bucket(bucket)
        remaining = self.api.dependents(obj["metadata"]["uid"])
        for dep_kind, dep in remaining:
            if not dep["metadata"].get("deletionTimestamp"):
                try:
                    self.api.delete(dep_kind, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                    propagation="Foreground")
                except ApiError:
                    pass
        if not self.api.dependents(obj["metadata"]["uid"]):
            new = copy.deepcopy(obj)
            new["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != "foregroundDeletion"]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]
            self.api.write(kind, obj, new, manager="kube-controller-manager", trusted=True)

    # --- namespaces ------------------------------------------------------------------------------

    def sync_namespace(self, _: str, name: str) -> None:
        ns = self.store.get("namespaces", "", name)
        if ns is None:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            self._ensure_namespace_defaults(name)
            return
        for bucket in list(self.store.buckets):
            if bucket == "namespaces":
                continue
            kind = kinds.kind_for_bucket(bucket)
            for obj in self.store.list(bucket, name):
                if obj["metadata"].get("deletionTimestamp"):
                    continue  # finalizers or a graceful pod stop hold it; the namespace waits
                try:
                    # Pods stop gracefully (Killing events, runs end) before the namespace can go.
                    self.api.delete(kind, name, obj["metadata"]["name"], propagation="Background",
                                    grace_seconds=1 if bucket == "pods" else None)
                except ApiError:
                    pass
        if not any(self.store.list(b, name) for b in list(self.store.buckets) if b != "namespaces"):
            ns = self.store.get("namespaces", "", name) or ns
            if ns["spec"].get("finalizers"):
                new = copy.deepcopy(ns)
                new["spec"]["finalizers"] = []
                self.store.put("namespaces", new)
            self.store.delete("namespaces", "", name)

    def _ensure_namespace_defaults(self, name: str) -> None:
        if self.store.get("serviceaccounts", name, "default") is None:
            self.api.create(SERVICE_ACCOUNT, name, {"metadata": {"name": "default"}}, manager="kube-controller-manager")
        if self.store.get("configmaps", name, "kube-root-ca.crt") is None:
            self.api.create(CONFIGMAP, name, {"metadata": {"name": "kube-root-ca.crt", "annotations": {
                "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when "
                                             "using internal endpoints such as the internal service IP or "
                                             "kubernetes.default.svc. No other usage is guaranteed across "
                                             "distributions of Kubernetes clusters."}},
                                              "data": {"ca.crt": ROOT_CA}}, manager="kube-controller-manager")

    # --- services and ingresses ------------------------------------------------------------------

    def sync_service(self, namespace: str, name: str) -> None:
        svc = self.store.get("services", namespace, name)
        if svc is None or svc["spec"].get("type") != "LoadBalancer":
            return
        want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}
        if svc.get("status") != want:
            new = copy.deepcopy(svc)
            new["status"] = want
            self.api.write(SERVICE, svc, new, manager="service-controller", subresource="status", trusted=True)

    def sync_ingress(self, namespace: str, name: str) -> None:
        ing = self.store.get("ingresses.networking.k8s.io", namespace, name)
        if ing is None:
            return
        want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        if ing.get("status") != want:
            new = copy.deepcopy(ing)
            new["status"] = want
            self.api.write(INGRESS, ing, new, manager="ingress-controller", subresource="status", trusted=True)

    # --- resource quota --------------------------------------------------------------------------

    def sync_quota(self, namespace: str, _: str) -> None:
        from .quota import usage

        for quota in self.store.list("resourcequotas", namespace):
            hard = (quota.get("spec") or {}).get("hard") or {}
            used = usage(self.store, namespace, hard, format_like=hard)
            want = {"hard": dict(hard), "used": used} if hard else {}
            if (quota.get("status") or {}) != want:
                new = copy.deepcopy(quota)
                new["status"] = want
                self.api.write(QUOTA, quota, new, manager="kube-controller-manager", subresource="status",
                               trusted=True)

    # --- replica sets ----------------------------------------------------------------------------

    def _owned_pods(self, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        return [p for p in self.store.list("pods", owner["metadata"]["namespace"]) if _controller_uid(p) == uid]

    def sync_replicaset(self, namespace: str, name: str) -> None:
        rs = self.store.get("replicasets.apps", namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = self._owned_pods(rs)
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        want = rs["spec"].get("replicas", 1)
        if len(active) < want:
            for _ in range(want - len(active)):
                if not self._create_pod_for(rs):
                    break
        elif len(active) > want:
            # Not-ready, not-running and younger pods go first, as the real controller ranks them.
            ranked = sorted(active, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            ranked = sorted(ranked, key=lambda p: (_pod_ready(p), (p.get("status") or {}).get("phase") == "Running"))
            for pod in ranked[:len(active) - want]:
                try:
                    self.api.delete(POD, namespace, pod["metadata"]["name"])
                    self.recorder.event(REPLICASET, rs, "Normal", "SuccessfulDelete",
                                        f"Deleted pod: {pod['metadata']['name']}", component="replicaset-controller")
                except ApiError:
                    pass
        pods = [p for p in self._owned_pods(rs) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if _pod_ready(p)]
        labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        status = _strip_zero({
            "replicas": len(live),
            "fullyLabeledReplicas": sum(1 for p in live if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": len(ready), "availableReplicas": len(ready),
            "terminatingReplicas": None,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }, keep=("replicas",))
        conds = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        failure = (rs.get("status") or {}).get("conditions") or []
        if len(active) < want and any(c.get("type") == "ReplicaFailure" for c in failure):
            conds = failure
        if conds:
            status["conditions"] = conds
        if rs.get("status") != status:
            new = copy.deepcopy(rs)
            new["status"] = status
            self.api.write(REPLICASET, rs, new, manager="kube-controller-manager", subresource="status", trusted=True)

    def _create_pod_for(self, owner: Obj, kind: Kind = REPLICASET, extra_labels: dict | None = None) -> bool:
        template = copy.deepcopy(owner["spec"]["template"])
        meta = template.get("metadata") or {}
        meta.pop("creationTimestamp", None)
        meta["generateName"] = owner["metadata"]["name"] + "-"
        meta["namespace"] = owner["metadata"]["namespace"]
        meta["ownerReferences"] = [_owner_ref(kind, owner)]
        if extra_labels:
            meta.setdefault("labels", {}).update(extra_labels)
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}
        component = "replicaset-controller" if kind is REPLICASET else "job-controller"
        try:
            pod = self.api.create(POD, owner["metadata"]["namespace"], body, manager="kube-controller-manager")
        except ApiError as exc:
            self.recorder.event(kind, owner, "Warning", "FailedCreate", f"Error creating: {exc.message}",
                                component=component)
            if kind is REPLICASET:
                self._replica_failure(owner, exc.message)
            return False
        self.recorder.event(kind, owner, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                            component=component)
        return True

    def _replica_failure(self, rs: Obj, message: str) -> None:
        rs = self.store.get("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"]) or rs
        status = copy.deepcopy(rs.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        conds.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": kinds.now_iso(),
                      "reason": "FailedCreate", "message": message})
        status["conditions"] = conds
        new = copy.deepcopy(rs)
        new["status"] = status
        self.api.write(REPLICASET, rs, new, manager="kube-controller-manager", subresource="status", trusted=True)

    # --- deployments -----------------------------------------------------------------------------

    def sync_deployment(self, namespace: str, name: str) -> None:
        d = self.store.get("deployments.apps", namespace, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        rses = [rs for rs in self.store.list("replicasets.apps", namespace) if _controller_uid(rs) == uid]
        template = copy.deepcopy(d["spec"]["template"])
        tmpl_hash = pod_template_hash(template, (d.get("status") or {}).get("collisionCount", 0))
        new_rs = next((rs for rs in rses if _same_template(rs["spec"]["template"], template)), None)
        old_rses = [rs for rs in rses if rs is not new_rs]
        replicas = d["spec"].get("replicas", 1)
        paused = d["spec"].get("paused", False)
        created = False
        if new_rs is None and not paused:
            new_rs = self._create_rs(d, template, tmpl_hash, old_rses)
            created = new_rs is not None
            if new_rs is None:
                return
        if new_rs is not None and not paused:
            self._sync_revision(d, new_rs, old_rses)
            self._rollout(d, new_rs, old_rses, replicas)
        self._cleanup(d, [rs for rs in old_rses if self.store.get("replicasets.apps", namespace,
                                                                   rs["metadata"]["name"])])
        self._deployment_status(d, new_rs, old_rses, created)

    def _create_rs(self, d: Obj, template: Obj, tmpl_hash: str, old_rses: list[Obj]) -> Obj | None:
        ns = d["metadata"]["namespace"]
        revision = max([int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                        for rs in old_rses] + [0]) + 1
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = tmpl_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = tmpl_hash
        replicas = d["spec"].get("replicas", 1)
        max_surge = _resolve_percent(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 0),
                                     replicas, True)
        total = sum(rs["spec"].get("replicas", 0) for rs in old_rses)
        if d["spec"]["strategy"].get("type") == "Recreate":
            start = 0 if any(self._owned_pods(rs) for rs in old_rses) or total else replicas
        else:
            start = max(0, min(replicas, replicas + max_surge - total))
        labels = dict((d["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels["pod-template-hash"] = tmpl_hash
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                       if not k.startswith("deployment.kubernetes.io/") and k != "kubectl.kubernetes.io/last-applied-configuration"}
        annotations.update({"deployment.kubernetes.io/desired-replicas": str(replicas),
                            "deployment.kubernetes.io/max-replicas": str(replicas + max_surge),
                            "deployment.kubernetes.io/revision": str(revision)})
        body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{d['metadata']['name']}-{tmpl_hash}", "namespace": ns, "labels": labels,
                             "annotations": annotations, "ownerReferences": [_owner_ref(DEPLOYMENT, d)]},
                "spec": {"replicas": start, "selector": selector, "template": template,
                         **({"minReadySeconds": d["spec"]["minReadySeconds"]} if d["spec"].get("minReadySeconds")
                            else {})}}
        try:
            rs = self.api.create(REPLICASET, ns, body, manager="kube-controller-manager")
        except ApiError as exc:
            self.recorder.event(DEPLOYMENT, d, "Warning", "FailedCreate", f"Failed to create new replica set "
                                f"\"{body['metadata']['name']}\": {exc.message}", component="deployment-controller")
            return None
        self.recorder.event(DEPLOYMENT, d, "Normal", "ScalingReplicaSet",
                            f"Scaled up replica set {rs['metadata']['name']} to {start}",
                            component="deployment-controller")
        return rs

    def _sync_revision(self, d: Obj, new_rs: Obj, old_rses: list[Obj]) -> None:
        ann = new_rs["metadata"].get("annotations") or {}
        max_old = max([int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                       for rs in old_rses] + [0])
        revision = int(ann.get("deployment.kubernetes.io/revision", 0))
        if revision <= max_old:
            revision = max_old + 1
            rs = copy.deepcopy(new_rs)
            rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
            self.api.write(REPLICASET, new_rs, rs, manager="kube-controller-manager", trusted=True)
        current = self.store.get("deployments.apps", d["metadata"]["namespace"], d["metadata"]["name"])
        if current is not None and (current["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision") != str(revision):
            new = copy.deepcopy(current)
            new["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
            # The real controller writes this annotation through UpdateStatus, so generation stays.
            self.api.write(DEPLOYMENT, current, new, manager="kube-controller-manager", subresource="status",
                           trusted=True)

    def _scale_rs(self, d: Obj, rs: Obj, to: int) -> None:
        current = self.store.get("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"])
        if current is None:
            return
        old = current["spec"].get("replicas", 1)
        if old == to:
            return
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = to
        ann = new["metadata"].setdefault("annotations", {})
        replicas = d["spec"].get("replicas", 1)
        max_surge = _resolve_percent(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 0),
                                     replicas, True)
        ann["deployment.kubernetes.io/desired-replicas"] = str(replicas)
        ann["deployment.kubernetes.io/max-replicas"] = str(replicas + max_surge)
        self.api.write(REPLICASET, current, new, manager="kube-controller-manager", trusted=True)
        direction = "up" if to > old else "down"
        self.recorder.event(DEPLOYMENT, d, "Normal", "ScalingReplicaSet",
                            f"Scaled {direction} replica set {rs['metadata']['name']} to {to} from {old}",
                            component="deployment-controller")

    def _rollout(self, d: Obj, new_rs: Obj, old_rses: list[Obj], replicas: int) -> None:
        strategy = d["spec"].get("strategy") or {}
        old_active = [rs for rs in old_rses if rs["spec"].get("replicas", 0) > 0]
        if strategy.get("type") == "Recreate":
            for rs in old_active:
                self._scale_rs(d, rs, 0)
            if any(self._owned_pods(rs) for rs in old_rses):
                return
            self._scale_rs(d, new_rs, replicas)
            return
        if not old_active:
            self._scale_rs(d, new_rs, replicas)
            return
        ru = strategy.get("rollingUpdate") or {}
        max_surge = _resolve_percent(ru.get("maxSurge", "25%"), replicas, True)
        max_unavailable = _resolve_percent(ru.get("maxUnavailable", "25%"), replicas, False)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        new_count = new_rs["spec"].get("replicas", 0)
        total = new_count + sum(rs["spec"].get("replicas", 0) for rs in old_active)
        # Scale up the new replica set within the surge budget.
        if new_count < replicas:
            room = replicas + max_surge - total
            if room > 0:
                target = min(replicas, new_count + room)
                self._scale_rs(d, new_rs, target)
                new_count = target
        # Scale down old replica sets as far as availability allows; unavailable pods go first.
        new_ready = _rs_available(self.store.get("replicasets.apps", new_rs["metadata"]["namespace"],
                                                 new_rs["metadata"]["name"]) or new_rs)
        old_ready = sum(_rs_available(rs) for rs in old_active)
        min_available = replicas - max_unavailable
        budget = new_ready + old_ready - min_available
        for rs in sorted(old_active, key=lambda r: r["metadata"]["creationTimestamp"]):
            count = rs["spec"].get("replicas", 0)
            unhealthy = count - _rs_available(rs)
            cut = min(count, unhealthy + max(budget, 0))
            if cut <= 0:
                continue
            budget -= max(cut - unhealthy, 0)
            self._scale_rs(d, rs, count - cut)

    def _cleanup(self, d: Obj, old_rses: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old_rses if rs["spec"].get("replicas", 0) == 0 and not self._owned_pods(rs)]
        idle.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", 0)))
        for rs in idle[:max(0, len(idle) - limit)]:
            try:
                self.api.delete(REPLICASET, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ApiError:
                pass

    def _deployment_status(self, d: Obj, new_rs: Obj | None, old_rses: list[Obj], created: bool) -> None:
        ns = d["metadata"]["namespace"]
        d = self.store.get("deployments.apps", ns, d["metadata"]["name"]) or d
        fresh = [self.store.get("replicasets.apps", ns, rs["metadata"]["name"]) for rs in old_rses]
        old_rses = [rs for rs in fresh if rs is not None]
        if new_rs is not None:
            new_rs = self.store.get("replicasets.apps", ns, new_rs["metadata"]["name"]) or new_rs
        all_rs = old_rses + ([new_rs] if new_rs else [])
        replicas = d["spec"].get("replicas", 1)
        total = sum((rs.get("status") or {}).get("replicas", 0) for rs in all_rs)
        updated = (new_rs.get("status") or {}).get("replicas", 0) if new_rs else 0
        ready = sum((rs.get("status") or {}).get("readyReplicas", 0) for rs in all_rs)
        available = sum(_rs_available(rs) for rs in all_rs)
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = _resolve_percent(ru.get("maxUnavailable", "25%"), replicas, False) \
            if d["spec"]["strategy"].get("type") != "Recreate" else 0
        old_status = d.get("status") or {}
        conds = old_status.get("conditions") or []
        if available >= replicas - max_unavailable:
            available_cond = _condition("Available", "True", "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.", conds)
        else:
            available_cond = _condition("Available", "False", "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.", conds)
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = new_rs is not None and updated == replicas and available == replicas and total == replicas \
            and (new_rs.get("status") or {}).get("availableReplicas", 0) == replicas
        previous = next((c for c in conds if c.get("type") == "Progressing"), None)
        if d["spec"].get("paused"):
            progressing = _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", conds)
        elif complete:
            progressing = _condition("Progressing", "True", "NewReplicaSetAvailable",
                                     f'ReplicaSet "{rs_name}" has successfully progressed.', conds)
        elif previous and previous.get("reason") == "ProgressDeadlineExceeded" and \
                f'"{rs_name}"' in previous.get("message", ""):
            progressing = previous
        elif created or previous is None:
            progressing = _condition("Progressing", "True", "NewReplicaSetCreated" if created else "FoundNewReplicaSet",
                                     f'Created new replica set "{rs_name}"' if created else
                                     f'Found new replica set "{rs_name}"', conds)
        else:
            progressing = _condition("Progressing", "True", "ReplicaSetUpdated",
                                     f'ReplicaSet "{rs_name}" is progressing.', conds)
            changed = (total, updated, ready, available) != (old_status.get("replicas", 0),
                                                             old_status.get("updatedReplicas", 0),
                                                             old_status.get("readyReplicas", 0),
                                                             old_status.get("availableReplicas", 0))
            # Progress (any count moving) restarts the progress deadline clock.
            if changed:
                progressing["lastUpdateTime"] = kinds.now_iso()
            deadline = d["spec"].get("progressDeadlineSeconds", 600)
            since = kinds.parse_iso(progressing["lastUpdateTime"])
            if deadline is not None and time.time() - since > deadline:
                progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded",
                                         f'ReplicaSet "{rs_name}" has timed out progressing.', conds)
        status = _strip_zero({
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "unavailableReplicas": max(replicas - available, 0) if total or replicas else 0,
        })
        status["conditions"] = [available_cond, progressing]
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        if status != old_status:
            new = copy.deepcopy(d)
            new["status"] = status
            self.api.write(DEPLOYMENT, d, new, manager="kube-controller-manager", subresource="status", trusted=True)

    # --- jobs ------------------------------------------------------------------------------------

    def sync_job(self, namespace: str, name: str) -> None:
        job = self.store.get("jobs.batch", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        status = copy.deepcopy(job.get("status") or {})
        if _job_finished(job):
            return
        spec = job["spec"]
        pods = self._owned_pods(job)
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        restarts = sum(cs.get("restartCount", 0) for p in active
                       for cs in (p.get("status") or {}).get("containerStatuses") or [])
        failed = len(failed_pods)
        status.setdefault("startTime", kinds.now_iso())
        now = kinds.now_iso()
        conds = status.get("conditions") or []
        completions = spec.get("completions", 1)
        finished_reason = None
        if succeeded >= completions:
            for p in active:
                self.api.delete(POD, namespace, p["metadata"]["name"])
            conds = conds + [
                {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]
            status["completionTime"] = now
            active = []
            self.recorder.event(JOB, job, "Normal", "Completed", "Job completed", component="job-controller")
            finished_reason = "Complete"
        elif failed + restarts > spec.get("backoffLimit", 6):
            finished_reason = "BackoffLimitExceeded"
            message = "Job has reached the specified backoff limit"
        elif spec.get("activeDeadlineSeconds") is not None and \
                time.time() - kinds.parse_iso(status["startTime"]) >= spec["activeDeadlineSeconds"]:
            finished_reason = "DeadlineExceeded"
            message = "Job was active longer than specified deadline"
        if finished_reason in ("BackoffLimitExceeded", "DeadlineExceeded"):
            for p in active:
                try:
                    self.api.delete(POD, namespace, p["metadata"]["name"])
                    self.recorder.event(JOB, job, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                                        component="job-controller")
                except ApiError:
                    pass
            active = []
            conds = conds + [
                {"type": "FailureTarget", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": finished_reason, "message": message},
                {"type": "Failed", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": finished_reason, "message": message}]
            self.recorder.event(JOB, job, "Warning", finished_reason, message, component="job-controller")
        elif finished_reason is None and not spec.get("suspend"):
            want = min(spec.get("parallelism", 1), completions - succeeded)
            if len(active) < want:
                retry_at = self.job_retry_at.get(job["metadata"]["uid"], 0)
                if time.time() >= retry_at:
                    uid = job["metadata"]["uid"]
                    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                              "controller-uid": uid, "job-name": name}
                    for _ in range(want - len(active)):
                        if self._create_pod_for(job, JOB, labels):
                            active.append({})
                    if failed:
                        # Retries back off like the real controller's 10 s, 20 s, … (scaled).
                        delay = self.kubelet.backoff_base * 2 ** min(failed, 6)
                        self.job_retry_at[uid] = time.time() + delay
                else:
                    asyncio.get_running_loop().call_later(retry_at - time.time() + 0.01, self.enqueue, "job",
                                                          namespace, name)
        ready = sum(1 for p in active if p and _pod_ready(p))
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed, "ready": ready,
                       "terminating": 0, "uncountedTerminatedPods": {}, "conditions": conds})
        status = _strip_zero(status, keep=("ready", "terminating", "uncountedTerminatedPods"))
        if finished_reason and finished_reason != "Complete":
            status.pop("completionTime", None)
        if status != (job.get("status") or {}):
            new = copy.deepcopy(job)
            new["status"] = status
            self.api.write(JOB, job, new, manager="kube-controller-manager", subresource="status", trusted=True)


def _job_finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _rs_available(rs: Obj) -> int:
    return (rs.get("status") or {}).get("availableReplicas", 0)


def _same_template(rs_template: Obj, template: Obj) -> bool:
    a = copy.deepcopy(rs_template)
    labels = (a.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    if "labels" in (a.get("metadata") or {}) and not labels and not (template.get("metadata") or {}).get("labels"):
        a["metadata"].pop("labels")
    return a == template
