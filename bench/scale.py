"""Start All of many services against the same cluster applied directly, and a Stop clicked
during a big YAML apply.

    python bench/scale.py --services 300 --replicas 3 [--environments 20] [--use-configured-db]
    python bench/scale.py --services 20          # a smoke run, under a minute

Three stages, each on what `make run` runs (a devcluster started with the same flags, a Celery
worker with beat and concurrency 2, the watcher, and ale's ASGI server, daphne):

* direct: a fresh devcluster; the Deployments ale renders for the N services (× --replicas,
  probes, labels and resources as ale writes them), one namespace per environment, created with
  the official `kubernetes` client from 8 threads, as a script would; the time until every one
  reports readyReplicas == replicas. Nothing else: no Service, Ingress, quota or watcher.
* ale: a second fresh devcluster and the whole stack; the same N stopped image services (rows
  written directly, as a clone leaves them) spread over --environments environments. A member's
  websocket is open on each environment page (Information tab); Start All is posted over HTTP
  as the browser posts it (htmx, CSRF token from the page). Measured: the answer's time, the
  time until every row is `running` (the watcher's `status_changed_at`), until every card
  received on the sockets says Running, and what the sockets received meanwhile (messages,
  bytes, card fragments, event lists). Also the CPU seconds each process spent meanwhile and how
  long it waited for a CPU (`ale_<process>_cpu_s`, `..._cpu_wait_s`, like `direct_devcluster_
  cpu_s`; on a small machine they share its cores), and with --split, when a watch of the
  bench's own saw every Deployment ready (`ale_cluster_ready_s`: the cluster's and the worker's
  share; the rest is the watcher's).
* stop: on the same stack, a YAML file of N new running services is previewed and confirmed
  over HTTP (split over the environments); 5 s after the last confirm a Stop of the last
  service is posted; the time until a card on the socket says Stopped, and until its row does;
  with --split, also until a watch of the bench's own saw its last pod go
  (`stop_during_bulk_cluster_ms`: the cluster's and the worker's share).

With --cluster-cpus, each devcluster runs on the CPUs given and everything else the bench starts
(and the bench itself) on the others: on a small machine the ale stage's devcluster otherwise
waits for CPUs that ale's processes hold, which a cluster's API server on machines of its own
never does (`ale_devcluster_cpu_wait_s` says how long). The line then says `"cluster_cpus"`.

Prints one JSON line per run; with --runs N, N lines and then one of their medians. Numbers
only: it never fails on time, but a stage that does not finish within --stage-timeout seconds
stops the run with a message saying which. Every process it starts is stopped at the end, also
on Ctrl-C or an error (unless --keep).

It runs on a throwaway SQLite file unless --use-configured-db is given (then DATABASE_URL's
database is migrated, vacuumed and used, and the rows it creates are deleted afterwards). Redis is
REDIS_URL's; the bench uses a Celery queue and a channels prefix of its own there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ale_site.localstack import Stack, StopSignals, free_port, start_devcluster  # noqa: E402

IMAGE = "nginx:1.27"
PORT = 8080
THREADS = 8
POLL = 0.25
STOP_DELAY = 5.0
# Dummy settings for the throwaway rows (nothing secret is stored by the bench).
SECRET_KEY = "bench-only-not-a-secret"
FERNET_KEY = "YmVuY2gtb25seS1ub3QtYS1zZWNyZXQtMDAwMDAwMDA="

# The root tag of a card (`<article ... id="service-<public id>" ... data-status="running">`;
# a public id is 12 lowercase letters and digits, unlike `service-grid`); a message may hold
# one card or many.
CARD_TAG = re.compile(r"<[a-z]+\b[^>]*\bid=\"service-([a-z0-9]{12})\"[^>]*>")
CARD_STATUS = re.compile(r"\bdata-status=\"([a-z]+)\"")
CSRF = re.compile(r"\"X-CSRFToken\":\s*\"([^\"]+)\"")


class StageTimeout(RuntimeError):
    pass


def wait(check, timeout: float, what: str, interval: float = POLL, progress=None) -> None:
    """Until `check()`; past `timeout`, a StageTimeout that says what was awaited and, with
    `progress`, how far it got."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            reached = f" ({progress()})" if progress is not None else ""
            raise StageTimeout(f"timed out after {timeout:.0f} s waiting for {what}{reached}")
        time.sleep(interval)


