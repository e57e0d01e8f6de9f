"""Pod logs through the official kubernetes client, against a minimal aiohttp app."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web
from kubernetes import client, watch
from kubernetes.watch.watch import iter_resp_lines
from kubernetes.client.rest import ApiException

from devcluster.podlogs import job_outcome, lines_between, rfc3339nano
from devcluster.runtime_types import ContainerRun

NS = "default"
TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$")
SEQ = re.compile(r"loggen seq=(\d+) ")


class LogServer:
    """Serves /log from a dict of pod name → runs; None marks a deleted pod."""

    def __init__(self) -> None:
        self.pods: dict[str, list[ContainerRun] | None] = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from devcluster.podlogs import serve_log

        async def handler(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            return await serve_log(request, lambda: self.pods.get(name))

        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", handler)
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        # aiohttp's TCPSite has no public way to say which port 0 became (a library internal).
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "LogServer":
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[LogServer]:
    srv = LogServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: LogServer) -> Iterator[client.CoreV1Api]:
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.port}")
    with client.ApiClient(cfg) as api_client:
        yield client.CoreV1Api(api_client)


def run_of(image: str, *, ago: float = 30.0, lasts: float | None = None, env: dict | None = None,
           pod: str = "web-1", is_job: bool = False, exit_code: int | None = None,
           args: list[str] | None = None) -> ContainerRun:
    start = time.time() - ago
    return ContainerRun(pod=pod, container="app", image=image, env=env or {}, args=args or ["serve"],
                        started_at=start, finished_at=None if lasts is None else start + lasts,
                        exit_code=exit_code, is_job=is_job)


def read(api: client.CoreV1Api, pod: str, **kw) -> str:
    return api.read_namespaced_pod_log(pod, NS, container="app", **kw)


def raw_get(server: LogServer, pod: str, query: str) -> tuple[int, bytes]:
    """Parameters the official client does not expose (sinceTime) or would refuse to send."""
    url = f"http://127.0.0.1:{server.port}/api/v1/namespaces/{NS}/pods/{pod}/log?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def status_of(err: ApiException) -> dict:
    return json.loads(err.body)


def test_plain_read_is_the_run_output(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("ghcr.io/acme/shop:1.2", ago=20, lasts=15, env={"PORT": "9000", "DB_PASSWORD": "hunter2"})
    server.pods["shop"] = [run]
    text = read(api, "shop")
    expected = [s for _, s in lines_between(run, run.started_at - 1, run.finished_at + 1)]
    assert text.splitlines() == expected
    assert "service started on :9000" in text
    assert "hunter2" not in text  # apps mask secrets they print
    assert "\x1b[32mINFO" in text  # the default app colours its levels
    assert "heartbeat ok" in expected[-3] and "shutting down" in expected[-2]


def test_content_type_is_text_plain(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["ct"] = [run_of("nginx:1.27", ago=5)]
    resp = api.read_namespaced_pod_log("ct", NS, _preload_content=False)
    assert resp.headers["Content-Type"] == "text/plain"
    assert b"[notice] 1#1: start worker processes" in resp.data


def test_nginx_access_lines_every_two_seconds(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["ngx"] = [run_of("nginx:1.27", ago=21)]
    lines = read(api, "ngx", timestamps=True).splitlines()
    access = [TS.match(l) for l in lines if '"GET ' in l]
    assert len(access) == 10
    stamps = [datetime.fromisoformat(m.group(1)[:26] + "+00:00") for m in access]
    assert all(b - a == timedelta(seconds=2) for a, b in zip(stamps, stamps[1:]))
    assert '"GET / HTTP/1.1" 200 615 "-" "kube-probe/1.31"' in "\n".join(lines)


def test_tail_lines(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("loggen", ago=10, env={"LOG_RATE": "50"})
    server.pods["tail"] = [run]
    lines = read(api, "tail", tail_lines=7).splitlines()
    assert len(lines) == 7
    seqs = [int(SEQ.match(l).group(1)) for l in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 7))
    assert seqs[-1] >= 499  # 10 s at 50 lines/s
    assert read(api, "tail", tail_lines=0) == ""


def test_since_seconds_and_since_time(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["since"] = [run_of("loggen", ago=30, env={"LOG_RATE": "10"})]
    before = time.time()
    lines = read(api, "since", since_seconds=5, timestamps=True).splitlines()
    assert 45 <= len(lines) <= 55
    first = datetime.fromisoformat(TS.match(lines[0]).group(1)[:26] + "+00:00").timestamp()
    assert first >= before - 5.01
    since = datetime.fromtimestamp(before - 3, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, body = raw_get(server, "since", f"sinceTime={since}&timestamps=true")
    assert code == 200
    lines = body.decode().splitlines()
    floor = datetime.fromisoformat(since.replace("Z", "+00:00"))
    assert lines and all(datetime.fromisoformat(TS.match(l).group(1)[:26] + "+00:00") >= floor for l in lines)
    assert 25 <= len(lines) <= 45


def test_timestamps_are_rfc3339nano_of_the_line(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("ghcr.io/acme/api:2", ago=9, lasts=8)
    server.pods["ts"] = [run]
    got = [TS.match(l).groups() for l in read(api, "ts", timestamps=True).splitlines()]
    want = [(rfc3339nano(int(round(t * 1e9))), s) for t, s in
            lines_between(run, run.started_at, run.finished_at + 1)]
    assert len(got) == len(want)
    assert [s for _, s in got] == [s for _, s in want]
    for (gt, _), (wt, _) in zip(got, want):
        assert abs(datetime.fromisoformat(gt[:26] + "+00:00") - datetime.fromisoformat(wt[:26] + "+00:00")) \
            < timedelta(microseconds=2)


def test_previous_shows_why_it_crashed(server: LogServer, api: client.CoreV1Api) -> None:
    first = run_of("ghcr.io/acme/crash:1", ago=40, lasts=6, exit_code=1, env={"DATABASE_URL": "postgres://pg:5432/shop"})
    second = run_of("ghcr.io/acme/crash:1", ago=10, env={"DATABASE_URL": "postgres://pg:5432/shop"})
    server.pods["crashy"] = [first, second]
    prev = read(api, "crashy", previous=True).splitlines()
    assert prev[-1] == "ConnectionError: could not connect to postgres://pg:5432/shop: connection refused"
    assert "Traceback (most recent call last):" in prev
    current = read(api, "crashy")
    assert "Traceback" not in current and "starting crash" in current


def test_previous_during_crash_loop_back_off(server: LogServer, api: client.CoreV1Api) -> None:
    # No new run yet while the container waits to restart: the crashed run is the previous one.
    crashed = run_of("crash:1", ago=5, lasts=1, exit_code=1, pod="waiting")
    server.pods["waiting"] = [crashed]
    assert read(api, "waiting", previous=True).splitlines()[-1].startswith("ConnectionError:")
    assert read(api, "waiting") == read(api, "waiting", previous=True)
    # A Job's container that finished is terminated for good: nothing before it.
    server.pods["done"] = [run_of("kaniko", ago=5, lasts=2, exit_code=0, pod="done", is_job=True)]
    with pytest.raises(ApiException) as err:
        read(api, "done", previous=True)
    assert err.value.status == 400


def test_previous_without_one_is_400(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["once"] = [run_of("nginx", pod="once")]
    with pytest.raises(ApiException) as err:
        read(api, "once", previous=True)
    assert err.value.status == 400
    assert status_of(err.value) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'previous terminated container "app" in pod "once" not found',
        "reason": "BadRequest", "code": 400}


def test_bad_parameters(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["bad"] = [run_of("nginx", pod="bad")]
    code, body = raw_get(server, "bad", "tailLines=ten")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest"
    code, body = raw_get(server, "bad", "sinceTime=yesterday")
    assert code == 400 and "parsing time" in json.loads(body)["message"]
    # Out-of-range values fail validation: kube-apiserver answers 422 Invalid for those.
    with pytest.raises(ApiException) as err:
        read(api, "bad", tail_lines=-1)
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == 'PodLogOptions "bad" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'
    code, body = raw_get(server, "bad", "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z")
    assert code == 422 and "at most one of `sinceTime` or `sinceSeconds`" in json.loads(body)["message"]


def test_limit_bytes_cuts_mid_line(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["lim"] = [run_of("loggen", ago=5, env={"LOG_RATE": "100"})]
    resp = api.read_namespaced_pod_log("lim", NS, limit_bytes=100, _preload_content=False)
    assert len(resp.data) == 100
    assert resp.data.startswith(b"loggen seq=000000 ")
    resp = api.read_namespaced_pod_log("lim", NS, limit_bytes=150, follow=True, _preload_content=False)
    assert len(b"".join(resp.stream())) == 150


def test_follow_streams_new_lines_and_ends_with_the_run(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("loggen", ago=0.5, lasts=1.5, env={"LOG_RATE": "40"})
    server.pods["fol"] = [run]
    resp = api.read_namespaced_pod_log("fol", NS, follow=True, timestamps=True, _preload_content=False)
    buf, lags = b"", []
    for chunk in resp.stream():
        now = time.time()
        buf += chunk
        for line in chunk.decode().splitlines():
            stamp = datetime.fromisoformat(TS.match(line).group(1)[:26] + "+00:00").timestamp()
            lags.append(now - stamp)
    ended = time.time()
    seqs = [int(SEQ.search(l).group(1)) for l in buf.decode().splitlines()]
    assert seqs == list(range(60))  # 1.5 s at 40/s, none lost, none after finished_at
    assert ended - run.finished_at < 0.5  # the stream ends once the run is over
    live = lags[25:]  # lines printed after the request started
    assert live and sorted(live)[len(live) // 2] < 0.02  # delivered a few ms after their time


def test_follow_ends_when_the_pod_is_deleted(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["gone"] = [run_of("ghcr.io/acme/api:2", ago=3)]
    threading.Timer(0.6, lambda: server.pods.__setitem__("gone", None)).start()
    started = time.time()
    resp = api.read_namespaced_pod_log("gone", NS, follow=True, _preload_content=False)
    body = b"".join(resp.stream())
    assert b"service started" in body
    assert 0.5 < time.time() - started < 2


def test_a_deleted_pod_s_follower_gets_its_shutdown_lines_first(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("ghcr.io/acme/api:2", ago=3)
    server.pods["deleted"] = [run]

    def delete() -> None:
        # What the kubelet does on a deletion: the run finished in place, then the pod removed
        # before a follower looks again.
        run.finished_at, run.exit_code = time.time(), 143
        server.pods["deleted"] = None

    threading.Timer(0.5, delete).start()
    lines = list(watch.Watch().stream(api.read_namespaced_pod_log, "deleted", NS))
    assert lines[-2].endswith("received SIGTERM, shutting down") and lines[-1].endswith("bye")
    assert lines == [s for _, s in lines_between(run, run.started_at, run.finished_at + 1)]


def test_follow_through_watch_stream(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("ghcr.io/acme/worker:3", ago=4.5, lasts=5.0)
    server.pods["wat"] = [run]
    lines = list(watch.Watch().stream(api.read_namespaced_pod_log, "wat", NS, container="app"))
    assert lines == [s for _, s in lines_between(run, run.started_at, run.finished_at + 1)]
    assert lines[-1].endswith("bye")


def test_loggen_rate_and_numbering(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("example/loggen:1", ago=0, lasts=1.0, env={"LOG_RATE": "500"})
    server.pods["rate"] = [run]
    lines = list(watch.Watch().stream(api.read_namespaced_pod_log, "rate", NS))
    assert [int(SEQ.match(l).group(1)) for l in lines] == list(range(500))
    bad = run_of("loggen", ago=2.05, env={"LOG_RATE": "fast"})
    assert len(lines_between(bad, bad.started_at, bad.started_at + 2)) == 20  # bad value → 10/s


def test_burst_of_100k_lines_throughput(server: LogServer, api: client.CoreV1Api) -> None:
    """A live 100k-line burst, followed through the official client's line iterator."""
    run = run_of("loggen", ago=0, env={"LOG_RATE": "200000", "LOG_COUNT": "100000"})
    server.pods["burst"] = [run]
    start = time.perf_counter()
    resp = api.read_namespaced_pod_log("burst", NS, follow=True, _preload_content=False)
    expected = 0
    try:
        for line in iter_resp_lines(resp):
            assert line.startswith(f"loggen seq={expected:06d} ")
            expected += 1
            if expected == 100_000:
                break
        elapsed = time.perf_counter() - start
    finally:
        resp.close()
    assert expected == 100_000
    rate = expected / elapsed
    print(f"followed burst: {rate:,.0f} lines/s")
    assert rate > 50_000


