"""Pod exec through the official kubernetes client's websocket stream, against a minimal app."""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.stream import stream
from kubernetes.stream.ws_client import WSClient

from devcluster.podexec import serve_exec

NS = "default"


class ExecServer:
    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await serve_exec(request, workdir=self.workdir, env={"GREETING": "hello from env"})

        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/exec", handler)
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        # aiohttp's TCPSite has no public way to say which port 0 became (a library internal).
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "ExecServer":
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecServer]:
    srv = ExecServer(tmp_path_factory.mktemp("pod-web-1")).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: ExecServer) -> Iterator[client.CoreV1Api]:
    cfg = client.Configuration(host=f"http://127.0.0.1:{server.port}")
    with client.ApiClient(cfg) as api_client:
        yield client.CoreV1Api(api_client)


def exec_ws(api: client.CoreV1Api, command: list[str], *, tty: bool = False, stdin: bool = True,
            stderr: bool = True) -> WSClient:
    return stream(api.connect_get_namespaced_pod_exec, "web-1", NS, command=command, stdin=stdin,
                  stdout=True, stderr=stderr, tty=tty, _preload_content=False)


def read_until(ws: WSClient, needle: str, timeout: float = 5.0) -> str:
    seen, deadline = "", time.time() + timeout
    while needle not in seen and time.time() < deadline and ws.is_open():
        ws.update(timeout=0.1)
        seen += ws.read_stdout(timeout=0) or ""
    return seen


def finish(ws: WSClient, timeout: float = 5.0) -> tuple[str, str]:
    out, err = "", ""
    deadline = time.time() + timeout
    while ws.is_open() and time.time() < deadline:
        ws.update(timeout=0.1)
        out += ws.read_stdout(timeout=0) or ""
        err += ws.read_stderr(timeout=0) or ""
    out += ws.read_stdout(timeout=0) or ""
    err += ws.read_stderr(timeout=0) or ""
    return out, err


def test_stdin_is_echoed_to_stdout(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["cat"])
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.write_stdin("hello exec\n")
    assert "hello exec" in read_until(ws, "hello exec")
    ws.close_channel(0)  # v5: end of stdin, so cat exits
    finish(ws)
    assert ws.returncode == 0


def test_one_shot_command_with_preloaded_output(api: client.CoreV1Api, server: ExecServer) -> None:
    out = stream(api.connect_get_namespaced_pod_exec, "web-1", NS, command=["sh", "-c", "pwd; echo $GREETING; echo $HOSTNAME"],
                 stdin=False, stdout=True, stderr=True, tty=False)
    assert out.splitlines() == [str(server.workdir), "hello from env", "web-1"]


def test_stderr_is_separate_without_tty(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "echo to-out; echo to-err >&2"], stdin=False)
    out, err = finish(ws)
    assert out == "to-out\n" and err == "to-err\n"
    assert ws.returncode == 0


def test_tty_merges_stderr_and_uses_crlf(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "echo out; echo err >&2; echo $TERM"], tty=True, stdin=False)
    out, err = finish(ws)
    assert out == "out\r\nerr\r\nxterm-256color\r\n" and err == ""


def test_exit_code_reaches_the_error_channel(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "exit 3"], stdin=False)
    finish(ws)
    assert ws.returncode == 3
    ws = exec_ws(api, ["sh", "-c", "exit 3"], stdin=False)
    ws.run_forever(timeout=5)
    status = json.loads(ws.read_channel(3))
    assert status == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}


def test_unknown_executable_is_an_internal_error(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["no-such-binary-here", "x"], stdin=False)
    ws.run_forever(timeout=5)
    status = json.loads(ws.read_channel(3))
    assert status["reason"] == "InternalError" and status["code"] == 500
    assert status["message"].startswith("Internal error occurred: error executing command in container: ")
    assert status["message"].endswith(
        'exec: "no-such-binary-here": executable file not found in $PATH: unknown')