def spread(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as it goes (the first ones get one more)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


# --- the devcluster, as `make run` starts it ----------------------------------------------------


# --cluster-cpus: the CPUs every devcluster runs on (None: any, like everything else).
CLUSTER_CPUS: set[int] | None = None


def devcluster(stack: Stack, directory: Path) -> Path:
    """A fresh devcluster with `make run`'s flags (TLS, persisted state, ingress, default pod
    readiness); returns its kubeconfig."""
    directory.mkdir(parents=True)
    kubeconfig = start_devcluster(
        stack, directory / "kubeconfig", data_dir=directory / "state", log=directory / "devcluster.log", tls=True
    )
    if CLUSTER_CPUS is not None:
        pin(stack.processes[-1][1].pid, CLUSTER_CPUS)
    return kubeconfig


def pin(pid: int, cpus: set[int]) -> None:
    """Move every thread of `pid` to `cpus`; threads it starts later inherit it."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


def split_cpus(spec: str) -> tuple[set[int], set[int]]:
    """--cluster-cpus "1" or "2,3": (the cluster's CPUs, the others this process may use);
    ValueError when they leave nothing to either side."""
    usable = os.sched_getaffinity(0)
    try:
        cluster = {int(part) for part in spec.split(",") if part.strip()}
    except ValueError:
        raise ValueError(f"--cluster-cpus takes CPU numbers separated by commas, not {spec!r}") from None
    if not cluster or not cluster <= usable:
        raise ValueError(f"--cluster-cpus {spec}: this process may use CPUs {sorted(usable)} only")
    if not usable - cluster:
        raise ValueError(f"--cluster-cpus {spec}: no CPU would be left for ale and the bench")
    return cluster, usable - cluster


# --- direct: the same Deployments through the official client -----------------------------------


def direct_deployments(environments: list) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, manifest) of the Deployment ale renders for each service of `environments`
    once started, each moved to a namespace of its own per environment: the direct stage creates
    the very Deployments ale applies (probes, labels, resources and all), without ale."""
    from services.manifests import render_deployment
    from services.models import Service

    work = []
    for index, environment in enumerate(environments):
        rows = Service.objects.filter(environment=environment).select_related(
            "environment__cluster", "environment__project__space"
        )
        for service in rows.order_by("name"):
            service.desired_state = Service.DesiredState.RUNNING
            manifest = render_deployment(service)
            manifest["metadata"]["namespace"] = f"bench-direct-{index}"
            work.append((f"bench-direct-{index}", manifest))
    return work


def kube_api(kubeconfig: str):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = THREADS
    return client.ApiClient(configuration)


def measure_direct(
    stack: Stack, scratch: Path, work: list[tuple[str, dict[str, Any]]], replicas: int, timeout: float
) -> tuple[float, dict[str, float]]:
    from kubernetes import client

    kubeconfig = devcluster(stack, scratch / "direct")
    api = kube_api(str(kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    namespaces = sorted({namespace for namespace, _ in work})
    names = {manifest["metadata"]["name"] for _, manifest in work}
    ready = DeploymentsReady(api, names, len(work), replicas)
    clock = CpuClock({"devcluster": stack.processes[-1][1].pid})
    clock.start()
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda name: core.create_namespace({"metadata": {"name": name}}), namespaces))
        list(pool.map(lambda job: apps.create_namespaced_deployment(*job), work))
    created = time.monotonic() - started
    ready.follow(time.monotonic() + timeout, timeout)
    seconds = time.monotonic() - started
    cpu = {"direct_deployments_created_s": round(created, 2), **clock.stop("direct")}
    api.close()
    # Its own cluster: stopped before the next stage so that it takes no CPU from it.
    _, proc = stack.processes.pop()
    stop_one(proc)
    return seconds, cpu


class DeploymentsReady:
    """Follows the Deployments named `names` with a watch (relisting when it expires) until
    `expected` of them (names repeat across namespaces) report readyReplicas == replicas: what a script waiting on its rollout does, and for ale's
    cluster, the part of Start All that is the cluster's (and the worker's applies), apart from
    the watcher carrying it to the rows. Events are read as JSON, not as the client's models:
    the bench takes as little CPU as it can from the processes it measures."""

    def __init__(self, api, names: set[str], expected: int, replicas: int, label_selector: str | None = None) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api)
        self.names, self.expected, self.replicas, self.label_selector = names, expected, replicas, label_selector
        self.ready: dict[tuple[str, str], bool] = {}
        self.done_at: float | None = None
        # When every one of them had been seen at all: its share of the time that is their
        # creation (the client's or the worker's applies, as the cluster took them).
        self.created_at: float | None = None
        self.closing = False

    def count(self) -> int:
        return sum(self.ready.values())

    def _note(self, item: dict[str, Any]) -> None:
        meta = item["metadata"]
        if meta["name"] in self.names:
            ready = ((item.get("status") or {}).get("readyReplicas") or 0) == self.replicas
            self.ready[(meta["namespace"], meta["name"])] = ready
            if self.created_at is None and len(self.ready) == self.expected:
                self.created_at = time.time()
        if self.done_at is None and self.count() == self.expected:
            self.done_at = time.time()

    def follow(self, deadline: float, timeout: float) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        selector = {"label_selector": self.label_selector} if self.label_selector else {}
        while self.done_at is None and not self.closing:
            if time.monotonic() > deadline:
                raise StageTimeout(
                    f"timed out after {timeout:.0f} s waiting for {self.expected} Deployments ready ({self.count()} ready)"
                )
            listed = json.loads(self.apps.list_deployment_for_all_namespaces(_preload_content=False, **selector).data)
            for item in listed["items"]:
                self._note(item)
            try:
                for event in watch.Watch().stream(
                    self.apps.list_deployment_for_all_namespaces, deserialize=False, timeout_seconds=30,
                    resource_version=listed["metadata"]["resourceVersion"], **selector,
                ):  # fmt: skip
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._note(event["object"])
                    if self.done_at is not None or self.closing or time.monotonic() > deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise

    def in_background(self, timeout: float) -> DeploymentsReady:
        def run() -> None:
            try:
                self.follow(time.monotonic() + timeout, timeout)
            except StageTimeout:
                pass

        threading.Thread(target=run, daemon=True).start()
        return self


def named_cpu_seconds(names: tuple[str, ...]) -> float:
    """CPU seconds of the live processes whose command name is one of `names` (PostgreSQL's
    backends, Redis), and of this process itself under "bench"."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            head, tail = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        comm = head.split("(", 1)[1]
        if comm in names or ("bench" in names and int(entry) == os.getpid()):
            fields = tail.split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def cpu_and_wait_seconds(pgid: int) -> tuple[float, float]:
    """CPU seconds the live processes of a process group (a child of the stack and what it
    forked: Celery's pool) have run, and seconds their threads waited for a CPU while ready to
    run (the scheduler's run-queue wait: what the other processes on the machine cost them),
    read from /proc."""
    ran = waited = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # After the name: state is field 3, so the process group is the third field after it.
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for task in os.listdir(f"/proc/{entry}/task"):
                # Nanoseconds on a CPU, nanoseconds waiting on a run queue, time slices.
                run, wait, _ = Path(f"/proc/{entry}/task/{task}/schedstat").read_text().split()
                ran, waited = ran + int(run), waited + int(wait)
        except (OSError, ValueError):
            continue
    return ran / 1e9, waited / 1e9


def machine_seconds() -> tuple[float, float, float]:
    """Seconds the machine's CPUs were busy (all processes, this one and others included), were
    taken by the hypervisor for other machines (steal), and ran niced processes, from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq) / ticks, steal / ticks, nice / ticks


# The machine's shared services and the bench itself, whose CPU the measured stack competes with.
SHARED_SERVICES = {"postgres": ("postgres",), "redis": ("redis-server",), "bench": ("bench",)}


class CpuClock:
    """CPU seconds each named child of the stack spent between `start()` and `stop()`, how long
    it waited for a CPU meanwhile, and what the whole machine spent."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def start(self) -> None:
        self.started = {name: cpu_and_wait_seconds(pid) for name, pid in self.pids.items()}
        self.machine = machine_seconds()
        self.services = {name: named_cpu_seconds(comms) for name, comms in SHARED_SERVICES.items()}

    def stop(self, prefix: str) -> dict[str, float]:
        busy, steal, nice = (now - then for now, then in zip(machine_seconds(), self.machine))
        out = {
            f"{prefix}_machine_busy_cpu_s": round(busy, 2),
            f"{prefix}_machine_niced_cpu_s": round(nice, 2),
            f"{prefix}_machine_steal_cpu_s": round(steal, 2),
            **{
                f"{prefix}_{name}_cpu_s": round(named_cpu_seconds(comms) - self.services[name], 2)
                for name, comms in SHARED_SERVICES.items()
            },
        }
        for name, pid in self.pids.items():
            ran, waited = cpu_and_wait_seconds(pid)
            out[f"{prefix}_{name}_cpu_s"] = round(ran - self.started[name][0], 2)
            out[f"{prefix}_{name}_cpu_wait_s"] = round(waited - self.started[name][1], 2)
        return out


def stop_one(proc: subprocess.Popen) -> None:
    """Stop one child's process group now (the stack stops the others at the end)."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --- ale: the stack -----------------------------------------------------------------------------


@dataclass
class Socket:
    """One environment page's websocket, read on a thread of its own; every message is kept
    with the time it arrived."""

    url: str
    headers: list[str]
    origin: str
    messages: list[tuple[float, str]] = field(default_factory=list)
    error: BaseException | None = None

    def start(self) -> None:
        import websocket

        # The text frames are still decoded as UTF-8, in C: the client's own check runs in Python
        # at about half a second per megabyte, CPU the bench would take from the stack it measures.
        self.ws = websocket.create_connection(
            self.url, header=self.headers, origin=self.origin, timeout=10, skip_utf8_validation=True
        )
        self.ws.send(json.dumps({"tab": "information"}))
        self.closing = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import websocket

        self.ws.settimeout(1)
        while not self.closing:
            try:
                data = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception as exc:  # noqa: BLE001 - reported by the stage that reads the socket
                if not self.closing:
                    self.error = exc
                return
            if isinstance(data, bytes):
                data = data.decode()
            self.messages.append((time.time(), data))

    def close(self) -> None:
        self.closing = True
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a socket the server may have dropped
            pass

    def since(self, moment: float) -> list[tuple[float, str]]:
        if self.error is not None:
            raise RuntimeError(f"the websocket {self.url} failed: {self.error!r}")
        return [(at, text) for at, text in list(self.messages) if at >= moment]


def cards_in(text: str) -> list[tuple[str, str | None]]:
    """(service public id, status or None) of each card fragment in one message."""
    return [(match.group(1), (CARD_STATUS.search(match.group(0)) or [None, None])[1]) for match in CARD_TAG.finditer(text)]


@dataclass
class Ale:
    """The running stack and the bench's member on it."""

    base: str
    cookie: dict[str, str]
    csrf: str
    user: Any
    project: Any
    sockets: list[Socket] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return {
            "Cookie": "; ".join(f"{key}={value}" for key, value in self.cookie.items()),
            "HX-Request": "true",
            "X-CSRFToken": self.csrf,
            "Origin": self.base,
            "Referer": self.base + "/",
        }

    def post(self, path: str, **kwargs) -> tuple[float, Any]:
        import requests

        started = time.perf_counter()
        response = requests.post(self.base + path, headers=self.headers(), allow_redirects=False, timeout=600, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:2000]}")
        return elapsed, response

    def open_socket(self, environment) -> Socket:
        cookie = "; ".join(f"{key}={value}" for key, value in self.cookie.items())
        socket = Socket(
            url=self.base.replace("http://", "ws://") + f"/ws/environments/{environment.public_id}/",
            headers=[f"Cookie: {cookie}"],
            origin=self.base,
        )
        socket.start()
        self.sockets.append(socket)
        return socket


def child_environment(scratch: Path, kubeconfig: Path, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "ALE_VAR_DIR": str(scratch),
        "DEVCLUSTER_KUBECONFIG": str(kubeconfig),
        "DEBUG": "false",
        "SECRET_KEY": SECRET_KEY,
        "ALE_SECRET_KEYS": FERNET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_ROOT": str(scratch / "static"),
        # Its own queue and channel groups on the shared Redis: no other worker or page sees them.
        "CELERY_QUEUE": queue,
        "CHANNELS_PREFIX": f"ale-bench-scale-{os.getpid()}",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


def setup_django(env: dict[str, str]) -> None:
    os.environ.update({key: env[key] for key in (
        "DATABASE_URL", "ALE_VAR_DIR", "DEVCLUSTER_KUBECONFIG", "DEBUG", "SECRET_KEY", "ALE_SECRET_KEYS",
        "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "STATIC_ROOT", "CELERY_QUEUE", "CHANNELS_PREFIX",
    )})  # fmt: skip
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0, interactive=False)
    # Before the server starts: WhiteNoise serves what STATIC_ROOT holds when it starts, and the
    # page (where the CSRF token comes from) links its static files.
    call_command("collectstatic", verbosity=0, interactive=False)


def settle_database() -> None:
    """The configured database as each run should find it. Without autovacuum (or before it has
    caught up), the rows earlier runs deleted stay in the tables and their indexes, and each run
    writes and reads a little slower than the last: VACUUM takes them away first. Rows left
    behind by a --keep run are live ones; their services share the cluster and are watched too."""
    from django.db import connection

    from services.models import Service

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    left = Service.objects.count()
    if left:
        print(f"bench/scale.py: the database holds {left} services from before (a --keep run?): the watcher "
              "looks after them too, and the numbers move with them", file=sys.stderr)


def make_world(environments: int, stop_environments: int) -> tuple[Any, Any, list, list]:
    """A member, a project with `environments` for Start All and `stop_environments` for the
    stop stage (all created now: the watcher and the namespaces exist before the clock runs)."""
    from django.db import transaction

    from clusters.models import Cluster
    from environments.actions import create_environment
    from spaces.actions import create_project, ensure_default_space
    from spaces.models import LIMIT_FIELDS, ResourceAllocation

    from django.contrib.auth import get_user_model

    suffix = uuid.uuid4().hex[:8]
    user = get_user_model().objects.create_user(username=f"bench-scale-{suffix}", password="bench")
    space = ensure_default_space(user)
    # Far beyond any default profile: the bench measures the start, not a refusal by the quota.
    ResourceAllocation.objects.update_or_create(space=space, defaults={name: 10_000_000 for name in LIMIT_FIELDS})
    cluster = Cluster.objects.get(name="local")
    with transaction.atomic():
        project = create_project(acting_user=user, space=space, name=f"scale{suffix}", display_name="Scale", cluster=cluster)
    start = [project.environments.get()]
    for index in range(1, environments):
        with transaction.atomic():
            start.append(create_environment(acting_user=user, project=project, name=f"start{index}", cluster=cluster))
    stop = []
    for index in range(stop_environments):
        with transaction.atomic():
            stop.append(create_environment(acting_user=user, project=project, name=f"import{index}", cluster=cluster))
    return user, project, start, stop


def create_stopped_services(user, environments: list, services: int, replicas: int) -> None:
    """Stopped image services with their first revision, as a clone leaves them: rows written
    directly, nothing enqueued (Start All is what carries them to the cluster)."""
    from django.db import transaction
    from django.utils import timezone

    from services.models import Revision, Service

    now = timezone.now()
    with transaction.atomic():
        for environment, count in zip(environments, spread(services, len(environments))):
            rows = Service.objects.bulk_create(
                Service(
                    environment=environment,
                    name=f"svc-{index:04d}",
                    image=IMAGE,
                    port=PORT,
                    replicas=replicas,
                    desired_state=Service.DesiredState.STOPPED,
                    status=Service.Status.STOPPED,
                    status_changed_at=now,
                    deployed_by=user,
                    deployed_at=now,
                )
                for index in range(count)
            )
            Revision.objects.bulk_create(
                Revision(service=row, number=1, spec=row.snapshot(), created_by=user, cause="deploy") for row in rows
            )


def yaml_file(names: list[str], replicas: int) -> bytes:
    lines = ["apiVersion: ale/v1", "kind: Environment", "metadata:", "  name: bench", "spec:", "  services:"]
    for name in names:
        lines += [
            f"    - name: {name}",
            "      kind: web",
            f"      image: {IMAGE}",
            f"      port: {PORT}",
            f"      resources:\n        replicas: {replicas}",
            "      state: running",
        ]
    return ("\n".join(lines) + "\n").encode()


def start_stack(stack: Stack, scratch: Path, env: dict[str, str], timeout: float) -> str:
    """The worker (as `make run` starts it), the watcher and daphne; returns daphne's URL once
    all three are ready."""
    logs = scratch / "logs"
    logs.mkdir()
    concurrency = env.get("CELERY_CONCURRENCY", "2")
    # `make run`'s worker (ale_site/devserver.py): the default pool, beat, concurrency 2.
    worker = [sys.executable, "-m", "celery", "-A", "ale_site", "worker", "-B", "-l", "INFO",
              "--concurrency", concurrency, "-s", str(scratch / "celerybeat-schedule"),
              "-n", f"bench-scale-{os.getpid()}@%h"]  # fmt: skip
    watcher = [sys.executable, "manage.py", "watch_clusters"]
    port = free_port()
    web = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ale_site.asgi:application"]
    for name, args in (("worker", worker), ("watcher", watcher), ("web", web)):
        out = open(logs / f"{name}.log", "wb")
        stack.spawn(name, args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
    base = f"http://127.0.0.1:{port}"

    def alive_and(name: str, check) -> bool:
        proc = dict(stack.processes)[name]
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} exited ({proc.returncode}):\n{(logs / f'{name}.log').read_text()[-3000:]}")
        return check()

    def serving() -> bool:
        import requests

        try:
            requests.get(base + "/login/", timeout=2)
            return True
        except requests.RequestException:
            return False

    log = lambda name: (logs / f"{name}.log").read_text(errors="replace")  # noqa: E731
    wait(lambda: alive_and("worker", lambda: " ready." in log("worker")), timeout, "the Celery worker to be ready")
    wait(lambda: alive_and("watcher", lambda: "watching" in log("watcher")), timeout, "the watcher to watch the cluster")
    wait(lambda: alive_and("web", serving), timeout, "daphne to serve")
    return base


def queue_drained(queue: str) -> bool:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue) == 0