def test_history_read_throughput(server: LogServer, api: client.CoreV1Api) -> None:
    server.pods["hist"] = [run_of("loggen", ago=5, env={"LOG_RATE": "200000", "LOG_COUNT": "100000"})]
    start = time.perf_counter()
    resp = api.read_namespaced_pod_log("hist", NS, _preload_content=False)
    count = sum(chunk.count(b"\n") for chunk in resp.stream())
    rate = count / (time.perf_counter() - start)
    print(f"history read: {rate:,.0f} lines/s")
    assert count == 100_000 and rate > 50_000


def test_job_logs_follow_the_outcome() -> None:
    ok = run_of("gcr.io/kaniko-project/executor:v1.23.2", ago=10, is_job=True, pod="build-7-abc",
                env={"GIT_REPO": "https://git.local/shop.git"},
                args=["--destination=registry.local/shop:7"])
    duration, code = job_outcome(ok)
    assert 1.5 <= duration <= 3 and code == 0
    ok.finished_at = ok.started_at + duration
    text = [s for _, s in lines_between(ok, ok.started_at, ok.finished_at + 1)]
    assert text[0] == "Cloning repository https://git.local/shop.git (ref main) into /workspace"
    assert any("Retrieving image manifest" in s for s in text)
    assert any("Pushing image to registry.local/shop:7" in s for s in text)
    times = [t for t, _ in lines_between(ok, ok.started_at, ok.finished_at + 1)]
    assert times[-1] - times[0] > duration * 0.8  # spread over the run, not all at once
    bad = run_of("kaniko", ago=10, is_job=True, env={"BUILD_FLAGS": "--x build-fails"})
    duration, code = job_outcome(bad)
    assert code == 1
    bad.finished_at = bad.started_at + duration
    last = lines_between(bad, bad.started_at, bad.finished_at + 1)[-1][1]
    assert last.startswith("error building image: error building stage: failed to execute command")


