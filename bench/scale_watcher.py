"""The watcher at scale: N pods on one cluster, its memory, its first sync and its lag.

    python bench/scale_watcher.py --pods 10000

Starts a devcluster process, writes the rows of N/3 services (3 replicas each) spread over 10
environments of that cluster straight into the database, creates their Deployments with the
official client (in threads) and waits until the devcluster has every pod ready. Then starts
`manage.py watch_clusters` as a process of its own and measures:

- `initial_sync_s`: from the watcher's start to every service Running in the database;
- `watcher_rss_mb`: the watcher's resident memory right after that (VmRSS), and its peak so far
  (`watcher_peak_rss_mb`, VmHWM);
- `change_to_card_p95_ms`: for `--changes` services one after the other, the time from scaling
  its Deployment down by one replica (a change of one pod) to the message with that service's
  card on its environment's group of the channel layer (each page's socket then sends it at once,
  or within 150 ms when it sent another message just before);
- `change_to_watch_event_p50_ms` / `_p95_ms`: the cluster's part of that lag, from the scale to
  the first watch event of that Deployment, as a watch of the bench's own receives it (the card
  changes with that event: the Deployment's new spec makes it "Deploying"), and
  `watch_event_to_card_p50_ms` / `_p95_ms`, the watcher's part, from that event to the card;
- `watcher_rss_after_changes_mb`: the resident memory once the changes are through.

Prints one JSON line. It runs on a throwaway SQLite file unless --use-configured-db is given
(then DATABASE_URL's database is used; the bench's rows are left for inspection in a space
named after the run). The channel layer is the configured one (REDIS_URL). Numbers only: it
never fails on time; a change whose card does not arrive within --card-timeout seconds is
counted in `missed`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import setup_django  # noqa: E402

REPLICAS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--card-timeout", type=float, default=10.0)
    parser.add_argument("--sync-timeout", type=float, default=600.0)
    parser.add_argument("--use-configured-db", action="store_true")
    options = parser.parse_args()
    setup_django(use_configured_db=options.use_configured_db)

    from tests.fixtures.devcluster import start_devcluster_process, stop_process

    workdir = Path(tempfile.mkdtemp(prefix="ale-bench-watcher-"))
    devcluster, kubeconfig = start_devcluster_process(workdir)
    watcher: subprocess.Popen[bytes] | None = None
    try:
        services = create_rows(kubeconfig, options.pods, options.environments)
        create_deployments(kubeconfig, services)
        watcher, result = measure_sync(workdir, services, options.sync_timeout)
        result.update(asyncio.run(measure_changes(kubeconfig, services, options.changes, options.card_timeout)))
        result["watcher_rss_after_changes_mb"] = memory(watcher.pid)["VmRSS"]
        print(json.dumps(result), flush=True)
    finally:
        if watcher is not None:
            stop_process(watcher)
        stop_process(devcluster)


def create_rows(kubeconfig: Path, pods: int, environments: int) -> list:
    """A space, a project, `environments` environments on the devcluster and N/3 services."""
    from clusters.models import Cluster
    from environments.models import Environment
    from services.models import Service
    from spaces.models import Project, Space

    run = f"{random.randrange(16**6):06x}"
    cluster = Cluster.objects.create(
        name=f"bench-{run}",
        display_name="Bench",
        connection=Cluster.Connection.KUBECONFIG,
        kubeconfig=kubeconfig.read_text(),
        ingress_domain="localtest.me",
    )
    space = Space.objects.create(name=f"bench-watcher-{run}")
    project = Project.objects.create(space=space, name=f"b{run}", display_name="Bench")
    count = math.ceil(pods / REPLICAS)
    environments = max(1, min(environments, count))
    envs = [Environment.objects.create(project=project, name=f"env{i}", cluster=cluster) for i in range(environments)]
    Service.objects.bulk_create(
        [
            Service(
                environment=envs[i % environments],
                name=f"svc-{i:05d}",
                image="nginx:1.27",
                port=80,
                replicas=REPLICAS,
                desired_state=Service.DesiredState.RUNNING,
                status=Service.Status.DEPLOYING,
            )
            for i in range(count)
        ],
        batch_size=500,
    )
    return list(Service.objects.filter(environment__in=envs).select_related("environment__cluster"))


def _api(kubeconfig: Path):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def create_deployments(kubeconfig: Path, services: list) -> None:
    """The namespaces and Deployments as ale renders them, created with the official client;
    returns once the devcluster reports every replica ready."""
    from kubernetes import client

    from clusters.labels import MANAGED_BY
    from services.manifests import render_deployment

    api = _api(kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    for namespace in sorted({service.environment.namespace for service in services}):
        core.create_namespace({"metadata": {"name": namespace, "labels": dict(MANAGED_BY)}})
    manifests = [render_deployment(service) for service in services]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda m: apps.create_namespaced_deployment(m["metadata"]["namespace"], m), manifests))
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        # Raw JSON, and not too often: deserialising thousands of Deployments into models every
        # second would cost the devcluster and this process more than the wait itself.
        listed = apps.list_deployment_for_all_namespaces(
            label_selector="app.kubernetes.io/managed-by=ale", _preload_content=False
        )
        items = json.loads(listed.data)["items"]
        if sum(1 for d in items if (d.get("status") or {}).get("readyReplicas", 0) >= REPLICAS) >= len(services):
            break
        time.sleep(1 if len(services) < 1000 else 3)
    api.close()


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def measure_sync(workdir: Path, services: list, timeout: float) -> tuple[subprocess.Popen[bytes], dict]:
    from services.models import Service

    log = open(workdir / "watcher.log", "wb")
    started = time.monotonic()
    watcher = subprocess.Popen(
        [sys.executable, "manage.py", "watch_clusters", "--no-leader-elect", "--refresh-interval", "5"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    log.close()
    ids = [service.pk for service in services]
    synced = None
    while time.monotonic() - started < timeout:
        if watcher.poll() is not None:
            raise SystemExit(f"the watcher exited: {(workdir / 'watcher.log').read_text()[-3000:]}")
        running = Service.objects.filter(pk__in=ids, status=Service.Status.RUNNING).count()
        if running == len(ids):
            synced = time.monotonic() - started
            break
        time.sleep(0.1)
    used = memory(watcher.pid)
    return watcher, {
        "pods": len(services) * REPLICAS,
        "services": len(services),
        "watcher_rss_mb": used["VmRSS"],
        "watcher_peak_rss_mb": used["VmHWM"],
        "initial_sync_s": round(synced, 2) if synced is not None else None,
    }


async def measure_changes(kubeconfig: Path, services: list, count: int, card_timeout: float) -> dict:
    """Scale `count` services down by one replica, one after the other; the time to each card."""
    from channels.layers import get_channel_layer
    from kubernetes import client

    from services.live import CARD_UPDATE, PAGE_FRAGMENTS, group_name

    api = _api(kubeconfig)
    apps = client.AppsV1Api(api)
    layer = get_channel_layer()
    lags: list[float] = []
    to_event: list[float] = []
    event_to_card: list[float] = []
    missed = 0
    for service in random.Random(19).sample(services, min(count, len(services))):
        channel = await layer.new_channel()
        group = group_name(service.environment.public_id)
        await layer.group_add(group, channel)
        marker = f"service-{service.public_id}"
        seen = await asyncio.to_thread(DeploymentWatch, service)
        started = time.monotonic()
        await asyncio.to_thread(
            apps.patch_namespaced_deployment_scale,
            service.name,
            service.environment.namespace,
            {"spec": {"replicas": REPLICAS - 1}},
        )
        try:
            while True:
                left = card_timeout - (time.monotonic() - started)
                message = await asyncio.wait_for(layer.receive(channel), timeout=max(left, 0.001))
                if message.get("type") == PAGE_FRAGMENTS:
                    shown = any(fragment[0] == marker for fragment in message.get("fragments", []))
                else:
                    shown = message.get("type") == CARD_UPDATE and marker in message.get("html", "")
                if shown:
                    card = time.monotonic()
                    lags.append((card - started) * 1000)
                    if seen.at is not None:
                        to_event.append((seen.at - started) * 1000)
                        event_to_card.append((card - seen.at) * 1000)
                    break
        except asyncio.TimeoutError:
            missed += 1
        await asyncio.to_thread(seen.close)
        await layer.group_discard(group, channel)
    api.close()

    return {
        "changes": len(lags) + missed,
        "missed": missed,
        "change_to_card_p50_ms": percentile(lags, 0.5),
        "change_to_card_p95_ms": percentile(lags, 0.95),
        "change_to_watch_event_p50_ms": percentile(to_event, 0.5),
        "change_to_watch_event_p95_ms": percentile(to_event, 0.95),
        "watch_event_to_card_p50_ms": percentile(event_to_card, 0.5),
        "watch_event_to_card_p95_ms": percentile(event_to_card, 0.95),
    }


def percentile(values: list[float], p: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(math.ceil(p * len(values))) - 1)], 1) if values else None


class DeploymentWatch:
    """A watch of one service's Deployment from its current version: `at` is when its first
    change arrived (time.monotonic()), None until then."""

    def __init__(self, service) -> None:
        from clusters.client import client_for

        kube = client_for(service.environment.cluster)
        namespace = service.environment.namespace
        current = kube.get("apps/v1", "Deployment", service.name, namespace) or {}
        self.at: float | None = None
        self.stream = kube.watch(
            "apps/v1",
            "Deployment",
            namespace=namespace,
            field_selector=f"metadata.name={service.name}",
            resource_version=current.get("metadata", {}).get("resourceVersion"),
            timeout_seconds=60,
            allow_bookmarks=False,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for _ in self.stream:
                self.at = time.monotonic()
                return
        except Exception:  # noqa: BLE001 - closed under it
            return

    def close(self) -> None:
        self.stream.close()
        self.thread.join(5)


if __name__ == "__main__":
    main()