def test_resize_reaches_the_pty(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "trap 'echo got-winch' WINCH; stty size; read x; stty size"], tty=True)
    assert "0 0" in read_until(ws, "0 0")
    ws.write_channel(4, json.dumps({"Width": 120, "Height": 40}))
    ws.write_stdin("\n")
    out = read_until(ws, "40 120")
    assert "40 120" in out
    finish(ws)
    assert ws.returncode == 0


def test_ctrl_c_interrupts_the_foreground_process(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sleep", "100"], tty=True)
    started = time.time()
    time.sleep(0.2)
    ws.write_stdin("\x03")
    finish(ws)
    assert time.time() - started < 3
    assert ws.returncode == 130  # 128 + SIGINT, as the runtime reports a signal death


def _children() -> set[int]:
    me, kids = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                kids.add(int(entry))
    return kids


def _running(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("tty", [False, True])
def test_client_disconnect_leaves_nothing_behind(api: client.CoreV1Api, tty: bool) -> None:
    # Warm up the client and server so their own lazily opened fds are not counted.
    finish(exec_ws(api, ["true"], stdin=False))
    time.sleep(0.2)
    fds_before, kids_before = len(os.listdir("/proc/self/fd")), _children()
    ws = exec_ws(api, ["sh", "-c", "sleep 100 & echo $$ $!; sleep 100"], tty=tty)
    pids = [int(p) for p in read_until(ws, "\n").split()[:2]]
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)
    ws.close()
    shell, job = pids
    # The shell is our child and must be reaped; the orphaned job is init's to reap.
    assert _wait_for(lambda: not os.path.exists(f"/proc/{shell}")), "the command survived the client"
    assert _wait_for(lambda: not _running(job)), "its background job survived the client"
    assert _wait_for(lambda: _children() <= kids_before), "child process (or zombie) left behind"
    assert _wait_for(lambda: len(os.listdir("/proc/self/fd")) <= fds_before), "fd leaked"


def test_non_websocket_and_streamless_requests_are_refused(server: ExecServer) -> None:
    import urllib.error
    import urllib.request
    base = f"http://127.0.0.1:{server.port}/api/v1/namespaces/{NS}/pods/web-1/exec?command=ls"
    for query in ("", "&stdout=true"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + query, timeout=5)
        assert err.value.code == 400
    body = json.loads(err.value.read())
    assert body["message"] == "Upgrade request required"


def test_large_output_arrives_whole(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "seq 1 200000"], stdin=False)
    out, _ = finish(ws, timeout=20)
    assert out.split() == [str(i) for i in range(1, 200001)]
    assert ws.returncode == 0


def _raw_ws(server: ExecServer, query: str, protocol: str):
    import websocket
    url = f"ws://127.0.0.1:{server.port}/api/v1/namespaces/{NS}/pods/web-1/exec?{query}"
    return websocket.create_connection(url, subprotocols=[protocol], timeout=5)


def _frames(conn) -> list[bytes]:
    import websocket
    frames = []
    while True:
        try:
            opcode, data = conn.recv_data(control_frame=False)
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        frames.append(data)
    return frames


def test_v4_frames_as_kubelet_sends_them(server: ExecServer) -> None:
    conn = _raw_ws(server, "command=sh&command=-c&command=echo+hi%3B+exit+2&stdout=true&stderr=true", "v4.channel.k8s.io")
    assert conn.subprotocol == "v4.channel.k8s.io"
    frames = _frames(conn)
    assert frames[0] == b"\x01"  # the empty frame that tells the client the stream is up
    assert b"".join(f[1:] for f in frames if f[:1] == b"\x01") == b"hi\n"
    status = json.loads(frames[-1][1:])
    assert frames[-1][:1] == b"\x03" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]


def test_v1_reports_errors_as_text_and_success_as_nothing(server: ExecServer) -> None:
    ok = _frames(_raw_ws(server, "command=true&stdout=true", "channel.k8s.io"))
    assert ok == [b"\x01"]
    bad = _frames(_raw_ws(server, "command=false&stdout=true", "channel.k8s.io"))
    assert bad[-1] == b"\x03command terminated with non-zero exit code: error executing command [false], exit code 1"


