"""The node: a kubelet that runs one task per pod, its containers' states and restarts."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from ..jsontree import clone
from .. import kinds
from ..api import Api, ApiError
from ..kinds import Obj
from ..podlogs import job_outcome
from ..runtime_types import ContainerRun
from ..store import Change
from ..usage import LEAK_DEFAULT_MIB_PER_SECOND, seconds_until_oom
from .events import Recorder
from .objects import HOST_IP, NODE, NODE_KIND, POD, condition

log = logging.getLogger("devcluster.controllers")


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
            condition("PodReadyToStartContainers", sandbox, "", "", conds, update_time=False, probe=True),
            condition("Initialized", "True", "PodCompleted" if all_done else "", "", conds, update_time=False,
                       probe=True),
            condition("Ready", status, ready_reason, ready_msg, conds, update_time=False, probe=True),
            condition("ContainersReady", status, ready_reason, ready_msg, conds, update_time=False, probe=True),
            condition("PodScheduled", "True", "", "", conds, update_time=False, probe=True),
        ]
        new_status: Obj = {"phase": phase, "conditions": conditions, "hostIP": HOST_IP,
                           "hostIPs": [{"ip": HOST_IP}]}
        if rt.pod_ip:
            new_status["podIP"] = rt.pod_ip
            new_status["podIPs"] = [{"ip": rt.pod_ip}]
        new_status["startTime"] = rt.start_time
        new_status["containerStatuses"] = [s.as_status() for s in states]
        new_status["qosClass"] = kinds.qos_class(spec)
        new = clone(pod)
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
