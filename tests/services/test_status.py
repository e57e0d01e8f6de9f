"""The card's status derived from Deployments, Pods and Events shaped like kube-apiserver's."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

from services.status import ObservedStatus, derive_status

NS = "ale-k3xq9w2m"
LABELS = {
    "app.kubernetes.io/managed-by": "ale",
    "ale.dev/environment": "k3xq9w2m",
    "ale.dev/service": "p8vd2hq4",
}


def make_deployment(*, replicas: int = 2, generation: int = 1, observed: int = 1) -> dict:
    """A Deployment as `GET /apis/apps/v1/namespaces/{ns}/deployments/web` returns it."""
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": "6c1e0a9e-3f0f-4c57-9a0e-1b1d2f6c2a11",
            "resourceVersion": "48213",
            "generation": generation,
            "creationTimestamp": "2025-11-26T09:12:40Z",
            "labels": dict(LABELS),
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"ale.dev/service": "p8vd2hq4"}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {"observedGeneration": observed},
    }


def make_pod(
    name: str = "web-7d9f8b6c5-x2x4z",
    *,
    image: str = "nginx:1.27",
    ready: bool = False,
    state: dict | None = None,
    restarts: int = 0,
    phase: str = "Pending",
    terminating: bool = False,
    conditions: list | None = None,
) -> dict:
    """A Pod as the API returns it, with one container `web` in the given state."""
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": "web-7d9f8b6c5-",
            "namespace": NS,
            "uid": f"uid-{name}",
            "resourceVersion": "48230",
            "creationTimestamp": "2025-11-26T09:12:41Z",
            "labels": {**LABELS, "pod-template-hash": "7d9f8b6c5"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5", "uid": "rs-uid",
                 "controller": True, "blockOwnerDeletion": True}
            ],
        },
        "spec": {
            "containers": [{"name": "web", "image": image, "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always",
            "nodeName": "node-1",
        },
        "status": {
            "phase": phase,
            "conditions": conditions
            if conditions is not None
            else [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-11-26T09:12:41Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2025-11-26T09:12:41Z"},
                {"type": "ContainersReady", "status": "True" if ready else "False",
                 "lastTransitionTime": "2025-11-26T09:12:44Z"},
                {"type": "Ready", "status": "True" if ready else "False",
                 "lastTransitionTime": "2025-11-26T09:12:44Z"},
            ],
            "hostIP": "10.0.0.4",
            "podIP": "10.244.1.17",
            "startTime": "2025-11-26T09:12:41Z",
            "containerStatuses": [
                {
                    "name": "web",
                    "state": state or {"running": {"startedAt": "2025-11-26T09:12:43Z"}},
                    "lastState": {},
                    "ready": ready,
                    "restartCount": restarts,
                    "image": image,
                    "imageID": "",
                    "started": ready,
                }
            ],
        },
    }
    if terminating:
        pod["metadata"]["deletionTimestamp"] = "2025-11-26T09:20:00Z"
        pod["metadata"]["deletionGracePeriodSeconds"] = 30
    return pod


def make_event(reason: str, message: str, *, kind: str = "ReplicaSet", name: str = "web-7d9f8b6c5") -> dict:
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": f"{name}.1879c4e0d1b2a3f4", "namespace": NS, "uid": "ev-1",
                     "resourceVersion": "48240", "creationTimestamp": "2025-11-26T09:12:41Z"},
        "involvedObject": {"kind": kind, "namespace": NS, "name": name, "apiVersion": "apps/v1"},
        "reason": reason,
        "message": message,
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": "2025-11-26T09:12:41Z",
        "lastTimestamp": "2025-11-26T09:13:02Z",
        "count": 4,
        "type": "Warning",
        "reportingComponent": "replicaset-controller",
    }


def derive(
    deployment: dict | None,
    pods: list[dict] = (),  # type: ignore[assignment]
    events: list[dict] = (),  # type: ignore[assignment]
    *,
    desired: str = "running",
    replicas: int = 2,
    current: str = "deploying",
    current_reason: str = "",
) -> ObservedStatus:
    return derive_status(
        current_status=current,
        current_reason=current_reason,
        desired_state=desired,
        replicas=replicas,
        deployment=deployment,
        pods=pods,
        events=events,
    )


IMAGE_PULL_WAITING = {
    "waiting": {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "registry.example.com/does-not-exist:1"',
    }
}
ERR_IMAGE_PULL_WAITING = {
    "waiting": {
        "reason": "ErrImagePull",
        "message": "rpc error: code = NotFound desc = failed to pull and unpack image",
    }
}
CRASH_WAITING = {
    "waiting": {
        "reason": "CrashLoopBackOff",
        "message": "back-off 40s restarting failed container=web pod=web-7d9f8b6c5-x2x4z_ale-k3xq9w2m(uid)",
    }
}
QUOTA_MESSAGE = (
    'Error creating: pods "web-7d9f8b6c5-q8w2n" is forbidden: exceeded quota: ale-allocation, '
    "requested: cpu=500m, used: cpu=1500m, limited: cpu=2"
)


class TestRunning:
    def test_it_is_running_when_every_replica_is_updated_and_ready(self) -> None:
        deployment = make_deployment(replicas=2)
        deployment["status"].update(replicas=2, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
        pods = [make_pod("web-7d9f8b6c5-a", ready=True, phase="Running"),
                make_pod("web-7d9f8b6c5-b", ready=True, phase="Running")]

        assert derive(deployment, pods) == ObservedStatus("running", "", 2)

    def test_it_is_deploying_while_the_controller_has_not_seen_the_new_spec(self) -> None:
        deployment = make_deployment(replicas=2, generation=3, observed=2)
        deployment["status"].update(replicas=2, updatedReplicas=2, readyReplicas=2)

        status = derive(deployment, [make_pod(ready=True), make_pod("web-7d9f8b6c5-b", ready=True)])

        assert status.status == "deploying"

    def test_it_is_deploying_while_old_pods_are_still_there(self) -> None:
        # A rolling update: the new pod is ready, the old one has not gone yet.
        deployment = make_deployment(replicas=1, generation=2, observed=2)
        deployment["status"].update(replicas=2, updatedReplicas=1, readyReplicas=1, unavailableReplicas=1)

        status = derive(deployment, [make_pod(ready=True)], replicas=1)

        assert status == ObservedStatus("deploying", "1 of 1 replica ready.", 1)

    def test_it_is_deploying_when_the_user_asked_for_more_replicas_than_the_deployment_has(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1, readyReplicas=1)

        status = derive(deployment, [make_pod(ready=True)], replicas=2)

        assert status == ObservedStatus("deploying", "1 of 2 replicas ready.", 1)


class TestDeploying:
    def test_it_reports_progress(self) -> None:
        deployment = make_deployment(replicas=2)
        deployment["status"].update(replicas=2, updatedReplicas=2, readyReplicas=1, unavailableReplicas=1)
        pods = [
            make_pod("web-7d9f8b6c5-a", ready=True, phase="Running"),
            make_pod("web-7d9f8b6c5-b", state={"waiting": {"reason": "ContainerCreating"}}),
        ]

        assert derive(deployment, pods) == ObservedStatus("deploying", "1 of 2 replicas ready.", 1)

    def test_it_waits_for_the_deployment_to_appear(self) -> None:
        status = derive(None, [])

        assert status.status == "deploying"
        assert status.ready_replicas == 0

    def test_it_keeps_a_failure_recorded_by_the_task_when_there_is_no_deployment(self) -> None:
        status = derive(None, [], current="failed", current_reason="The cluster refused the manifest.")

        assert status == ObservedStatus("failed", "The cluster refused the manifest.", 0)

    def test_it_says_why_a_pod_is_not_scheduled(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1, unavailableReplicas=1)
        pod = make_pod(
            conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": "0/3 nodes are available: 3 Insufficient cpu."}]
        )
        pod["status"].pop("containerStatuses")

        status = derive(deployment, [pod], replicas=1)

        assert status.status == "deploying"
        assert status.reason == "0 of 1 replica ready. Waiting for a node with room for it: 0/3 nodes are available: 3 Insufficient cpu."

    def test_it_fails_when_the_progress_deadline_passed(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(
            replicas=1, updatedReplicas=1, unavailableReplicas=1,
            conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                         "message": 'ReplicaSet "web-7d9f8b6c5" has timed out progressing.'}],
        )

        assert derive(deployment, [make_pod()], replicas=1).status == "failed"


class TestFailed:
    def test_it_fails_when_the_image_cannot_be_pulled(self) -> None:
        image = "registry.example.com/does-not-exist:1"
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1, unavailableReplicas=1)

        status = derive(deployment, [make_pod(image=image, state=IMAGE_PULL_WAITING)], replicas=1)

        assert status == ObservedStatus(
            "failed",
            f"Image {image} could not be pulled: it does not exist or the cluster has no access to it.",
            0,
        )

    def test_it_fails_on_err_image_pull_and_invalid_names_too(self) -> None:
        deployment = make_deployment(replicas=1)
        invalid = {"waiting": {"reason": "InvalidImageName", "message": 'couldn\'t parse image name "Bad:Image"'}}
        for state in (ERR_IMAGE_PULL_WAITING, invalid):
            status = derive(deployment, [make_pod(image="Bad:Image", state=state)], replicas=1)
            assert status.status == "failed"
            assert status.reason.startswith("Image Bad:Image could not be pulled")

    def test_it_fails_a_rollout_whose_new_image_cannot_be_pulled_while_the_old_pod_serves(self) -> None:
        deployment = make_deployment(replicas=1, generation=2, observed=2)
        deployment["status"].update(replicas=2, updatedReplicas=1, readyReplicas=1, availableReplicas=1)
        old = make_pod("web-5c8d7f9b4-old", ready=True, phase="Running")
        new = make_pod("web-7d9f8b6c5-new", image="nginx:does-not-exist", state=IMAGE_PULL_WAITING)

        status = derive(deployment, [old, new], replicas=1)

        assert status.status == "failed"
        assert "nginx:does-not-exist" in status.reason
        assert status.ready_replicas == 1

    def test_it_fails_when_the_container_keeps_crashing(self) -> None:
        deployment = make_deployment(replicas=2)
        deployment["status"].update(replicas=2, updatedReplicas=2, unavailableReplicas=2)
        pods = [
            make_pod("web-7d9f8b6c5-a", state=CRASH_WAITING, restarts=3, phase="Running"),
            make_pod("web-7d9f8b6c5-b", state=CRASH_WAITING, restarts=5, phase="Running"),
        ]

        status = derive(deployment, pods)

        assert status == ObservedStatus(
            "failed", "The container keeps crashing (restarted 5 times). Open the logs to see why.", 0
        )

    def test_it_names_a_container_that_cannot_start(self) -> None:
        deployment = make_deployment(replicas=1)
        state = {"waiting": {"reason": "CreateContainerConfigError",
                             "message": 'couldn\'t find key DATABASE_URL in Secret ale-k3xq9w2m/ale-env'}}

        status = derive(deployment, [make_pod(state=state)], replicas=1)

        assert status.status == "failed"
        assert status.reason == "The container could not start: couldn't find key DATABASE_URL in Secret ale-k3xq9w2m/ale-env"

    def test_it_fails_when_the_quota_refuses_pods_as_an_event_says(self) -> None:
        deployment = make_deployment(replicas=2)
        deployment["status"].update(replicas=1, updatedReplicas=1, readyReplicas=1)
        pods = [make_pod(ready=True, phase="Running")]

        status = derive(deployment, pods, [make_event("FailedCreate", QUOTA_MESSAGE)])

        assert status.status == "failed"
        assert status.reason.startswith("The environment's resource allocation is used up")
        assert "requested: cpu=500m, used: cpu=1500m, limited: cpu=2" in status.reason
        assert status.ready_replicas == 1

    def test_it_fails_when_the_quota_refuses_pods_as_the_deployment_condition_says(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(
            conditions=[{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                         "message": QUOTA_MESSAGE}]
        )

        assert derive(deployment, [], replicas=1).status == "failed"

    def test_it_ignores_an_old_quota_event_once_every_pod_exists(self) -> None:
        deployment = make_deployment(replicas=2)
        deployment["status"].update(replicas=2, updatedReplicas=2, readyReplicas=1)
        pods = [make_pod("web-7d9f8b6c5-a", ready=True), make_pod("web-7d9f8b6c5-b")]

        status = derive(deployment, pods, [make_event("FailedCreate", QUOTA_MESSAGE)])

        assert status == ObservedStatus("deploying", "1 of 2 replicas ready.", 1)

    def test_it_ignores_other_failed_create_events(self) -> None:
        deployment = make_deployment(replicas=1)
        event = make_event("FailedCreate", 'Error creating: pods "web-x" is forbidden: error looking up service account')

        assert derive(deployment, [], [event], replicas=1).status == "deploying"

    def test_it_ignores_a_terminating_pod_that_crashed(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1)
        pod = make_pod(state=CRASH_WAITING, restarts=4, terminating=True)

        assert derive(deployment, [pod], replicas=1).status == "deploying"


class TestCrashLoopBetweenCrashes:
    """Between two back-offs a crash-looping container runs (and may be ready) for a moment."""

    def running_again(self, started: str) -> dict:
        pod = make_pod(ready=True, phase="Running", restarts=3,
                       state={"running": {"startedAt": started}})
        pod["status"]["containerStatuses"][0]["lastState"] = {
            "terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2025-11-26T09:12:50Z",
                           "finishedAt": "2025-11-26T09:12:51Z"}
        }
        return pod

    def rolled_out(self) -> dict:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1, readyReplicas=1)
        return deployment

    def test_it_stays_failed_while_the_restart_is_recent(self) -> None:
        now = datetime(2025, 11, 26, 9, 13, 10, tzinfo=timezone.utc)

        status = derive_status(
            current_status="failed", current_reason="The container keeps crashing (restarted 2 times).",
            desired_state="running", replicas=1, deployment=self.rolled_out(),
            pods=[self.running_again("2025-11-26T09:13:00Z")], now=now,
        )

        assert status == ObservedStatus(
            "failed", "The container keeps crashing (restarted 3 times). Open the logs to see why.", 1
        )

    def test_it_runs_once_the_container_stayed_up(self) -> None:
        now = datetime(2025, 11, 26, 9, 15, 0, tzinfo=timezone.utc)

        status = derive_status(
            current_status="failed", current_reason="The container keeps crashing (restarted 2 times).",
            desired_state="running", replicas=1, deployment=self.rolled_out(),
            pods=[self.running_again("2025-11-26T09:13:00Z")], now=now,
        )

        assert status.status == "running"

    def test_a_first_start_after_an_old_crash_does_not_fail_a_deploying_service(self) -> None:
        now = datetime(2025, 11, 26, 9, 13, 10, tzinfo=timezone.utc)

        status = derive_status(
            current_status="deploying", current_reason="", desired_state="running", replicas=1,
            deployment=self.rolled_out(), pods=[self.running_again("2025-11-26T09:13:00Z")], now=now,
        )

        assert status.status == "running"


class TestStopped:
    def test_it_is_stopped_without_pods(self) -> None:
        deployment = make_deployment(replicas=0)

        assert derive(deployment, [], desired="stopped") == ObservedStatus("stopped", "", 0)
        assert derive(None, [], desired="stopped") == ObservedStatus("stopped", "", 0)

    def test_it_is_stopping_while_pods_remain(self) -> None:
        deployment = make_deployment(replicas=0, generation=2, observed=2)
        deployment["status"].update(replicas=1, readyReplicas=1)
        pods = [make_pod(ready=True, phase="Running", terminating=True)]

        status = derive(deployment, pods, desired="stopped")

        assert status == ObservedStatus("stopping", "Stopping 1 replica.", 1)


class TestTaskOwnedStatuses:
    def test_it_leaves_building_and_deleting_alone(self) -> None:
        deployment = make_deployment(replicas=1)
        deployment["status"].update(replicas=1, updatedReplicas=1, readyReplicas=1)
        pods = [make_pod(ready=True, phase="Running")]

        for current in ("building", "deleting"):
            status = derive(deployment, pods, replicas=1, current=current, current_reason="Step 3 of 9")
            assert status == ObservedStatus(current, "Step 3 of 9", 1)

    def test_it_does_not_change_its_input(self) -> None:
        deployment = make_deployment(replicas=1)
        pods = [make_pod(state=CRASH_WAITING, restarts=2)]
        before = copy.deepcopy((deployment, pods))

        derive(deployment, pods, replicas=1)

        assert (deployment, pods) == before


class TestGeneration:
    """A Deployment from before the newest deploy says nothing about the new revision."""

    def rolled_out(self, generation: str) -> dict:
        return {
            "metadata": {"generation": 3, "annotations": {"ale.dev/generation": generation}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 3, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
        }

    def test_it_keeps_deploying_until_the_new_spec_is_applied(self):
        status = derive_status(current_status="deploying", current_reason="", desired_state="running", replicas=1,
                               deployment=self.rolled_out("4"), pods=[], generation=5)
        assert status.status == "deploying"
        assert status.reason == "Waiting for the cluster to receive the new spec."

    def test_it_reports_running_once_the_spec_of_its_generation_runs(self):
        status = derive_status(current_status="deploying", current_reason="", desired_state="running", replicas=1,
                               deployment=self.rolled_out("5"), pods=[], generation=5)
        assert status.status == "running"

    def test_it_keeps_a_refusal_of_the_task(self):
        status = derive_status(current_status="failed", current_reason="The cluster refused the manifest.",
                               desired_state="running", replicas=1, deployment=self.rolled_out("4"), pods=[], generation=5)
        assert status == ("failed", "The cluster refused the manifest.", 1)
