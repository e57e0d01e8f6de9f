"""The controller manager's work queues: each controller has its own and they take turns; in each,
a change to what an object asks for is acted on ahead of reports; the periodic resync's keys wait
behind them all. What waits behind still gets its turns."""
from __future__ import annotations

from devcluster.api import Api
from devcluster.controllers.manager import RESYNC_SHARE, ControllerManager, changes_spec
from devcluster.controllers.workqueue import STATUS_SHARE, WorkQueue
from devcluster.store import Change, Store

NAMESPACE = "team"


def manager_with_deployments(count: int) -> ControllerManager:
    store = Store()
    for index in range(count):
        name = f"web-{index}"
        store.buckets.setdefault("deployments.apps", {})[(NAMESPACE, name)] = {
            "metadata": {"namespace": NAMESPACE, "name": name}, "spec": {"replicas": 1},
        }
    return ControllerManager(Api(store))


def drain(manager: ControllerManager) -> list[tuple[str, str, str]]:
    keys = []
    while (key := manager._next_key()) is not None:
        keys.append(key)
    return keys


def test_a_change_goes_ahead_of_the_resync_of_every_deployment():
    manager = manager_with_deployments(100)
    manager._resync_all()
    manager.enqueue("deployment", NAMESPACE, "web-99")  # the user scaled it while the resync waits

    order = drain(manager)

    assert order[0] == ("deployment", NAMESPACE, "web-99")
    # Synced once: the change took the resync's key with it.
    assert order.count(("deployment", NAMESPACE, "web-99")) == 1
    assert {key for key in order if key[0] == "deployment"} == {("deployment", NAMESPACE, f"web-{i}") for i in range(100)}


def test_the_resync_keeps_a_share_of_the_turns_while_changes_keep_coming():
    manager = manager_with_deployments(10)
    manager._resync_all()
    for index in range(RESYNC_SHARE * 3):
        manager.enqueue("schedule", NAMESPACE, f"pod-{index}")

    taken = [manager._next_key() for _ in range((RESYNC_SHARE + 1) * 3)]

    # Every (RESYNC_SHARE + 1)-th turn is the resync's, in the order it enqueued them.
    resynced = [key for key in taken if key[0] == "deployment"]
    assert resynced == [("deployment", NAMESPACE, f"web-{i}") for i in range(3)]
    assert [index for index, key in enumerate(taken) if key[0] == "deployment"] == [
        RESYNC_SHARE * (turn + 1) + turn for turn in range(3)
    ]


def test_a_resync_does_not_push_back_a_change_already_waiting():
    manager = manager_with_deployments(3)
    manager.enqueue("deployment", NAMESPACE, "web-2")
    manager._resync_all()

    order = drain(manager)

    assert order[0] == ("deployment", NAMESPACE, "web-2")
    assert order.count(("deployment", NAMESPACE, "web-2")) == 1