def log_in(base: str, user, environment) -> Ale:
    """The member's session (logged in as the test client logs in) and the CSRF token the
    environment page hands the browser."""
    import requests
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = {"sessionid": client.cookies["sessionid"].value}
    response = requests.get(
        f"{base}/environments/{environment.public_id}/", headers={"Cookie": f"sessionid={cookie['sessionid']}"}, timeout=60
    )
    if response.status_code != 200:
        raise RuntimeError(f"the environment page answered {response.status_code}: {response.text[:2000]}")
    match = CSRF.search(response.text)
    if match is None or "csrftoken" not in response.cookies:
        raise RuntimeError("the environment page carries no CSRF token")
    cookie["csrftoken"] = response.cookies["csrftoken"]
    return Ale(base=base, cookie=cookie, csrf=match.group(1), user=user, project=environment.project)


def socket_numbers(sockets: list[Socket], since: float, until: float) -> dict[str, int]:
    received = [text for socket in sockets for at, text in socket.since(since) if at <= until]
    return {
        "ws_messages": len(received),
        "ws_bytes": sum(len(text.encode()) for text in received),
        "ws_card_fragments": sum(len(CARD_TAG.findall(text)) for text in received),
        "ws_event_list_messages": sum(1 for text in received if 'id="event-list"' in text),
        "ws_event_list_bytes": sum(len(text.encode()) for text in received if 'id="event-list"' in text),
    }


