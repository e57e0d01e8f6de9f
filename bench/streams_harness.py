"""What the stream benchmarks share: a devcluster, a fresh database with a user and services
running on it, and ale's ASGI server (daphne) in a process of its own whose event loop lag is
sampled from inside.

`python bench/streams_harness.py serve <daphne args>` is that server: daphne, plus a task on
its event loop that wakes every 20 ms and appends `<unix time> <lag ms>` to $ALE_BENCH_LAG_FILE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAG_INTERVAL = 0.02


@dataclass
class World:
    base: str
    ws_base: str
    cookie: str
    namespace: str
    services: dict[str, str]
    kubeconfig: Path
    server: subprocess.Popen
    lag_file: Path
    environment: Any = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run_services(self, services: dict[str, tuple[str, dict[str, str], int]]) -> None:
        """Start more services (as `start` does) once the world runs."""
        self.services.update(_run_services(self.environment, services))

    def headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie, "Origin": self.base}

    def lags_since(self, since: float) -> list[float]:
        samples = []
        for line in self.lag_file.read_text().splitlines():
            stamp, lag = line.split()
            if float(stamp) >= since:
                samples.append(float(lag))
        return samples

    def close(self) -> None:
        for process in [self.server, *self.processes]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        # The scratch directory: database, devcluster state, logs.
        shutil.rmtree(self.lag_file.parent, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(services: dict[str, tuple[str, dict[str, str], int]], *, pages: bool = False) -> World:
    """Start everything; `services` maps a name to (image, environment variables, replicas).
    `pages`: collect the static files first, so that a browser can open ale's pages."""
    scratch = Path(tempfile.mkdtemp(prefix="ale-bench-streams-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{scratch / 'bench.sqlite3'}",
        "ALE_VAR_DIR": str(scratch),
        # Where the `local` cluster looks for the devcluster started below.
        "DEVCLUSTER_KUBECONFIG": str(scratch / "devcluster" / "kubeconfig"),
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-a-secret",
        # A fixed Fernet key for the throwaway rows (nothing secret is stored by the bench).
        "ALE_SECRET_KEYS": "YmVuY2gtb25seS1ub3QtYS1zZWNyZXQtMDAwMDAwMDA=",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "CHANNELS_PREFIX": f"ale-bench-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    if pages:
        env["STATIC_ROOT"] = str(scratch / "static")
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "ALE_VAR_DIR", "DEBUG", "SECRET_KEY", "ALE_SECRET_KEYS", "ALLOWED_HOSTS",
                                           "SECURE_SSL_REDIRECT", "CHANNELS_PREFIX", "LOG_LEVEL", "STATIC_ROOT",
                                           "DEVCLUSTER_KUBECONFIG") if k in env})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")

    from tests.fixtures.devcluster import start_devcluster_process

    (scratch / "devcluster").mkdir()
    devcluster, kubeconfig = start_devcluster_process(scratch / "devcluster")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0, interactive=False)
    if pages:
        # Before the server starts: WhiteNoise serves what STATIC_ROOT holds when it starts.
        call_command("collectstatic", verbosity=0, interactive=False)

    from clusters.models import Cluster
    from spaces.actions import create_project
    from spaces.models import Space
    from tests.factories import make_user

    user = make_user("bench")
    space = Space.objects.get(owner=user, is_default=True)
    project = create_project(
        acting_user=user, space=space, name="bench", display_name="Bench", cluster=Cluster.objects.get(name="local")
    )
    environment = project.environments.get()
    ids = _run_services(environment, services)

    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    port = _free_port()
    lag_file = scratch / "lag.txt"
    lag_file.write_text("")
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "serve", "-b", "127.0.0.1", "-p", str(port),
         "ale_site.asgi:application"],
        cwd=ROOT, env={**env, "ALE_BENCH_LAG_FILE": str(lag_file)},
        stdout=open(scratch / "daphne.log", "wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            # Any answer means it serves (pages need collected static files: see `pages`).
            with urllib.request.urlopen(base + "/login/", timeout=2):
                break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError((scratch / "daphne.log").read_text()[-2000:]) from None
            time.sleep(0.2)
    return World(
        base=base, ws_base=f"ws://127.0.0.1:{port}", cookie=cookie, namespace=environment.namespace,
        services=ids, kubeconfig=kubeconfig, server=server, lag_file=lag_file, environment=environment,
        processes=[devcluster],
    )


def _run_services(environment: Any, services: dict[str, tuple[str, dict[str, str], int]]) -> dict[str, str]:
    """Create and apply `services` (name: image, environment variables, replicas) in
    `environment`, wait until all its pods run, and return their public ids by name."""
    from clusters.client import client_for
    from environments.manifests import render_environment
    from services.manifests import render_service
    from services.models import Service

    kube = client_for(environment.cluster)
    ids = {}
    for name, (image, variables, replicas) in services.items():
        service = Service.objects.create(
            environment=environment, name=name, image=image, port=8080, replicas=replicas,
            env_vars=[{"name": k, "value": v} for k, v in variables.items()],
        )
        kube.apply(render_environment(environment) + render_service(service))
        ids[name] = service.public_id
    wanted = sum(service.replicas for service in environment.services.all())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods, _ = kube.list("v1", "Pod", namespace=environment.namespace)
        if len(pods) >= wanted and all(p["status"].get("phase") == "Running" for p in pods):
            break
        time.sleep(0.1)
    return ids


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def emit(result: dict[str, Any]) -> None:
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}), flush=True)


def _serve(argv: list[str]) -> None:
    """daphne with a lag sampler on its event loop (the loop every consumer runs on)."""
    import asyncio

    import daphne.server  # noqa: F401  (installs the asyncio reactor on its loop)
    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor

    path = os.environ["ALE_BENCH_LAG_FILE"]

    async def sample() -> None:
        loop = asyncio.get_event_loop()
        with open(path, "a", buffering=1) as out:
            while True:
                expected = loop.time() + LAG_INTERVAL
                await asyncio.sleep(LAG_INTERVAL)
                out.write(f"{time.time():.3f} {max(0.0, loop.time() - expected) * 1000:.3f}\n")

    reactor.callWhenRunning(lambda: asyncio.ensure_future(sample()))
    CommandLineInterface().run(argv)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(sys.argv[2:])
