"""Fixtures for browser journeys: the real ASGI server on a fresh database, and Chromium.

`ale_server` lives for the whole test run and is general on purpose: later journeys start more processes
(a Celery worker, the devcluster) next to it and run management commands with `ale_server.manage`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import uuid
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("ALE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AleServer:
    base_url: str
    env: dict[str, str]
    var_dir: Path
    log_path: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return self.base_url.rstrip("/") + path

    def manage(self, *args: str) -> str:
        """Run `manage.py <args>` against the server's database; return its standard output."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_until_serving(server: AleServer, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the ASGI server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url("/login/"), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the ASGI server did not answer within {timeout}s:\n{server.log()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def ale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AleServer]:
    var_dir = tmp_path_factory.mktemp("ale-var")
    port = free_port()
    run_id = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{var_dir / 'ale.sqlite3'}",
        "ALE_VAR_DIR": str(var_dir),
        # Processes `ale_stack` starts next to the server share these; a unique queue and
        # channel prefix keep parallel runs on one Redis from taking each other's messages.
        "CELERY_QUEUE": f"ale-e2e-{run_id}",
        "CHANNELS_PREFIX": f"ale-e2e-{run_id}",
        "DEVCLUSTER_KUBECONFIG": str(var_dir / "devcluster" / "kubeconfig"),
        # DEBUG serves static files from the app directories, as `make run` does.
        "DEBUG": "true",
        "PYTHONUNBUFFERED": "1",
    }
    server = AleServer(base_url=f"http://127.0.0.1:{port}", env=env, var_dir=var_dir, log_path=var_dir / "daphne.log")
    server.manage("migrate", "--noinput", "-v0")
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "ale_site.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server.processes.append(process)
    try:
        _wait_until_serving(server, process)
        yield server
    finally:
        for started in reversed(server.processes):
            _stop(started)


@pytest.fixture(scope="session")
def ale_stack(ale_server: AleServer) -> Iterator[AleServer]:
    """`ale_server` with what makes deploys real: the devcluster (pods ready in 0.3 s), a Celery
    worker and the cluster watcher, all on the server's database, queue and channel prefix."""
    from ale_site.localstack import Stack, ingress_port_of, start_devcluster, wait_until

    stack = Stack()
    logs = ale_server.var_dir
    try:
        start_devcluster(
            stack,
            Path(ale_server.env["DEVCLUSTER_KUBECONFIG"]),
            log=logs / "devcluster.log",
            pod_ready_seconds=0.3,
        )
        # As `make run` does: the local cluster's Access links open the devcluster's ingress.
        port = ingress_port_of(Path(ale_server.env["DEVCLUSTER_KUBECONFIG"]))
        ale_server.manage(
            "register_cluster", "--name", "local", "--devcluster", "--ingress-domain", "localhost",
            "--access-port", str(port),
        )
        worker_log = logs / "worker.log"
        with worker_log.open("wb") as output:
            stack.spawn(
                "worker",
                [
                    sys.executable, "-m", "celery", "-A", "ale_site", "worker",
                    "--pool", "threads", "-c", "4", "-Q", ale_server.env["CELERY_QUEUE"],
                    "-n", f"e2e-{ale_server.env['CELERY_QUEUE']}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
                ],
                cwd=ROOT, env=ale_server.env, stdout=output, stderr=subprocess.STDOUT,
            )
        with (logs / "watcher.log").open("wb") as output:
            stack.spawn(
                # The run starts with no environment, so no cluster to watch: look again soon.
                "watcher", [sys.executable, "manage.py", "watch_clusters", "--refresh-interval", "0.5"],
                cwd=ROOT, env=ale_server.env, stdout=output, stderr=subprocess.STDOUT,
            )

        def worker_ready() -> bool:
            failed = stack.failed()
            if failed:
                raise RuntimeError(f"{failed[0]} exited with {failed[1]}; logs in {logs}")
            return b" ready." in worker_log.read_bytes()

        wait_until(worker_ready, 30, "The Celery worker")
        yield ale_server
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def browser():
    # Package-scoped: while Playwright's sync API is open, the main thread counts as running an
    # event loop, and the async tests that pytest-django orders after these could not run.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class ConsoleErrors:
    """Console errors and uncaught exceptions of every page of the contexts a journey opens.

    A journey fails on any of them: an htmx error (a swap with no target, a failed request)
    is logged there and nowhere else, so it would pass unseen while the page misbehaves.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def expect(self, *texts: str) -> None:
        """The journey is about to cause an error containing each of `texts` (a page that
        answers 404 on purpose, and htmx's own line about it): those are not held against it."""
        self.expected.extend(texts)

    def watch(self, context) -> None:
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)

    def _watch_page(self, page) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: uncaught {error}"))

    def _console(self, page, message) -> None:
        if message.type != "error":
            return
        for index, text in enumerate(self.expected):
            if text in message.text:
                del self.expected[index]
                return
        self.errors.append(f"{page.url}: {message.text}")


@pytest.fixture
def console_errors() -> Iterator[ConsoleErrors]:
    watcher = ConsoleErrors()
    yield watcher
    assert not watcher.errors, "the browser console showed errors:\n" + "\n".join(watcher.errors)


@pytest.fixture
def new_context(browser, console_errors: ConsoleErrors):
    """Opens browser contexts (a second user's browser, say) whose pages are watched for console
    errors like `page`'s; each is closed at the end of the test."""
    opened = []

    def open_context():
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        console_errors.watch(context)
        opened.append(context)
        return context

    try:
        yield open_context
    finally:
        for context in opened:
            context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


@pytest.fixture(scope="session")
def demo_login(ale_server: AleServer) -> tuple[str, str]:
    """The demo account `make run` prints, as (username, password)."""
    line = ale_server.manage("seed_demo", "--url", ale_server.url("/")).strip()
    username, password = line.rsplit(" as ", 1)[1].split(" / ")
    return username, password
