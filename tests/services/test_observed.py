"""From what the cluster said (a `ClusterState`) to rows: statuses, stored events, pruning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.utils import timezone as dj_timezone

from clusters.state import DEPLOYMENTS, EVENTS, NAMESPACES, PODS, Changes, ClusterState, WriteResult
from environments.tasks import prune_events
from services.observed import match_service, store_statuses, write_changes
from environments.models import ClusterEvent
from services.models import Service


def make_service(environment, name: str = "web", **fields) -> Service:
    fields.setdefault("image", "nginx:1.27")
    fields.setdefault("port", 80)
    return Service.objects.create(environment=environment, name=name, **fields)


def labels(service: Service) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "ale",
        "ale.dev/environment": service.environment.public_id,
        "ale.dev/service": service.public_id,
    }


def deployment(service: Service, *, ready: int, replicas: int = 1) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name, "namespace": service.environment.namespace, "generation": 1,
                     "uid": f"d-{service.public_id}", "labels": labels(service)},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": ready},
    }


def pod(service: Service, name: str, *, ready: bool) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": service.environment.namespace, "uid": f"p-{name}",
                     "labels": labels(service)},
        "spec": {"containers": [{"name": service.name, "image": service.image}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": service.name, "ready": ready, "restartCount": 0,
                                          "image": service.image, "state": {"running": {}}}]},
    }


def k8s_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(namespace: str, uid: str, *, kind: str, name: str, reason: str = "Scheduled", type_: str = "Normal",
          message: str = "Successfully assigned", count: int = 1, last: datetime | None = None) -> dict:
    last = last or dj_timezone.now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{uid}", "namespace": namespace, "uid": uid},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": k8s_time(last - timedelta(minutes=1)),
        "lastTimestamp": k8s_time(last),
    }


def synced_state() -> ClusterState:
    state = ClusterState()
    for kind in (NAMESPACES, DEPLOYMENTS, PODS, EVENTS):
        state.replace(kind, [])
    state.take_changes()
    return state


@pytest.fixture
def web(main_env) -> Service:
    return make_service(main_env, "web", replicas=2)


class TestStatuses:
    def test_it_writes_the_status_its_card_shows(self, main_env, web):
        state = synced_state()
        state.apply(DEPLOYMENTS, "ADDED", deployment(web, ready=2, replicas=2))

        result = write_changes(main_env.cluster_id, state, state.take_changes())

        web.refresh_from_db()
        assert (web.status, web.ready_replicas, web.status_reason) == ("running", 2, "")
        assert web.status_changed_at is not None
        assert [service.pk for service in result.changed] == [web.pk]

    def test_it_does_not_write_when_nothing_the_card_shows_changed(
        self, main_env, web, django_assert_num_queries
    ):
        state = synced_state()
        state.apply(DEPLOYMENTS, "ADDED", deployment(web, ready=1, replicas=2))
        write_changes(main_env.cluster_id, state, state.take_changes())
        # A pod's resourceVersion moving (a probe, a label) changes nothing on the card.
        state.apply(PODS, "MODIFIED", pod(web, "web-1-a", ready=True))
        state.apply(PODS, "MODIFIED", pod(web, "web-1-b", ready=False))

        with django_assert_num_queries(3):  # savepoint, read the service, release
            result = write_changes(main_env.cluster_id, state, state.take_changes())

        assert result.changed == []

    def test_it_reads_a_burst_of_services_in_one_query(self, main_env, django_assert_num_queries):
        services = [make_service(main_env, f"svc{i}") for i in range(20)]
        state = synced_state()
        for service in services:
            state.apply(DEPLOYMENTS, "ADDED", deployment(service, ready=0))
            state.apply(PODS, "ADDED", pod(service, f"{service.name}-1-a", ready=False))
        # Every service is already "deploying, 0 of 1 replica ready": nothing to write.
        for service in services:
            Service.objects.filter(pk=service.pk).update(status_reason="0 of 1 replica ready.")

        with django_assert_num_queries(3):
            write_changes(main_env.cluster_id, state, state.take_changes())

    def test_it_loses_to_a_change_made_since_it_read(self, main_env, web):
        state = synced_state()
        state.apply(DEPLOYMENTS, "ADDED", deployment(web, ready=2, replicas=2))
        web.refresh_from_db()
        # A user stops the service between the watcher's read and its write.
        Service.objects.filter(pk=web.pk).update(desired_state="stopped", status="stopping", generation=2)

        result = WriteResult()
        store_statuses([web], state, result)

        assert result.retry == {web.public_id}
        assert Service.objects.get(pk=web.pk).status == "stopping"

    @pytest.mark.parametrize("count", [10, 60])
    def test_it_writes_a_burst_of_statuses_in_a_few_queries(self, main_env, count, django_assert_num_queries):
        services = [make_service(main_env, f"svc{i}") for i in range(count)]
        state = synced_state()
        for service in services:
            state.apply(DEPLOYMENTS, "ADDED", deployment(service, ready=1))

        # Savepoint, read the services' derived columns, lock them again, one UPDATE (they all
        # become "running, 1 ready"), read the changed cards whole, the cards' metrics and
        # secrets, the environments with a Start All or Stop All in flight (for their banner),
        # release: whatever their number.
        with django_assert_num_queries(10):
            result = write_changes(main_env.cluster_id, state, state.take_changes())

        assert len(result.changed) == count
        assert Service.objects.filter(environment=main_env, status="running", ready_replicas=1).count() == count

    def test_a_burst_writes_all_but_the_rows_that_moved_under_it(self, main_env):
        services = [make_service(main_env, f"svc{i}") for i in range(5)]
        state = synced_state()
        for service in services:
            state.apply(DEPLOYMENTS, "ADDED", deployment(service, ready=1))
            service.refresh_from_db()
        # A user stops one between the watcher's read and its write.
        Service.objects.filter(pk=services[2].pk).update(desired_state="stopped", status="stopping", generation=2)

        result = WriteResult()
        store_statuses(services, state, result)

        assert result.retry == {services[2].public_id}
        assert sorted(s.pk for s in result.changed) == sorted(s.pk for s in services if s is not services[2])
        assert Service.objects.get(pk=services[2].pk).status == "stopping"
        assert Service.objects.filter(environment=main_env, status="running").count() == 4

    def test_it_leaves_services_of_other_clusters_alone(self, main_env, web):
        from tests.factories import make_cluster

        other = make_cluster()
        state = synced_state()
        state.apply(DEPLOYMENTS, "ADDED", deployment(web, ready=2, replicas=2))

        write_changes(other.pk, state, state.take_changes())

        assert Service.objects.get(pk=web.pk).status == "deploying"


class TestEvents:
    def test_it_stores_an_event_once_and_counts_its_repeats(self, main_env, web):
        ns = main_env.namespace
        state = synced_state()
        first = event(ns, "uid-1", kind="Pod", name="web-7d9f8b6c5-x2x4z", reason="BackOff",
                      type_="Warning", message="Back-off restarting failed container", count=1)
        state.apply(EVENTS, "ADDED", first)
        write_changes(main_env.cluster_id, state, state.take_changes())
        later = dj_timezone.now() + timedelta(seconds=30)
        state.apply(EVENTS, "MODIFIED", {**first, "count": 5, "lastTimestamp": k8s_time(later)})
        write_changes(main_env.cluster_id, state, state.take_changes())

        stored = ClusterEvent.objects.get()
        assert (stored.uid, stored.count, stored.type, stored.reason) == ("uid-1", 5, "Warning", "BackOff")
        assert stored.service == web
        assert stored.last_seen == later.replace(microsecond=0)
        assert stored.first_seen < stored.last_seen
        assert (stored.involved_kind, stored.involved_name) == ("Pod", "web-7d9f8b6c5-x2x4z")

    def test_it_stores_an_event_whose_text_the_database_would_refuse(self, main_env, web):
        state = synced_state()
        odd = event(main_env.namespace, "uid-odd", kind="Pod", name="web-1-a", message="exit\x00code 1")
        state.apply(EVENTS, "ADDED", {**odd, "reason": 42, "count": "many"})

        assert write_changes(main_env.cluster_id, state, state.take_changes()).events_written == 1
        stored = ClusterEvent.objects.get()
        assert (stored.message, stored.reason, stored.count) == ("exitcode 1", "", 1)

    def test_it_keeps_only_events_of_its_environments(self, main_env, web):
        state = synced_state()
        state.apply(EVENTS, "ADDED", event("kube-system", "uid-a", kind="Pod", name="coredns-abc-def"))
        state.apply(EVENTS, "ADDED", event("ale-notanenvironment", "uid-b", kind="Pod", name="web-1-a"))
        state.apply(EVENTS, "ADDED", event(main_env.namespace, "uid-c", kind="Deployment", name="web",
                                           reason="ScalingReplicaSet"))

        write_changes(main_env.cluster_id, state, state.take_changes())

        assert list(ClusterEvent.objects.values_list("uid", flat=True)) == ["uid-c"]

    def test_it_stores_a_burst_of_events_in_a_few_queries(self, main_env, web, django_assert_max_num_queries):
        state = synced_state()
        for i in range(200):
            state.apply(EVENTS, "ADDED", event(main_env.namespace, f"uid-{i}", kind="Pod", name=f"web-1-p{i}"))

        # In a savepoint: reads of environments and services, one upsert per 500 rows (90 on
        # SQLite, whose statements take fewer parameters) that reads nothing stored first.
        with django_assert_max_num_queries(7) as queries:
            write_changes(main_env.cluster_id, state, state.take_changes())
        table = ClusterEvent._meta.db_table
        assert not any(q["sql"].startswith("SELECT") and table in q["sql"] for q in queries.captured_queries)

        assert ClusterEvent.objects.count() == 200

    def test_it_does_not_rewrite_unchanged_events_after_a_relist(self, main_env, web):
        state = synced_state()
        events = [event(main_env.namespace, f"uid-{i}", kind="Pod", name=f"web-1-p{i}") for i in range(3)]
        state.replace(EVENTS, events)
        assert write_changes(main_env.cluster_id, state, state.take_changes()).events_written == 3

        state.replace(EVENTS, events)

        assert write_changes(main_env.cluster_id, state, state.take_changes()).events_written == 0

    def test_it_matches_events_to_services_by_their_objects_names(self, main_env):
        web = make_service(main_env, "web")
        web_api = make_service(main_env, "web-api")
        state = synced_state()
        services = {"web": (web.pk, web.public_id), "web-api": (web_api.pk, web_api.public_id)}
        ns = main_env.namespace

        assert match_service(state, ns, "Deployment", "web-api", services) == services["web-api"]
        assert match_service(state, ns, "ReplicaSet", "web-api-7d9f8b6c5", services) == services["web-api"]
        assert match_service(state, ns, "ReplicaSet", "web-7d9f8b6c5", services) == services["web"]
        assert match_service(state, ns, "Pod", "web-api-7d9f8b6c5-x2x4z", services) == services["web-api"]
        assert match_service(state, ns, "Job", "web-api-build-3", services) == services["web-api"]
        assert match_service(state, ns, "Pod", "other-5c8d-abcde", services) is None

    def test_it_matches_a_pod_by_its_label_before_its_name(self, main_env):
        web = make_service(main_env, "web")
        web_api = make_service(main_env, "web-api")
        state = synced_state()
        # A pod of `web` whose generated suffix happens to read like `web-api-...`.
        state.apply(PODS, "ADDED", pod(web, "web-api-x", ready=False))
        services = {"web": (web.pk, web.public_id), "web-api": (web_api.pk, web_api.public_id)}

        assert match_service(state, main_env.namespace, "Pod", "web-api-x", services) == services["web"]

    def test_a_quota_warning_fails_the_service(self, main_env, web):
        state = synced_state()
        state.apply(DEPLOYMENTS, "ADDED", deployment(web, ready=0, replicas=2))
        state.apply(EVENTS, "ADDED", event(
            main_env.namespace, "uid-q", kind="ReplicaSet", name="web-7d9f8b6c5", reason="FailedCreate",
            type_="Warning",
            message='Error creating: pods "web-7d9f8b6c5-q8w2n" is forbidden: exceeded quota: ale, '
                    "requested: memory=512Mi, used: memory=1Gi, limited: memory=1Gi",
        ))

        write_changes(main_env.cluster_id, state, state.take_changes())

        web.refresh_from_db()
        assert web.status == "failed"
        assert "requested: memory=512Mi, used: memory=1Gi, limited: memory=1Gi" in web.status_reason

    def test_a_deleted_service_leaves_its_events(self, main_env, web):
        state = synced_state()
        state.apply(EVENTS, "ADDED", event(main_env.namespace, "uid-1", kind="Deployment", name="web"))
        write_changes(main_env.cluster_id, state, state.take_changes())

        web.delete()

        assert ClusterEvent.objects.get().service is None

    def test_the_events_tab_lists_newest_first(self, main_env, web):
        now = dj_timezone.now()
        state = synced_state()
        for i, minutes in enumerate((30, 5, 50)):
            state.apply(EVENTS, "ADDED", event(main_env.namespace, f"uid-{i}", kind="Deployment", name="web",
                                               last=now - timedelta(minutes=minutes)))
        write_changes(main_env.cluster_id, state, state.take_changes())

        assert [e.uid for e in ClusterEvent.objects.recent(main_env)] == ["uid-1", "uid-0", "uid-2"]


class TestPruning:
    def test_it_drops_events_older_than_the_retention(self, main_env, web, settings):
        settings.EVENT_RETENTION_DAYS = 2
        now = dj_timezone.now()
        state = synced_state()
        ages = {"fresh": timedelta(hours=1), "edge": timedelta(days=2, hours=-1), "old": timedelta(days=2, hours=1),
                "ancient": timedelta(days=30)}
        for uid, age in ages.items():
            state.apply(EVENTS, "ADDED", event(main_env.namespace, uid, kind="Deployment", name="web", last=now - age))
        write_changes(main_env.cluster_id, state, state.take_changes())

        assert prune_events() == 2

        assert set(ClusterEvent.objects.values_list("uid", flat=True)) == {"fresh", "edge"}

    def test_it_follows_the_setting(self, main_env, web, settings):
        settings.EVENT_RETENTION_DAYS = 7
        state = synced_state()
        state.apply(EVENTS, "ADDED", event(main_env.namespace, "five-days", kind="Deployment", name="web",
                                           last=dj_timezone.now() - timedelta(days=5)))
        write_changes(main_env.cluster_id, state, state.take_changes())

        assert prune_events() == 0
        settings.EVENT_RETENTION_DAYS = 3
        assert prune_events() == 1


def test_changes_given_back_are_merged_with_newer_ones():
    state = synced_state()
    state.apply(EVENTS, "ADDED", event("ale-x", "uid-1", kind="Pod", name="a-1-b", count=1))
    taken = state.take_changes()
    state.apply(EVENTS, "MODIFIED", event("ale-x", "uid-1", kind="Pod", name="a-1-b", count=2))

    state.give_back(taken)

    merged = state.take_changes()
    assert merged.events["uid-1"]["count"] == 2
    assert not state.take_changes()
    assert isinstance(merged, Changes)