def test_base64_protocol(server: ExecServer) -> None:
    import base64
    conn = _raw_ws(server, "command=cat&stdin=true&stdout=true", "v4.base64.channel.k8s.io")
    conn.send("0" + base64.b64encode(b"over base64\n").decode())
    opcode, first = conn.recv_data()
    assert first == b"1"
    opcode, echoed = conn.recv_data()
    assert echoed[:1] == b"1" and base64.b64decode(echoed[1:]) == b"over base64\n"
    conn.close()


def test_stdin_eof_without_v5_close_comes_from_the_pty(api: client.CoreV1Api) -> None:
    ws = exec_ws(api, ["sh", "-c", "read line; echo got:$line"], tty=True)
    ws.write_stdin("abc\r")
    assert "got:abc" in read_until(ws, "got:abc")
    finish(ws)
    assert ws.returncode == 0


def test_output_of_a_fast_exit_reaches_a_slow_reader(api: client.CoreV1Api) -> None:
    # 8 MB written and exited long before the client reads: the server holds the pipe back
    # (bounded memory) and still delivers every byte before the status.
    ws = exec_ws(api, ["sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x; exit 4"], stdin=False)
    time.sleep(1.0)
    out, _ = finish(ws, timeout=20)
    assert len(out) == 8_000_000 and set(out) == {"x"}
    assert ws.returncode == 4


def test_background_job_holding_the_pipe_does_not_hang_the_exec(api: client.CoreV1Api) -> None:
    started = time.time()
    ws = exec_ws(api, ["sh", "-c", "sleep 30 & echo started"], stdin=False)
    out, _ = finish(ws, timeout=10)
    assert out == "started\n" and ws.returncode == 0
    assert time.time() - started < 3


class RealCluster:
    """The devcluster server on its own loop in a thread, for the official (blocking) client."""

    def __init__(self) -> None:
        from devcluster.server import DevServer
        self.server = DevServer(token="t0ken", pod_ready_seconds=0.05)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> client.CoreV1Api:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
        cfg.api_key, cfg.api_key_prefix = {"authorization": "t0ken"}, {"authorization": "Bearer"}
        self.api_client = client.ApiClient(cfg)
        return client.CoreV1Api(self.api_client)

    def __exit__(self, *exc: object) -> None:
        self.api_client.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_exec_through_the_devcluster_server() -> None:
    with RealCluster() as real:
        container = {"name": "app", "image": "ghcr.io/acme/shop:1", "env": [{"name": "APP_MODE", "value": "dev"}]}
        real.create_namespaced_pod(NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sh1"},
                                        "spec": {"containers": [container]}})
        assert _wait_for(lambda: real.read_namespaced_pod("sh1", NS).status.phase == "Running")
        out = stream(real.connect_get_namespaced_pod_exec, "sh1", NS, command=["sh", "-c", "echo $APP_MODE $HOSTNAME; pwd"],
                     stdin=False, stdout=True, stderr=True, tty=False)
        mode, workdir = out.splitlines()
        assert mode == "dev sh1"
        ws = stream(real.connect_get_namespaced_pod_exec, "sh1", NS, command=["sh"], stdin=True, stdout=True,
                    stderr=True, tty=True, _preload_content=False)
        ws.write_stdin("echo $TERM; exit 5\r")
        out, _ = finish(ws)
        assert "xterm-256color" in out and ws.returncode == 5
        assert os.path.isdir(workdir)
        # Deleting the pod kills what runs in it, exec streams included.
        ws = stream(real.connect_get_namespaced_pod_exec, "sh1", NS, command=["sh", "-c", "echo $$; sleep 100"],
                    stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
        pid = int(read_until(ws, "\n").split()[0])
        real.delete_namespaced_pod("sh1", NS, grace_period_seconds=0)
        assert _wait_for(lambda: not os.path.isdir(workdir)), "scratch dir outlived the pod"
        finish(ws)
        assert ws.returncode == 137 and not os.path.exists(f"/proc/{pid}")