def last_card_statuses(sockets: list[Socket], since: float) -> tuple[dict[str, str], dict[str, float]]:
    """The status each service's latest card said, and when it said it."""
    statuses: dict[str, str] = {}
    times: dict[str, float] = {}
    for socket in sockets:
        for at, text in socket.since(since):
            for public_id, status in cards_in(text):
                if status is not None:
                    statuses[public_id] = status
                    times[public_id] = at
    return statuses, times


def measure_start_all(ale: Ale, stack: Stack, environments: list, timeout: float, split: bool) -> dict[str, Any]:
    from django.db.models import Count

    from services.models import Service

    ids = set(Service.objects.filter(environment__in=environments).values_list("public_id", flat=True))
    names = set(Service.objects.filter(environment__in=environments).values_list("name", flat=True))
    replicas = Service.objects.filter(environment__in=environments).values_list("replicas", flat=True).first()
    cluster = None
    if split:
        api = kube_api(os.environ["DEVCLUSTER_KUBECONFIG"])
        cluster = DeploymentsReady(api, names, len(ids), replicas).in_background(timeout)
    sockets = [ale.open_socket(environment) for environment in environments]
    time.sleep(1)  # the sockets have said their tab
    clock = CpuClock({name: proc.pid for name, proc in stack.processes})
    clock.start()
    started = time.time()
    answers = [ale.post(f"/environments/{environment.public_id}/start-all/") for environment in environments]
    responses = [elapsed for elapsed, _ in answers]
    rows = Service.objects.filter(environment__in=environments)
    if rows.filter(desired_state=Service.DesiredState.RUNNING).count() != len(ids):
        raise RuntimeError(f"Start All did not start every service: {answers[-1][1].text[:2000]}")

    def all_running() -> bool:
        return rows.filter(status=Service.Status.RUNNING).count() == len(ids)

    def reached() -> str:
        counts = dict(rows.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))

    wait(all_running, timeout, f"{len(ids)} services running after Start All", interval=0.5, progress=reached)
    rows_done = max(rows.values_list("status_changed_at", flat=True)).timestamp()
    cpu = clock.stop("ale")

    def cards_running() -> bool:
        statuses, _ = last_card_statuses(sockets, started)
        return all(statuses.get(public_id) == "running" for public_id in ids)

    cards_done = None
    try:
        # The card of the last row written is on its way: a little longer than the rows.
        wait(cards_running, 30, "every card on the sockets to say Running")
        _, times = last_card_statuses(sockets, started)
        cards_done = max(times[public_id] for public_id in ids)
    except StageTimeout:
        pass
    time.sleep(1)  # what trails the last change (events) is part of the storm
    result = {}
    if cluster is not None:
        cluster.closing = True
        result["ale_cluster_ready_s"] = round(cluster.done_at - started, 2) if cluster.done_at else None
        result["ale_deployments_created_s"] = round(cluster.created_at - started, 2) if cluster.created_at else None
    result |= {
        "ale_all_running_s": round(rows_done - started, 2),
        "ale_cards_running_s": round(cards_done - started, 2) if cards_done else None,
        "start_all_response_ms": round(statistics.median(responses), 1),
        "start_all_response_max_ms": round(max(responses), 1),
        **socket_numbers(sockets, started, time.time()),
        **cpu,
    }
    for socket in sockets:
        socket.close()
    return result


