"""The apply of one environment's services, called directly (no worker): seconds until every
object is applied, seconds until every pod is ready, and the write requests it sent; first with
everything new, then again with nothing changed, then with every service's generation bumped (what
a Start All changes). Beside it, the same Deployments applied with the
official client, the cluster's own speed. Prints JSON.

    .venv/bin/python bench/apply_batch.py --services 300 --replicas 3

On a devcluster process of its own and a scratch SQLite database (Redis at REDIS_URL for the
cards). Runs on code without `services.tasks.reconcile_services` too (a reconcile per service, as
one worker slot ran them), to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import ROOT, setup_django  # noqa: E402

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--pod-ready-seconds", type=float, default=1.0)
    options = parser.parse_args()
    setup_django(use_configured_db=False)
    sys.path.insert(0, str(ROOT))

    from kubernetes import client as k8s, config as k8s_config

    from clusters.client import client_for, observing_requests
    from clusters.models import Cluster
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import F
    from services import lifecycle, tasks
    from services.forms import ServiceForm
    from services.models import Service
    from spaces.actions import create_project
    from spaces.models import Membership, ResourceAllocation, Space
    from environments.tasks import reconcile_environment
    from tests.fixtures.devcluster import start_devcluster_process, stop_process

    workdir = Path(tempfile.mkdtemp(prefix="ale-bench-apply-"))
    proc, kubeconfig = start_devcluster_process(workdir, "--pod-ready-seconds", str(options.pod_ready_seconds))
    try:
        cluster = Cluster.objects.create(
            name="bench", display_name="Bench", connection=Cluster.Connection.KUBECONFIG,
            kubeconfig=kubeconfig.read_text(), ingress_domain="localtest.me",
        )
        user = get_user_model().objects.create_user(username="bench", password="x")
        space = Space.objects.create(name="bench")
        Membership.objects.create(space=space, user=user, role=Membership.Role.OWNER)
        big = 10**7
        ResourceAllocation.objects.create(
            space=space, on_demand_cpu_millicores=big, on_demand_memory_mib=big, max_running_services=big,
            max_replicas_per_service=options.replicas,
        )
        env = create_project(acting_user=user, space=space, name="bench", display_name="", cluster=cluster).environments.get()
        data = {"name": "x", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
                "memory": "64Mi", "replicas": str(options.replicas), "health_check_path": "/", "capacity": "on_demand"}
        form = ServiceForm(data, environment=env)
        assert form.is_valid(), form.errors
        spec = {k: v for k, v in form.cleaned_data.items() if k != "name"}
        with transaction.atomic():
            ids = [lifecycle.create(env, f"s{i:03d}", spec).pk for i in range(options.services)]
        kube = client_for(cluster)
        batched = hasattr(tasks, "reconcile_services")

        def reconcile() -> None:
            reconcile_environment.apply(args=[env.pk])
            if batched:
                from environments.tasks import CHUNK_SIZE, chunks

                for chunk in chunks(ids, CHUNK_SIZE):
                    tasks.reconcile_services.apply(args=[env.pk, chunk])
            else:
                for service_id in ids:
                    tasks.reconcile_service.apply(args=[service_id])

        def ready(namespace: str) -> int:
            items, _ = kube.list("apps/v1", "Deployment", namespace=namespace)
            return sum(1 for d in items if (d.get("status") or {}).get("readyReplicas") == options.replicas)

        def measured(run) -> dict:
            writes = []
            start = time.monotonic()
            with observing_requests(lambda method, path, query, status: writes.append(method) if method in WRITES else None):
                run()
            return {"seconds": round(time.monotonic() - start, 2), "writes": len(writes)}

        result = {"services": options.services, "replicas": options.replicas, "batched": batched}
        start = time.monotonic()
        result["first"] = measured(reconcile)
        while ready(env.namespace) < options.services:
            time.sleep(0.5)
        result["first"]["all_ready_s"] = round(time.monotonic() - start, 2)
        result["again_unchanged"] = measured(reconcile)
        # What a Start All or Stop All changes: every service's generation, nothing else.
        Service.objects.filter(pk__in=ids).update(generation=F("generation") + 1)
        result["new_generation"] = measured(reconcile)
        if batched:
            from environments.tasks import _publish_cards

            start = time.monotonic()
            _publish_cards(env, ids)
            result["cards_s"] = round(time.monotonic() - start, 2)

        # The same Deployments, applied directly with the official client in a namespace of their own.
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        namespace = "direct"
        core.create_namespace({"metadata": {"name": namespace}})
        start = time.monotonic()
        for i in range(options.services):
            labels = {"app": f"d{i:03d}"}
            apps.create_namespaced_deployment(namespace, {
                "metadata": {"name": f"d{i:03d}"},
                "spec": {"replicas": options.replicas, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                                             "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                                           "limits": {"cpu": "100m", "memory": "64Mi"}}}]}}},
            })
        applied = time.monotonic() - start
        while ready(namespace) < options.services:
            time.sleep(0.5)
        result["direct"] = {"seconds": round(applied, 2), "writes": options.services,
                            "all_ready_s": round(time.monotonic() - start, 2)}
        result["ratio"] = round(result["first"]["all_ready_s"] / result["direct"]["all_ready_s"], 2)
        print(json.dumps(result))
    finally:
        stop_process(proc)


if __name__ == "__main__":
    main()
