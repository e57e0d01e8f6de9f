"""The controller manager's work queue: a change is acted on ahead of the periodic resync's keys,
which still get their turns."""
from __future__ import annotations

from devcluster.api import Api
from devcluster.controllers.manager import RESYNC_SHARE, ControllerManager
from devcluster.store import Store

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