class PodsGone:
    """Follows the pods labelled `label_selector` with a watch of the bench's own (relisting when
    it expires) and notes when none is left after `since` was set: for a Stop, the cluster's
    share of the time until its card says Stopped (the rest is the watcher's and the page's)."""

    def __init__(self, api, label_selector: str) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.label_selector = label_selector
        self.pods: set[tuple[str, str]] = set()
        self.since: float | None = None
        self.gone_at: float | None = None
        self.closing = False

    def _note(self, kind: str, item: dict[str, Any]) -> None:
        key = (item["metadata"]["namespace"], item["metadata"]["name"])
        if kind == "DELETED":
            self.pods.discard(key)
        else:
            self.pods.add(key)
        if self.since is not None and self.gone_at is None and not self.pods:
            self.gone_at = time.time()

    def follow(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        while self.gone_at is None and not self.closing:
            listed = json.loads(
                self.core.list_pod_for_all_namespaces(label_selector=self.label_selector, _preload_content=False).data
            )
            self.pods = set()
            for item in listed["items"]:
                self._note("ADDED", item)
            try:
                for event in watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, deserialize=False, timeout_seconds=30,
                    label_selector=self.label_selector, resource_version=listed["metadata"]["resourceVersion"],
                ):  # fmt: skip
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._note(event["type"], event["object"])
                    if self.gone_at is not None or self.closing:
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise

    def in_background(self) -> PodsGone:
        threading.Thread(target=self.follow, daemon=True).start()
        return self


