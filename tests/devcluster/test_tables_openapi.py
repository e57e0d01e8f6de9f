"""The pure parts of the devcluster's tables and OpenAPI: printer cells and schema walks, no server."""
from __future__ import annotations

import time

import pytest

from devcluster import kinds, openapi, tables
from devcluster.kinds import iso
from devcluster.server import VERSION

POD = kinds.kind_by_name("v1", "Pod")
JOB = kinds.kind_by_name("batch/v1", "Job")
DEPLOYMENT = kinds.kind_by_name("apps/v1", "Deployment")


@pytest.mark.parametrize("seconds, shown", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (600, "10m"),
    (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (49 * 3600, "2d1h"), (8 * 86400, "8d"), (2 * 365 * 86400, "2y"), (2 * 365 * 86400 + 86400, "2y1d"),
    (9 * 365 * 86400, "9y"),
])
def test_it_spells_ages_as_kubectl_does(seconds, shown):
    assert tables.human_duration(seconds) == shown


@pytest.mark.parametrize("accept, version", [
    ("application/json", None),
    ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
     "application/json", "v1"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "v1beta1"),
    ("application/json, application/json;as=Table;v=v1;g=meta.k8s.io", None),
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
    ("", None),
])
def test_it_answers_a_table_only_when_the_client_prefers_one(accept, version):
    assert tables.accepted_table_version(accept) == version


def _pod(**status: object) -> dict:
    return {"metadata": {"name": "web-1", "creationTimestamp": iso(time.time() - 2 * 86400)},
            "spec": {"containers": [{"name": "app"}], "nodeName": "devcluster"},
            "status": {"phase": "Running", **status}}


def test_it_shows_a_crash_looping_pod_with_its_restarts_and_when():
    # Ages whose spelling stays the same for a minute, whatever the machine load.
    finished = iso(time.time() - 3 * 3600)
    pod = _pod(containerStatuses=[{"name": "app", "ready": False, "restartCount": 4,
                                   "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                   "lastState": {"terminated": {"exitCode": 1, "finishedAt": finished}}}],
               podIPs=[{"ip": "10.244.0.7"}])
    cells = tables.table(POD, [pod], table_version="v1")["rows"][0]["cells"]
    assert cells == ["web-1", "0/1", "CrashLoopBackOff", "4 (3h ago)", "2d", "10.244.0.7", "devcluster",
                     "<none>", "<none>"]


def test_it_shows_init_containers_terminating_pods_and_completed_ones():
    initializing = _pod(phase="Pending", initContainerStatuses=[
        {"name": "migrate", "restartCount": 0, "state": {"running": {}}}])
    initializing["spec"]["initContainers"] = [{"name": "migrate"}]
    terminating = _pod(containerStatuses=[{"name": "app", "ready": True, "restartCount": 0,
                                           "state": {"running": {}}}])
    terminating["metadata"]["deletionTimestamp"] = iso(time.time())
    done = _pod(phase="Succeeded", containerStatuses=[{"name": "app", "ready": False, "restartCount": 0, "state": {
        "terminated": {"exitCode": 0, "reason": "Completed"}}}])
    rows = tables.table(POD, [initializing, terminating, done], table_version="v1")["rows"]
    assert [r["cells"][1:3] for r in rows] == [["0/1", "Init:0/1"], ["1/1", "Terminating"], ["0/1", "Completed"]]
    assert rows[2]["conditions"][0]["reason"] == "Succeeded"


def test_it_shows_a_jobs_status_completions_and_duration():
    start = time.time() - 2 * 86400
    job = {"metadata": {"name": "build", "creationTimestamp": iso(start)},
           "spec": {"completions": 1, "selector": {"matchLabels": {"job": "build"}},
                    "template": {"spec": {"containers": [{"name": "build", "image": "busybox:1.36"}]}}},
           "status": {"succeeded": 1, "startTime": iso(start), "completionTime": iso(start + 65),
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    assert tables.table(JOB, [job], table_version="v1")["rows"][0]["cells"] == [
        "build", "Complete", "1/1", "65s", "2d", "build", "busybox:1.36", "job=build"]


def test_it_documents_every_served_kind_the_upstream_schemas_know():
    docs = openapi.OpenApi(VERSION)
    index = docs.v3_index()["paths"]
    for kind in kinds.KINDS:
        if docs.body_name(kind) is None:
            continue
        gv = "api/v1" if not kind.group else f"apis/{kind.group}/{kind.version}"
        assert gv in index, kind
    assert docs.body_name(DEPLOYMENT) == "io.k8s.api.apps.v1.Deployment"


def test_it_finds_unknown_fields_but_not_patch_directives():
    docs = openapi.OpenApi(VERSION)
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}],
                                            "containers": [{"name": "app", "imagePullPolicy": "Always",
                                                            "colour": "blue"}]}},
                      "strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
             "metadata": {"labels": {"any": "label"}, "annotations": {"any": "thing"}}}
    assert docs.unknown_fields(DEPLOYMENT, patch) == ["spec.template.spec.containers[0].colour"]
    assert docs.unknown_fields(DEPLOYMENT, patch, keyed=True) == ['.spec.template.spec.containers[name="app"].colour']
    docs.prune(DEPLOYMENT, patch)
    assert patch["spec"]["template"]["spec"]["containers"] == [{"name": "app", "imagePullPolicy": "Always"}]
