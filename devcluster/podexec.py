"""Pod exec over the Kubernetes streaming websocket protocols, running the real command.

The command runs on this host (the devcluster is a local development tool listening on
127.0.0.1) in the pod's scratch directory, in a pty when tty=true and with pipes
otherwise. The wire protocol is kubelet's: channel-prefixed frames, a Status on the
error channel when the process ends, resize messages on channel 4.
"""
from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import pathlib
import pty
import shutil
import signal
import struct
import subprocess
import termios
import uuid
from collections import deque
from typing import Callable

from aiohttp import WSMsgType, web

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
DROP = -1  # output read from the process and not sent
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
# Every protocol kubelet's remotecommand server accepts ("" = no header: plain binary v1).
PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_SIZE = 65536
# Output waiting for a slow client beyond this stops reading from the process, so a
# chatty command cannot grow the server's memory without bound.
PENDING_HIGH = 1 << 20
PENDING_LOW = 1 << 18
# After the process exits, output still in flight (pty buffer, pipes) is read for at
# most this long: a backgrounded grandchild may hold the pipe open forever.
DRAIN_AFTER_EXIT = 0.3
KILL_GRACE = 0.5
WORKDIR_POLL = 0.5


def _pod_name(request: web.Request) -> str:
    """The {name} of .../pods/{name}/exec, whether or not the router captured it."""
    name = request.match_info.get("name")
    if name:
        return name
    parts = [p for p in request.path.split("/") if p]
    return parts[-2] if len(parts) >= 2 and parts[-1] == "exec" else ""


def _query_bool(request: web.Request, key: str) -> bool:
    """apimachinery's string→bool: absent, "0" and "false" are false, anything else true."""
    values = request.query.getall(key, [])
    return bool(values) and not (values[0] == "0" or values[0].lower() == "false")