def measure_stop_during_bulk(
    ale: Ale, environments: list, services: int, replicas: int, timeout: float, split: bool = False
) -> dict[str, Any]:
    from clusters.labels import SERVICE_LABEL
    from services.models import Service

    sockets = [ale.open_socket(environment) for environment in environments]
    time.sleep(1)
    started = time.time()
    names_per_environment = []
    offset = 0
    for environment, count in zip(environments, spread(services, len(environments))):
        names = [f"bulk-{index:04d}" for index in range(offset, offset + count)]
        offset += count
        names_per_environment.append(names)
        _, preview = ale.post(
            f"/environments/{environment.public_id}/yaml/preview/", files={"file": ("bench.yaml", yaml_file(names, replicas))}
        )
        if "data-yaml-apply" not in preview.text:
            raise RuntimeError(f"the preview refused the file: {preview.text[:2000]}")
        fields = {name: re.search(rf'name="{name}" value="([^"]+)"', preview.text).group(1) for name in ("yaml", "token")}
        _, applied = ale.post(f"/environments/{environment.public_id}/yaml/apply/", data=fields)
        if "HX-Redirect" not in applied.headers:
            raise RuntimeError(f"the apply failed: {applied.status_code} {applied.text[:2000]}")
    confirmed = time.time()
    target = Service.objects.get(environment=environments[-1], name=names_per_environment[-1][-1])
    pods = None
    if split:
        pods = PodsGone(kube_api(os.environ["DEVCLUSTER_KUBECONFIG"]), f"{SERVICE_LABEL}={target.public_id}").in_background()
    time.sleep(max(0.0, confirmed + STOP_DELAY - time.time()))
    clicked = time.time()
    if pods is not None:
        pods.since = clicked
    ale.post(f"/services/{target.public_id}/stop/")

    def card_stopped() -> float | None:
        for socket in sockets:
            for at, text in socket.since(clicked):
                for public_id, status in cards_in(text):
                    if public_id == target.public_id and status == "stopped":
                        return at
        return None

    def row_stopped() -> bool:
        return Service.objects.filter(pk=target.pk, status=Service.Status.STOPPED).exists()

    wait(
        lambda: card_stopped() is not None or row_stopped(), timeout, f"the stopped service {target.name} to show Stopped",
        progress=lambda: f"its row says {Service.objects.get(pk=target.pk).status}",
    )
    row_at = None
    try:
        wait(row_stopped, 30, "its row to say stopped")
        row_at = Service.objects.get(pk=target.pk).status_changed_at.timestamp()
    except StageTimeout:
        pass
    try:
        wait(lambda: card_stopped() is not None, 10, "its card to say Stopped")
    except StageTimeout:
        pass
    card_at = card_stopped()
    for socket in sockets:
        socket.close()
    split_numbers = {}
    if pods is not None:
        pods.closing = True
        if pods.gone_at is None and not pods.pods:
            # Its pods were never created: the Stop reached the cluster before its ReplicaSet
            # made them, and the cluster had none to remove.
            pods.gone_at = clicked
        split_numbers["stop_during_bulk_cluster_ms"] = round((pods.gone_at - clicked) * 1000) if pods.gone_at else None
    return {
        **split_numbers,
        "stop_during_bulk_ms": round(((card_at or row_at) - clicked) * 1000),
        "stop_during_bulk_measured_on": "card" if card_at else "row",
        "stop_during_bulk_row_ms": round((row_at - clicked) * 1000) if row_at else None,
        "stop_clicked_after_apply_s": round(clicked - started, 2),
    }


