"""Injected faults surface in the official client exactly as the real failures would."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


@pytest.fixture(autouse=True)
def clean_faults(devcluster):
    devcluster.faults.clear()
    yield
    devcluster.faults.clear()


def test_it_throttles_the_next_writes_with_retry_after(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    devcluster.faults.throttle(retry_after=3, count=2, method="POST", path=r"/namespaces/default/configmaps$")
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            core.create_namespaced_config_map("default", {"metadata": {"generateName": "t-"}})
        assert info.value.status == 429
        assert info.value.headers["Retry-After"] == "3"
        body = json.loads(info.value.body)
        assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 3
    core.create_namespaced_config_map("default", {"metadata": {"generateName": "t-"}})


def test_it_lets_urllib3_retry_throttled_reads_after_the_delay(devcluster, devcluster_api):
    # urllib3's default Retry honours Retry-After on 429 for GET, so reads recover by themselves.
    core = client.CoreV1Api(devcluster_api)
    devcluster.faults.throttle(retry_after=1, count=1, method="GET", path=r"/namespaces/default/configmaps$")
    start = time.monotonic()
    core.list_namespaced_config_map("default")
    assert time.monotonic() - start >= 1
    assert devcluster.faults.rules() == []


def test_it_answers_500_for_the_matching_method_only(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    devcluster.faults.error(500, method="POST", path="/configmaps", count=1)
    core.list_namespaced_config_map("default")
    with pytest.raises(ApiException) as info:
        core.create_namespaced_config_map("default", {"metadata": {"generateName": "f-"}})
    assert info.value.status == 500 and json.loads(info.value.body)["reason"] == "InternalError"
    core.create_namespaced_config_map("default", {"metadata": {"generateName": "f-"}})


def test_it_fails_a_share_of_requests(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    devcluster.faults.error(503, share=0.5, path="/namespaces/default/secrets")
    outcomes = []
    for _ in range(40):
        try:
            core.list_namespaced_secret("default")
            outcomes.append(True)
        except ApiException as exc:
            assert exc.status == 503
            outcomes.append(False)
    assert 0 < outcomes.count(False) < 40


def test_it_adds_latency(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    devcluster.faults.latency(0.4, path="/api/v1/namespaces/default$")
    start = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    core.list_namespaced_config_map("default")
    assert time.monotonic() - start < 0.4


def test_it_rejects_writes_with_conflict(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    made = core.create_namespaced_config_map("default", {"metadata": {"generateName": "c-"}})
    devcluster.faults.conflict(count=1, path="/configmaps/")
    core.read_namespaced_config_map(made.metadata.name, "default")
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map(made.metadata.name, "default", {"data": {"a": "1"}})
    assert info.value.status == 409
    assert json.loads(info.value.body)["message"] == (
        f'Operation cannot be fulfilled on configmaps "{made.metadata.name}": the object has been modified; '
        "please apply your changes to the latest version and try again")
    core.patch_namespaced_config_map(made.metadata.name, "default", {"data": {"a": "1"}})


def _watch_in_thread(core: client.CoreV1Api) -> tuple[threading.Thread, dict]:
    outcome: dict = {"events": 0}
    started = threading.Event()

    def run() -> None:
        w = watch.Watch()
        try:
            for _ in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=60):
                outcome["events"] += 1
                started.set()
            outcome["ended"] = True
        except Exception as exc:  # the abrupt case
            outcome["error"] = exc
        started.set()

    core.create_namespaced_config_map("default", {"metadata": {"generateName": "w-"}})
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread, outcome


def test_it_drops_open_watches(devcluster, devcluster_api):
    thread, outcome = _watch_in_thread(client.CoreV1Api(devcluster_api))
    assert devcluster.faults.drop_watches() >= 1
    thread.join(5)
    assert not thread.is_alive() and outcome.get("ended")


def test_it_can_reset_watch_connections(devcluster, devcluster_api):
    thread, outcome = _watch_in_thread(client.CoreV1Api(devcluster_api))
    assert devcluster.faults.drop_watches(abrupt=True) >= 1
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), urllib3.exceptions.ProtocolError)


def test_it_takes_faults_over_http(devcluster, devcluster_api):
    def admin(body: dict, token: str = devcluster.token) -> dict:
        request = urllib.request.Request(f"{devcluster.url}/_devcluster/faults", data=json.dumps(body).encode(),
                                         method="POST", headers={"Authorization": f"Bearer {token}",
                                                                 "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=5).read())

    with pytest.raises(urllib.error.HTTPError) as info:
        admin({"status": 500}, token="wrong")
    assert info.value.code == 401
    rule = admin({"status": 429, "retry_after": 2, "count": 1, "method": "POST", "path": "/api/v1/namespaces$"})
    assert rule["id"] >= 1
    core = client.CoreV1Api(devcluster_api)
    with pytest.raises(ApiException) as exc:
        core.create_namespace({"metadata": {"generateName": "http-fault-"}})
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "2"
    core.create_namespace({"metadata": {"generateName": "http-fault-"}})
    admin({"latency": 5, "path": "/never"})
    assert len(admin({"action": "list"})["rules"]) == 1
    admin({"action": "clear"})
    assert admin({"action": "list"})["rules"] == []


def test_it_logs_every_write_in_order_and_no_read(devcluster, devcluster_api):
    core = client.CoreV1Api(devcluster_api)
    devcluster.writes.clear()
    created = core.create_namespaced_config_map("default", {"metadata": {"generateName": "w-"}})
    core.list_namespaced_config_map("default")
    core.delete_namespaced_config_map(created.metadata.name, "default")
    path = "/api/v1/namespaces/default/configmaps"
    assert devcluster.writes.log() == [("POST", path, 201), ("DELETE", f"{path}/{created.metadata.name}", 200)]

    def admin(method: str) -> dict:
        request = urllib.request.Request(f"{devcluster.url}/_devcluster/writes", method=method,
                                         headers={"Authorization": f"Bearer {devcluster.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    assert admin("GET")["count"] == 2
    assert admin("DELETE") == {"cleared": 2}
    assert admin("GET") == {"count": 0, "writes": []}