def test_follow_ends_when_the_run_is_marked_finished(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("ghcr.io/acme/api:2", ago=3)
    server.pods["stop"] = [run]

    def stop() -> None:
        run.finished_at, run.exit_code = time.time(), 0  # the core updates the run in place

    threading.Timer(0.5, stop).start()
    started = time.time()
    lines = list(watch.Watch().stream(api.read_namespaced_pod_log, "stop", NS))
    assert time.time() - started < 1.5
    assert lines[-2].endswith("received SIGTERM, shutting down") and lines[-1].endswith("bye")
    assert lines == [s for _, s in lines_between(run, run.started_at, run.finished_at + 1)]


def test_follow_with_since_in_the_future_waits_for_new_lines(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("loggen", ago=5, lasts=6, env={"LOG_RATE": "20"})
    server.pods["later"] = [run]
    code, body = raw_get(server, "later", "follow=true&sinceSeconds=1&timestamps=true")
    lines = body.decode().splitlines()
    seqs = [int(SEQ.search(l).group(1)) for l in lines]
    assert seqs == list(range(seqs[0], 120)) and 75 <= seqs[0] <= 82


def test_history_is_bounded_like_a_rotated_log_file(server: LogServer, api: client.CoreV1Api) -> None:
    run = run_of("loggen", ago=60, env={"LOG_RATE": "200000"})  # 12M lines so far
    server.pods["huge"] = [run]
    started = time.perf_counter()
    tail = read(api, "huge", tail_lines=3).splitlines()
    assert len(tail) == 3 and time.perf_counter() - started < 0.5  # a tail read stays cheap
    resp = api.read_namespaced_pod_log("huge", NS, _preload_content=False)
    size = lines = 0
    first = None
    for chunk in resp.stream():
        if first is None:
            first = int(SEQ.match(chunk.decode()).group(1))
        size += len(chunk)
        lines += chunk.count(b"\n")
    assert size <= 16 * 1024 * 1024 and lines > 150_000
    assert first > 11_000_000


@pytest.mark.parametrize("image,is_job", [("nginx:1.27", False), ("ghcr.io/acme/shop:1", False),
                                          ("crash:1", False), ("loggen", False), ("kaniko", True)])
def test_lines_are_a_pure_function_of_the_run(image: str, is_job: bool) -> None:
    run = ContainerRun(pod="p-1", container="c", image=image, env={"LOG_RATE": "300"}, args=["serve"],
                       started_at=1_790_000_000.25, finished_at=1_790_000_009.5, exit_code=1, is_job=is_job)
    every = lines_between(run, run.started_at - 5, run.finished_at + 5)
    assert every == lines_between(run, run.started_at - 5, run.finished_at + 5)
    times = [t for t, _ in every]
    assert times == sorted(times) and run.started_at - 1e-6 <= times[0] and times[-1] <= run.finished_at + 1e-6
    # Any split of the time range yields the same lines.
    mid = run.started_at + 3.3
    assert lines_between(run, run.started_at, mid) + lines_between(run, mid, run.finished_at + 1) == every
    # While running, the lines seen so far are those of the finished run minus its last words.
    running = ContainerRun(**{**run.__dict__, "finished_at": None, "exit_code": None})
    early = lines_between(running, run.started_at, run.started_at + 4.9999)
    assert early == [line for line in every if line[0] < run.started_at + 4.9999]


# --- through the devcluster server ------------------------------------------------------------


class RealCluster:
    """The devcluster server on its own loop in a thread, for the official (blocking) client."""

    def __init__(self) -> None:
        from devcluster.server import DevServer
        self.server = DevServer(token="t0ken", pod_ready_seconds=0.05, backoff_base=0.2)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> client.CoreV1Api:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
        cfg.api_key = {"authorization": "t0ken"}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        self.api_client = client.ApiClient(cfg)
        return client.CoreV1Api(self.api_client)

    def __exit__(self, *exc: object) -> None:
        self.api_client.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def create_pod(api: client.CoreV1Api, name: str, image: str, env: dict[str, str] | None = None) -> None:
    container = {"name": "app", "image": image, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    api.create_namespaced_pod(NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                   "spec": {"containers": [container]}})
    deadline = time.time() + 5
    while api.read_namespaced_pod(name, NS).status.phase != "Running":
        assert time.time() < deadline, "pod never ran"
        time.sleep(0.02)


def test_logs_through_the_devcluster_server() -> None:
    with RealCluster() as real:
        create_pod(real, "lg", "example/loggen:1", {"LOG_RATE": "1000"})
        resp = real.read_namespaced_pod_log("lg", NS, follow=True, _preload_content=False)
        seqs = []
        for line in iter_resp_lines(resp):
            seqs.append(int(SEQ.match(line).group(1)))
            if len(seqs) == 300:
                break
        resp.close()
        assert seqs == list(range(300))
        with pytest.raises(ApiException) as err:
            real.read_namespaced_pod_log("lg", NS, previous=True)
        assert err.value.status == 400
        assert status_of(err.value)["message"] == 'previous terminated container "app" in pod "lg" not found'
        # Deleting the pod ends a follower.
        resp = real.read_namespaced_pod_log("lg", NS, follow=True, tail_lines=1, _preload_content=False)
        threading.Timer(0.3, lambda: real.delete_namespaced_pod("lg", NS, grace_period_seconds=0)).start()
        started = time.time()
        for _ in resp.stream():
            pass
        assert time.time() - started < 3


def test_crash_loop_previous_logs_through_the_devcluster_server() -> None:
    with RealCluster() as real:
        create_pod(real, "cr", "ghcr.io/acme/crash:1", {"DATABASE_URL": "postgres://pg/app"})
        deadline = time.time() + 8
        while True:
            statuses = real.read_namespaced_pod("cr", NS).status.container_statuses or []
            if statuses and statuses[0].restart_count >= 1:
                break
            assert time.time() < deadline, "container never restarted"
            time.sleep(0.05)
        prev = real.read_namespaced_pod_log("cr", NS, previous=True).splitlines()
        assert prev[-1] == "ConnectionError: could not connect to postgres://pg/app: connection refused"
