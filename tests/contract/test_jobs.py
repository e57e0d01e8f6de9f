"""Build Jobs: they complete or fail, and their pods go with them."""
from __future__ import annotations

from kubernetes import client

from tests.contract.support import wait_for


def _job(name: str, script: str, backoff_limit: int = 0, **spec: object) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"ale.dev/build": name}},
            "spec": {"backoffLimit": backoff_limit, **spec, "template": {"metadata": {"labels": {"ale.dev/build": name}},
                     "spec": {"restartPolicy": "Never", "containers": [
                         {"name": "build", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}}}


def _condition(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    job = batch.read_namespaced_job_status(name, namespace)
    for c in job.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.type
    return None


def test_it_completes_a_job(kube_api, namespace):
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    created = batch.create_namespaced_job(namespace, _job("build-1", "echo building; echo done"))
    assert created.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == created.metadata.uid
    assert wait_for(lambda: _condition(batch, namespace, "build-1"), timeout=120, message="job end") == "Complete"
    job = batch.read_namespaced_job_status("build-1", namespace)
    assert job.status.succeeded == 1 and not job.status.failed and job.status.completion_time
    pods = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=build-1").items
    assert [p.status.phase for p in pods] == ["Succeeded"]
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 0


def test_it_fails_a_job_past_its_backoff_limit(kube_api, namespace):
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, _job("build-2", "echo build-fails; exit 1"))
    assert wait_for(lambda: _condition(batch, namespace, "build-2"), timeout=120, message="job end") == "Failed"
    job = batch.read_namespaced_job_status("build-2", namespace)
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    assert job.status.failed == 1 and not job.status.succeeded
    pods = core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=build-2").items
    assert [p.status.phase for p in pods] == ["Failed"]
    assert pods[0].status.container_statuses[0].state.terminated.exit_code == 1


def test_it_deletes_a_jobs_pods_with_background_propagation(kube_api, namespace):
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, _job("build-3", "echo hi"))
    wait_for(lambda: core.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=build-3").items,
             timeout=60, message="job pod")
    batch.delete_namespaced_job("build-3", namespace, propagation_policy="Background")
    wait_for(lambda: not core.list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=build-3").items, timeout=90, message="pods removed")
