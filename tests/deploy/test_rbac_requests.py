"""The RBAC rules against what ale really sends: a scenario through ale's own code against the
devcluster, every request recorded at the client's transport and turned into the (group,
resource, verb) the API server would authorise. Each must be granted, and each must be one the
static derivation of tests/deploy/test_rbac.py found, which keeps that derivation honest."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from clusters.client import KubeClient, client_for, observing_requests
from clusters.leader import LeaderElector
from services.resync import resync_cluster
from clusters.watcher import ClusterWatcher
from environments.actions import delete_environment, set_firewall
from environments.tasks import delete_environment as delete_environment_task
from environments.tasks import reconcile_environment
from services import actions
from tests.deploy.test_rbac import derive, granted
from tests.services.test_tasks import deploy, make_env, pods_of, reconcile, wait_for

pytestmark = pytest.mark.django_db


def authorised_as(method: str, url: str, status: int) -> set[tuple[str, str, str]]:
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    group, rest = ("", segments[2:]) if segments[0] == "api" else (segments[1], segments[3:])
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    if sub:
        resource = f"{resource}/{sub}"
    query = parse_qs(parts.query)
    if method == "GET":
        verb = "get" if name else "watch" if query.get("watch") == ["true"] else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    verbs = {verb}
    if method == "PATCH" and status == 201:
        verbs.add("create")  # server-side apply that created the object
    return {(group, resource, v) for v in verbs}


@pytest.fixture
def recorded(monkeypatch) -> Iterator[set[tuple[str, str, str]]]:
    seen: set[tuple[str, str, str]] = set()
    open_exec = KubeClient.open_exec

    def record(method: str, path: str, query: list, status: int) -> None:
        url = path + "?" + "&".join(f"{k}={v}" for k, v in query if v is not None)
        seen.update(authorised_as(method, url, status))

    def recording_exec(self, namespace, pod, **kwargs):
        # The websocket upgrade is a GET, authorised as get and (1.30+) as create.
        seen.update({("", "pods/exec", "get"), ("", "pods/exec", "create")})
        return open_exec(self, namespace, pod, **kwargs)

    monkeypatch.setattr(KubeClient, "open_exec", recording_exec)
    with observing_requests(record):
        yield seen


def test_it_grants_every_request_of_a_real_scenario(kube_cluster, space, owner, namespace, recorded):
    env = make_env(kube_cluster, space, owner)
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    web = deploy(env, owner)
    assert reconcile(web) == "applied"
    tcp = deploy(env, owner, name="db", kind="tcp", image="postgres:16", port="5432", replicas="1",
                 health_check_path="")
    assert reconcile(tcp) == "applied"
    set_firewall(acting_user=owner, environment=env, allow=True, cidrs=[], confirmed=True)
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    set_firewall(acting_user=owner, environment=env, allow=False, cidrs=[], confirmed=True)
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"

    kube = client_for(kube_cluster)
    pod = wait_for(lambda: [p for p in pods_of(kube, web) if p["status"].get("phase") == "Running"], what="a pod")[0]
    with kube.open_log_stream(env.namespace, pod["metadata"]["name"], follow=False) as stream:
        b"".join(stream.iter_chunks())
    with kube.open_exec(env.namespace, pod["metadata"]["name"], command=["sh", "-c", "true"], tty=False) as session:
        session.read(timeout=1)

    # The watcher's list-watch loops only: its writer would write to the database from a
    # thread, which this (transaction-wrapped) test cannot share.
    watcher = ClusterWatcher(kube_cluster, watch_timeout=1)
    threads = [loop.start(watcher.stop_event) for loop in watcher.watchers]
    wait_for(lambda: watcher.synced, what="the watcher's first lists")
    wait_for(lambda: ("", "pods", "watch") in recorded, what="the watches")
    watcher.stop()
    for thread in threads:
        thread.join(5)
    resync_cluster(kube_cluster)

    elector = LeaderElector(kube, name="ale-watcher", namespace=namespace, lease_seconds=2, retry_period=0.2,
                            renew_deadline=1.0)
    assert elector.try_acquire_or_renew() and elector.try_acquire_or_renew()

    assert reconcile(actions.delete_service(owner, web)) == "deleted"
    delete_environment(acting_user=owner, environment=env)
    delete_environment_task.apply(args=[env.pk])

    allowed = granted("ClusterRole") | granted("Role")
    assert not recorded - allowed, f"requests the RBAC rules refuse: {sorted(recorded - allowed)}"
    derived = derive()
    assert not recorded - (derived["cluster"] | derived["leader"]), "requests the static derivation missed"
    # The scenario reached every family of call: writes, reads, streams, watches, the Lease.
    verbs = {verb for _, _, verb in recorded}
    assert {"create", "patch", "delete", "get", "list", "watch", "update"} <= verbs