def delete_rows(user, project) -> None:
    """What the bench created in a configured database (its cluster objects went with the
    devcluster): the project with its environments and services, then the member, whose
    default space goes with them."""
    from django.db import transaction

    with transaction.atomic():
        project.delete()
        user.delete()


# --- the run ------------------------------------------------------------------------------------


def without_runs(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--runs":
            skip = True
        elif not arg.startswith("--runs="):
            out.append(arg)
    return out


def repeat(runs: int) -> None:
    """The bench `runs` times, one process each (its line printed as it ends), then one line of
    the runs' medians: `{"runs": N, "median": {...}, "ratios": [...]}`."""
    results: list[dict[str, Any]] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), *without_runs(sys.argv[1:])], stdout=subprocess.PIPE, text=True
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise SystemExit(f"bench/scale.py: run {len(results) + 1} of {runs} failed (exit status {done.returncode})")
        print(lines[-1], flush=True)
        results.append(json.loads(lines[-1]))
    numeric = [key for key, value in results[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    median = {key: round(statistics.median(r[key] for r in results if key in r), 2) for key in numeric}
    print(json.dumps({"runs": runs, "median": median, "ratios": [r.get("ratio") for r in results]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--environments", type=int, default=1)
    parser.add_argument("--only", choices=["direct", "ale", "stop"], help="run one stage only")
    parser.add_argument("--use-configured-db", action="store_true", help="DATABASE_URL's database, not a throwaway SQLite")
    parser.add_argument("--keep", action="store_true", help="leave the processes and files for debugging")
    parser.add_argument("--split", action="store_true",
                        help="also watch ale's cluster for ale_cluster_ready_s and stop_during_bulk_cluster_ms (watches of its "
                             "own: they cost the cluster)")
    parser.add_argument("--stage-timeout", type=float, default=600.0, help="seconds a stage may take (default 600)")
    parser.add_argument("--cluster-cpus", metavar="N[,N...]",
                        help="run the devclusters on these CPUs and everything else the bench starts (and the bench) "
                             "on the others, as a cluster's API server runs on machines of its own: what ale costs "
                             "the cluster, apart from what sharing CPUs with it costs (PostgreSQL and Redis, the "
                             "machine's, still run anywhere)")
    parser.add_argument("--runs", type=int, default=1,
                        help="run the whole bench this many times, each on fresh processes and clusters, then print "
                             "the medians: on a shared machine one run's numbers move with its neighbours'")
    options = parser.parse_args()
    if options.services < options.environments:
        parser.error("--services must be at least --environments")
    if options.runs < 1:
        parser.error("--runs must be at least 1")
    if options.cluster_cpus:
        try:
            cluster_cpus, others = split_cpus(options.cluster_cpus)
        except ValueError as exc:
            parser.error(str(exc))
    if options.runs > 1:
        repeat(options.runs)
        return
    if options.cluster_cpus:
        global CLUSTER_CPUS
        CLUSTER_CPUS = cluster_cpus
        # What this process starts from now on inherits it (the worker's pool, the watcher, daphne).
        os.sched_setaffinity(0, others)

    signals = StopSignals().install()
    stack = Stack(signals=signals)
    scratch = Path(tempfile.mkdtemp(prefix="ale-bench-scale-"))
    result: dict[str, Any] = {
        "services": options.services,
        "replicas": options.replicas,
        "environments": options.environments,
        "database": "configured" if options.use_configured_db else "sqlite",
    }
    if options.cluster_cpus:
        result["cluster_cpus"] = ",".join(str(cpu) for cpu in sorted(CLUSTER_CPUS or ()))
    cleanup = None
    ok = False
    try:
        stages = [options.only] if options.only else ["direct", "ale", "stop"]
        # ale's cluster first (the rows name it), idle while the direct stage runs on its own.
        kubeconfig = devcluster(stack, scratch / "ale")
        queue = f"ale-bench-scale-{uuid.uuid4().hex[:8]}"
        env = child_environment(scratch, kubeconfig, queue)
        if not options.use_configured_db:
            env["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
        elif not env.get("DATABASE_URL"):
            raise SystemExit("--use-configured-db needs DATABASE_URL")
        setup_django(env)
        if options.use_configured_db:
            settle_database()
        starting = "ale" in stages or "direct" in stages
        user, project, start_envs, stop_envs = make_world(
            options.environments if starting else 0, options.environments if "stop" in stages else 0
        )
        if options.use_configured_db:
            cleanup = (user, project)
        if starting:
            create_stopped_services(user, start_envs, options.services, options.replicas)
        if "direct" in stages:
            seconds, cpu = measure_direct(
                stack, scratch, direct_deployments(start_envs), options.replicas, options.stage_timeout
            )
            result["direct_all_running_s"] = round(seconds, 2)
            result.update(cpu)
        if "ale" in stages or "stop" in stages:
            base = start_stack(stack, scratch, env, options.stage_timeout)
            # The namespaces of the new environments, applied by the worker: settled first.
            wait(lambda: queue_drained(queue), options.stage_timeout, "the environments' first reconciles")
            time.sleep(2)
            ale = log_in(base, user, (start_envs or stop_envs)[0])
            if "ale" in stages:
                result.update(measure_start_all(ale, stack, start_envs, options.stage_timeout, options.split))
                if "direct_all_running_s" in result:
                    result["ratio"] = round(result["ale_all_running_s"] / result["direct_all_running_s"], 2)
            if "stop" in stages:
                result.update(
                    measure_stop_during_bulk(
                        ale, stop_envs, options.services, options.replicas, options.stage_timeout, options.split
                    )
                )
            try:
                import redis
                from django.conf import settings

                redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
            except Exception:  # noqa: BLE001 - a queue left behind costs a key, not the numbers
                pass
        ok = True
    except StageTimeout as exc:
        print(f"bench/scale.py: {exc}; measured until then: {json.dumps(result)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("bench/scale.py: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signals.received = True  # a second Ctrl-C must not cut the clean-up short
        if options.keep:
            pids = ", ".join(f"{name} {proc.pid}" for name, proc in stack.processes)
            print(f"--keep: left running: {pids or 'nothing'}; files in {scratch}", file=sys.stderr)
        else:
            stack.stop()
            if cleanup is not None:
                try:
                    delete_rows(*cleanup)
                except Exception as exc:  # noqa: BLE001 - reported; the numbers stand
                    print(f"bench/scale.py: could not delete the bench's rows: {exc!r}", file=sys.stderr)
            if ok:
                shutil.rmtree(scratch, ignore_errors=True)
            else:
                print(f"bench/scale.py: logs kept in {scratch}", file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