def deployment(name: str, generation: int, ready: int = 0, deleting: bool = False) -> dict:
    meta = {"namespace": NAMESPACE, "name": name, "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"replicas": 3}, "status": {"readyReplicas": ready}}


def test_what_an_object_asks_for_is_told_apart_from_what_it_reports():
    before = deployment("web", 1)
    assert changes_spec(Change(1, "deployments.apps", "ADDED", before, None))
    assert changes_spec(Change(2, "deployments.apps", "MODIFIED", deployment("web", 2), before))
    assert changes_spec(Change(2, "deployments.apps", "MODIFIED", deployment("web", 1, deleting=True), before))
    assert changes_spec(Change(2, "deployments.apps", "DELETED", before, before))
    assert not changes_spec(Change(2, "deployments.apps", "MODIFIED", deployment("web", 1, ready=2), before))


def test_a_stop_goes_ahead_of_a_storm_of_replicasets_reporting_ready_pods():
    manager = manager_with_deployments(0)
    # A rollout's ReplicaSets count their ready pods: each enqueues itself and its Deployment.
    for index in range(300):
        old = {"metadata": {"namespace": NAMESPACE, "name": f"web-{index}-abc", "generation": 1,
                            "ownerReferences": [{"kind": "Deployment", "name": f"web-{index}"}]}}
        counted = {**old, "status": {"readyReplicas": 1}}
        manager.observe(Change(index + 2, "replicasets.apps", "MODIFIED", counted, old))
    # Then a user scales web-7 to zero: a new generation.
    manager.observe(Change(999, "deployments.apps", "MODIFIED", deployment("web-7", 2), deployment("web-7", 1)))

    # The ReplicaSets' queue has its turn, then the Deployments': the scale goes first there.
    assert manager._next_key()[0] == "replicaset"
    assert manager._next_key() == ("deployment", NAMESPACE, "web-7")
    # A report after a scale does not send the key back behind the storm.
    manager.observe(Change(1000, "deployments.apps", "MODIFIED", deployment("web-8", 2), deployment("web-8", 1)))
    manager.observe(Change(1001, "deployments.apps", "MODIFIED", deployment("web-8", 2, ready=1), deployment("web-8", 2)))
    assert manager._next_key()[0] == "replicaset"
    assert manager._next_key() == ("deployment", NAMESPACE, "web-8")
    # Each key once: the storm's own keys for web-7 and web-8 went with them.
    order = drain(manager)
    assert ("deployment", NAMESPACE, "web-7") not in order and ("deployment", NAMESPACE, "web-8") not in order
    assert len([key for key in order if key[0] == "replicaset"]) == 298
    assert len([key for key in order if key[0] == "deployment"]) == 298


def test_a_controller_does_not_wait_behind_another_ones_backlog():
    manager = manager_with_deployments(0)
    # A 300-service import: 900 pods to schedule.
    for index in range(900):
        manager.enqueue("schedule", NAMESPACE, f"pod-{index}", spec=True)
    manager.enqueue("deployment", NAMESPACE, "web-7", spec=True)

    assert [manager._next_key() for _ in range(2)] == [("schedule", NAMESPACE, "pod-0"), ("deployment", NAMESPACE, "web-7")]
    assert len(drain(manager)) == 899


def test_reports_keep_a_share_of_the_turns_while_spec_changes_keep_coming():
    queue = WorkQueue()
    for index in range(3):
        queue.put(("replicaset", NAMESPACE, f"web-{index}"), spec=False)
    for index in range(STATUS_SHARE * 3):
        queue.put(("replicaset", NAMESPACE, f"new-{index}"), spec=True)

    taken = [queue.pop() for _ in range((STATUS_SHARE + 1) * 3)]

    assert [index for index, key in enumerate(taken) if key[2].startswith("web-")] == [
        STATUS_SHARE * (turn + 1) + turn for turn in range(3)
    ]
    assert not queue


def test_every_key_queued_is_synced_once_whatever_the_order_of_changes():
    import random

    rng = random.Random(7)
    manager = manager_with_deployments(30)
    waiting: set[tuple[str, str, str]] = set()
    for _ in range(5000):
        roll = rng.random()
        if roll < 0.45:
            key = (rng.choice(["deployment", "replicaset", "schedule", "ingress"]), NAMESPACE, f"k-{rng.randrange(40)}")
            manager.enqueue(*key, spec=rng.random() < 0.3)
            waiting.add(key)
        elif roll < 0.5:
            manager._resync_all()
            waiting |= {("deployment", NAMESPACE, f"web-{i}") for i in range(30)}
        else:
            key = manager._next_key()
            if key is None:
                assert not waiting
            else:
                assert key in waiting, f"{key} synced but not waiting"
                waiting.remove(key)
        # A controller has a turn exactly while its queue holds keys.
        assert sorted(manager.turns) == sorted(name for name, queue in manager.queues.items() if queue)
    assert set(drain(manager)) == waiting