def _status_error(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.Response(status=code, body=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"})


def _offered_protocols(request: web.Request) -> list[str]:
    raw = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in raw.split(",") if p.strip()]


class _Options:
    def __init__(self, request: web.Request) -> None:
        self.command = request.query.getall("command", [])
        self.stdin = _query_bool(request, "stdin")
        self.stdout = _query_bool(request, "stdout")
        self.tty = _query_bool(request, "tty")
        # kubelet: "Access to exec with tty and stderr is not supported, bypassing stderr"
        self.stderr = _query_bool(request, "stderr") and not self.tty


def _check_request(request: web.Request, opts: _Options) -> web.Response | None:
    if not (opts.stdin or opts.stdout or opts.stderr):
        return _status_error(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    if not opts.command:
        return _status_error(400, "BadRequest", "you must specify at least one command for the container")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return _status_error(400, "BadRequest", "Upgrade request required")
    offered = _offered_protocols(request)
    if offered and not any(p in PROTOCOLS for p in offered):
        return _status_error(400, "BadRequest", f"requested protocol(s) are not supported: {offered}; "
                                                f"supports {list(PROTOCOLS)}")
    return None


# ---------------------------------------------------------------------------------------
# Process side


def _child_env(pod: str, env: dict[str, str], tty: bool) -> dict[str, str]:
    base = {"PATH": BASE_PATH, "HOSTNAME": pod}
    if tty:
        base["TERM"] = "xterm-256color"
    base.update(env)
    return base


def _spawn_error(argv0: str, err: BaseException) -> str:
    """What containerd/runc report when the exec cannot start, wrapped like kubelet does."""
    if isinstance(err, FileNotFoundError):
        detail = (f'exec: "{argv0}": stat {argv0}: no such file or directory' if "/" in argv0
                  else f'exec: "{argv0}": executable file not found in $PATH')
    elif isinstance(err, PermissionError):
        detail = f'exec: "{argv0}": permission denied'
    else:
        detail = f'exec: "{argv0}": {getattr(err, "strerror", None) or err}'
    exec_id = uuid.uuid4().hex + uuid.uuid4().hex
    return (f'error executing command in container: failed to exec in container: failed to start exec '
            f'"{exec_id}": OCI runtime exec failed: exec failed: unable to start container process: '
            f"{detail}: unknown")


def _take_controlling_tty() -> None:
    """In the child, after setsid: make the pty (fd 0) its controlling terminal, so the line
    discipline turns ^C into SIGINT for it and a resize into SIGWINCH."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _FdWriter:
    """Non-blocking writes to a pty master or pipe, buffering what the kernel won't take yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop, self.fd = loop, fd
        self.buf: deque[bytes] = deque()
        self.closed = False
        self.close_after_flush = False

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.buf.append(data)
        if len(self.buf) == 1:
            self._flush()

    def close_when_done(self) -> None:
        self.close_after_flush = True
        if not self.buf:
            self.close()

    def _flush(self) -> None:
        while self.buf:
            data = self.buf[0]
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                self.loop.add_writer(self.fd, self._on_writable)
                return
            except OSError:
                self.buf.clear()  # the process side is gone: input is moot
                break
            if n < len(data):
                self.buf[0] = data[n:]
            else:
                self.buf.popleft()
        self.loop.remove_writer(self.fd)
        if self.close_after_flush:
            self.close()

    def _on_writable(self) -> None:
        self._flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_writer(self.fd)
            os.close(self.fd)


# Every exec'd process not yet torn down, with the directory it runs in: a stopping server ends
# those its handlers did not (a handler cancelled again while cleaning up skips the rest), since
# each runs in a session of its own and nothing else would.
_RUNNING: dict[_Process, pathlib.Path] = {}


def kill_running(root: pathlib.Path) -> None:
    """SIGKILL the process group of every exec'd process still running under `root`."""
    for process, workdir in list(_RUNNING.items()):
        if workdir.is_relative_to(root):
            process.kill()
            _RUNNING.pop(process, None)


class _Process:
    """The exec'd command, its output fds on the event loop and its teardown."""

    def __init__(self, loop: asyncio.AbstractEventLoop, opts: _Options,
                 emit: Callable[[int, bytes], None]) -> None:
        self.loop, self.opts, self.emit = loop, opts, emit
        self.proc: asyncio.subprocess.Process | None = None
        self.readers: dict[int, int] = {}  # fd → channel
        self.stdin: _FdWriter | None = None
        self.master: int | None = None
        self.eof = asyncio.Event()
        self.paused = False
        self.bytes_read = 0

    async def start(self, workdir: pathlib.Path, env: dict[str, str]) -> None:
        """Raises OSError when the command cannot be started."""
        child_fds: list[int] = []
        try:
            if self.opts.tty:
                kwargs = self._tty_fds(child_fds)
            else:
                kwargs = self._pipe_fds(child_fds)
            argv = self.opts.command
            # Resolve against the container's PATH, but keep argv[0] as given, like execve does.
            exe = shutil.which(argv[0], path=env.get("PATH", BASE_PATH)) if "/" not in argv[0] else argv[0]
            if exe is None:
                raise FileNotFoundError(argv[0])
            self.proc = await asyncio.create_subprocess_exec(
                argv[0], *argv[1:], executable=exe, cwd=str(workdir), env=env, start_new_session=True,
                preexec_fn=_take_controlling_tty if self.opts.tty else None, **kwargs)
            _RUNNING[self] = workdir
        except BaseException:
            self.close_fds()
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        for fd in self.readers:
            self.loop.add_reader(fd, self._on_readable, fd)
        if not self.readers:
            self.eof.set()

    def _tty_fds(self, child_fds: list[int]) -> dict:
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        self.master = master
        child_fds.append(slave)
        # Without stdout the terminal output is still read (and dropped), or the process would
        # block once the pty buffer is full.
        self.readers[master] = STDOUT if self.opts.stdout else DROP
        if self.opts.stdin:
            self.stdin = _FdWriter(self.loop, os.dup(master))
        return {"stdin": slave, "stdout": slave, "stderr": slave}

    def _pipe_fds(self, child_fds: list[int]) -> dict:
        kwargs: dict = {"stdin": asyncio.subprocess.DEVNULL, "stdout": asyncio.subprocess.DEVNULL,
                        "stderr": asyncio.subprocess.DEVNULL}
        if self.opts.stdin:
            r, w = os.pipe()
            os.set_blocking(w, False)
            self.stdin = _FdWriter(self.loop, w)
            child_fds.append(r)
            kwargs["stdin"] = r
        for name, channel, wanted in (("stdout", STDOUT, self.opts.stdout), ("stderr", STDERR, self.opts.stderr)):
            if wanted:
                r, w = os.pipe()
                os.set_blocking(r, False)
                self.readers[r] = channel
                child_fds.append(w)
                kwargs[name] = w
        return kwargs

    def _on_readable(self, fd: int) -> None:
        # Read what is there now (up to a few buffers) and hand it on as one piece.
        chunks = []
        for _ in range(8):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:  # EIO: the pty's other side is closed
                data = b""
            if not data:
                self._stop_reading(fd)
                break
            chunks.append(data)
            if len(data) < READ_SIZE:
                break
        self.bytes_read += sum(map(len, chunks))
        if chunks and self.readers.get(fd, STDOUT) != DROP:
            self.emit(self.readers.get(fd, STDOUT), b"".join(chunks))

    def _stop_reading(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        self.readers.pop(fd, None)
        if fd != self.master:
            os.close(fd)
        if not self.readers:
            self.eof.set()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            for fd in self.readers:
                self.loop.remove_reader(fd)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for fd in self.readers:
                self.loop.add_reader(fd, self._on_readable, fd)

    def write_stdin(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def close_stdin(self) -> None:
        if self.stdin is None:
            return
        if self.opts.tty:
            # A terminal has no end of file: the line discipline's EOF character (^D) stands for it.
            self.stdin.write(b"\x04")
        else:
            self.stdin.close_when_done()

    def resize(self, width: int, height: int) -> None:
        if self.master is not None:
            # TIOCSWINSZ on the pty: the kernel sends SIGWINCH to its foreground process group.
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait_output(self) -> int:
        """Wait for the process to exit, then for its remaining output; returns the exit code."""
        assert self.proc is not None
        code = await self.proc.wait()
        # Keep reading while output still flows (or waits on a slow client); stop once it
        # goes quiet without an end of file, as when a background job holds the pipe.
        while not self.eof.is_set():
            before = self.bytes_read
            try:
                await asyncio.wait_for(self.eof.wait(), DRAIN_AFTER_EXIT)
            except asyncio.TimeoutError:
                if self.bytes_read == before and not self.paused:
                    break
        # The runtime reports death by signal as 128 + signal, like a shell does.
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            _signal_group(self.proc.pid, signal.SIGKILL)

    async def terminate(self) -> None:
        """Hang up the whole process group, SIGKILL what survives, reap, close every fd."""
        proc = self.proc
        if proc is not None:
            for sig in (signal.SIGHUP, signal.SIGCONT):
                _signal_group(proc.pid, sig)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE)
            except asyncio.TimeoutError:
                pass
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        _RUNNING.pop(self, None)
        self.close_fds()

    def close_fds(self) -> None:
        for fd in list(self.readers):
            self.loop.remove_reader(fd)
            if fd != self.master:
                os.close(fd)
        self.readers.clear()
        if self.stdin is not None:
            self.stdin.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------
# Websocket side


class _Wire:
    """Frames for the negotiated protocol, and output batching towards the client."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str, process_pause: Callable[[], None],
                 process_resume: Callable[[], None]) -> None:
        self.ws, self.protocol = ws, protocol
        self.base64 = protocol in (V4_BASE64, V1_BASE64)
        self.pending: deque[tuple[int, bytes]] = deque()
        self.pending_bytes = 0
        self.wakeup = asyncio.Event()
        self.pause, self.resume = process_pause, process_resume
        self.finishing = False

    def frame(self, channel: int, data: bytes) -> bytes | str:
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode()
        return bytes([channel]) + data

    def decode(self, msg) -> tuple[int, bytes] | None:
        if msg.type is WSMsgType.BINARY:
            raw = msg.data
        elif msg.type is WSMsgType.TEXT:
            raw = msg.data.encode()
        else:
            return None
        if not raw:
            return None
        if self.base64:
            return raw[0] - ord("0"), base64.b64decode(raw[1:])
        return raw[0], raw[1:]

    def emit(self, channel: int, data: bytes) -> None:
        self.pending.append((channel, data))
        self.pending_bytes += len(data)
        if self.pending_bytes > PENDING_HIGH:
            self.pause()
        self.wakeup.set()

    async def send_now(self, channel: int, data: bytes) -> None:
        frame = self.frame(channel, data)
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    async def pump(self) -> None:
        """Send queued output, coalescing consecutive pieces of one channel into a frame."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self.flush()
            if self.finishing and not self.pending:
                return

    async def finish(self, pump: asyncio.Future) -> None:
        """Let the pump send everything queued, then stop it."""
        self.finishing = True
        self.wakeup.set()
        await pump

    async def flush(self) -> None:
        while self.pending:
            channel, data = self.pending.popleft()
            parts = [data]
            while self.pending and self.pending[0][0] == channel:
                parts.append(self.pending.popleft()[1])
            blob = b"".join(parts)
            self.pending_bytes -= len(blob)
            await self.send_now(channel, blob)
            if self.pending_bytes < PENDING_LOW:
                self.resume()

    async def send_status(self, status: dict | None, text: str | None) -> None:
        """v4/v5: a JSON Status; v1: the error text only, and nothing on success."""
        if self.protocol in (V5, V4, V4_BASE64):
            await self.send_now(ERROR, json.dumps(status, separators=(",", ":")).encode())
        elif text:
            await self.send_now(ERROR, text.encode())


def _exit_status(command: list[str], code: int) -> tuple[dict, str | None]:
    if code == 0:
        return {"metadata": {}, "status": "Success"}, None
    message = (f"command terminated with non-zero exit code: error executing command "
               f"[{' '.join(command)}], exit code {code}")
    return ({"metadata": {}, "status": "Failure", "message": message, "reason": "NonZeroExitCode",
             "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}, message)


def _internal_error(detail: str) -> tuple[dict, str]:
    message = f"Internal error occurred: {detail}"
    return ({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
             "details": {"causes": [{"message": detail}]}, "code": 500}, message)


def _apply_resize(process: _Process, data: bytes) -> None:
    """Channel 4 carries one or more JSON objects {"Width": w, "Height": h}."""
    decoder, text, i = json.JSONDecoder(), data.decode(errors="replace"), 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            size, i = decoder.raw_decode(text, i)
            process.resize(int(size.get("Width", 0)), int(size.get("Height", 0)))
        except (ValueError, AttributeError, TypeError, OSError):
            return


async def _read_client(ws: web.WebSocketResponse, wire: _Wire, process: _Process, v5: bool) -> None:
    """Client → process until the client closes the websocket or goes away."""
    async for msg in ws:
        decoded = wire.decode(msg)
        if decoded is None:
            continue
        channel, data = decoded
        if channel == STDIN:
            process.write_stdin(data)
        elif channel == RESIZE:
            _apply_resize(process, data)
        elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]):
            process.close_stdin()


async def _kill_when_pod_goes(workdir: pathlib.Path, process: _Process) -> None:
    """The pod's scratch directory is removed when the pod is gone: like a container being
    killed, that SIGKILLs the exec'd process (exit code 137) and so ends the exec stream."""
    while True:
        await asyncio.sleep(WORKDIR_POLL)
        if not workdir.exists():
            process.kill()
            return


async def serve_exec(request: web.Request, *, workdir: pathlib.Path,
                     env: dict[str, str]) -> web.StreamResponse:
    """GET /api/v1/namespaces/{ns}/pods/{name}/exec: upgrade, run the command, stream it."""
    opts = _Options(request)
    refused = _check_request(request, opts)
    if refused is not None:
        return refused
    # No permessage-deflate: kubelet's websocket server never negotiates it. A short close
    # timeout: a client that stopped answering must not hold the handler for long.
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True, max_msg_size=0, compress=False,
                               timeout=2.0)
    await ws.prepare(request)
    protocol = ws.ws_protocol or V1
    # The process hands its output to the wire, which pauses the process when the client lags.
    process = _Process(asyncio.get_running_loop(), opts, lambda ch, data: wire.emit(ch, data))
    wire = _Wire(ws, protocol, process.pause, process.resume)
    pump = reader = watchdog = None
    try:
        # kubelet opens the stream with an empty frame on the lowest writable channel.
        await wire.send_now(STDOUT if opts.stdout else STDERR if opts.stderr else ERROR, b"")
        pod = _pod_name(request)
        child_env = _child_env(pod, {"HOME": str(workdir), **env}, opts.tty)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            await process.start(workdir, child_env)
        except (OSError, subprocess.SubprocessError) as err:
            status, text = _internal_error(_spawn_error(opts.command[0], err))
            await wire.send_status(status, text)
            return ws
        pump = asyncio.ensure_future(wire.pump())
        reader = asyncio.ensure_future(_read_client(ws, wire, process, protocol == V5))
        exited = asyncio.ensure_future(process.wait_output())
        watchdog = asyncio.ensure_future(_kill_when_pod_goes(workdir, process))
        await asyncio.wait({reader, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            await wire.finish(pump)
            await wire.send_status(*_exit_status(opts.command, exited.result()))
        else:
            exited.cancel()  # the client left: the process goes with it (in finally)
    except ConnectionError:
        pass  # the client vanished mid-write
    finally:
        tasks = [t for t in (pump, reader, watchdog) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await process.terminate()
        await ws.close()
    return ws
