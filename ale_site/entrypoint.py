"""The container's entrypoint: one image, one role per process.

    python -m ale_site.entrypoint web|worker|beat|watcher|migrate [--dry-run]

`web`, `worker`, `beat` and `watcher` replace this process with the server (exec), so that the
kubelet's SIGTERM reaches daphne or Celery directly and their own graceful shutdown runs.
`migrate` applies migrations and, with `ALE_REGISTER_IN_CLUSTER=true`, registers the cluster
ale runs in (`manage.py register_cluster --in-cluster`). `collectstatic` is the image build's
step. `--dry-run` prints the commands instead of running them.

Every program is started as `python -m ...` with this interpreter: no PATH lookups, so what
the tests run is what the container runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
ROLES = ("web", "worker", "beat", "watcher", "migrate", "collectstatic")


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def commands(role: str, env: Mapping[str, str]) -> list[list[str]]:
    """The commands `role` runs, in order; the last one is exec'd for the long-running roles."""
    if role == "web":
        return [[
            sys.executable, "-m", "daphne",
            "-b", env.get("HOST", "0.0.0.0"),
            "-p", env.get("PORT", "8000"),
            # The Ingress controller terminates TLS and forwards the client's address.
            "--proxy-headers",
            "ale_site.asgi:application",
        ]]
    if role == "worker":
        return [[
            sys.executable, "-m", "celery", "-A", "ale_site", "worker",
            "-l", env.get("LOG_LEVEL", "INFO"),
            "--concurrency", env.get("CELERY_CONCURRENCY", "4"),
            # Worker-to-worker chatter ale does not use: every replica would add broker traffic.
            "--without-mingle", "--without-gossip",
        ]]
    if role == "beat":
        return [[
            sys.executable, "-m", "celery", "-A", "ale_site", "beat",
            "-l", env.get("LOG_LEVEL", "INFO"),
            # The root filesystem is read-only: the schedule goes to the writable volume.
            "-s", env.get("CELERY_BEAT_SCHEDULE", "/tmp/celerybeat-schedule"),
        ]]
    if role == "watcher":
        return [_manage("watch_clusters")]
    if role == "migrate":
        steps = [_manage("migrate", "--noinput")]
        if env.get("ALE_REGISTER_IN_CLUSTER", "").strip().lower() in {"1", "true", "yes", "on"}:
            register = ["register_cluster", "--in-cluster", "--name", env.get("ALE_CLUSTER_NAME", "this")]
            for option, variable in (
                ("--display-name", "ALE_CLUSTER_DISPLAY_NAME"),
                ("--ingress-domain", "ALE_INGRESS_DOMAIN"),
                ("--external-host", "ALE_EXTERNAL_HOST"),
                ("--external-service-type", "ALE_EXTERNAL_SERVICE_TYPE"),
            ):
                if env.get(variable):
                    register += [option, env[variable]]
            steps.append(_manage(*register))
        return steps
    if role == "collectstatic":
        return [_manage("collectstatic", "--noinput")]
    raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ale_site.entrypoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--dry-run", action="store_true", help="Print the commands instead of running them.")
    options = parser.parse_args(argv)
    steps = commands(options.role, os.environ)
    if options.dry_run:
        for step in steps:
            print(shlex.join(step))
        return 0
    *first, last = steps
    for step in first:
        completed = subprocess.run(step, cwd=BASE_DIR)
        if completed.returncode != 0:
            return completed.returncode
    os.chdir(BASE_DIR)
    os.execv(last[0], last)


if __name__ == "__main__":
    sys.exit(main())
