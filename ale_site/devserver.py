"""`make run`: everything ale needs, in one terminal, stopped together by Ctrl-C.

Starts Redis (the one at `REDIS_URL`, or an embedded one), the devcluster (unless
`ALE_DEVCLUSTER=off`), applies migrations, makes sure the demo account exists, then runs a
Celery worker with beat, the cluster watcher and the ASGI web server. Their output is shown
line by line behind the name of the process; Redis and the devcluster log to `var/log/`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ale_site.localstack import BASE_DIR, Stack, StopSignals, ingress_port_of, start_devcluster, start_embedded_redis

PALETTE = ["36", "33", "35", "32", "34", "31"]


def relay(name: str, colour: str, stream) -> None:
    prefix = f"\033[{colour}m{name:>10} |\033[0m " if sys.stdout.isatty() else f"{name:>10} | "
    for raw in iter(stream.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def run_step(args: list[str], env: dict[str, str]) -> None:
    completed = subprocess.run(args, cwd=BASE_DIR, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"'{' '.join(args[1:])}' failed with status {completed.returncode}")


def has_command(name: str, env: dict[str, str]) -> bool:
    listing = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    return name in listing.stdout.split()


def main() -> None:
    signals = StopSignals().install()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    options = parser.parse_args()

    var_dir = Path(os.environ.get("ALE_VAR_DIR", BASE_DIR / "var"))
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    stack = Stack(signals=signals)
    try:
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = start_embedded_redis(stack, var_dir / "redis", log=log_dir / "redis.log")
            print(f"Redis (embedded) on {env['REDIS_URL']}")
        else:
            print(f"Redis at {env['REDIS_URL']}")
        ingress_port: int | None = None
        if env.get("ALE_DEVCLUSTER", "on").lower() not in {"off", "0", "false", "no"}:
            kubeconfig = Path(env.get("DEVCLUSTER_KUBECONFIG", var_dir / "kubeconfig"))
            # Over TLS: kubectl sends its token only over https, and the README promises that
            # `kubectl --kubeconfig var/kubeconfig get pods -A` works while this runs.
            start_devcluster(
                stack, kubeconfig, data_dir=var_dir / "devcluster" / "state", log=log_dir / "devcluster.log", tls=True
            )
            env["DEVCLUSTER_KUBECONFIG"] = str(kubeconfig)
            ingress_port = ingress_port_of(kubeconfig)
            print(f"devcluster running; kubeconfig at {kubeconfig} (log: {log_dir / 'devcluster.log'})")

        manage = [sys.executable, "manage.py"]
        run_step(manage + ["migrate", "--noinput", "-v", "0"], env)
        if ingress_port is not None:
            # Access links of the local cluster open its emulated ingress: browsers resolve
            # every *.localhost name to this computer.
            local = ["--name", "local", "--devcluster", "--ingress-domain", "localhost"]
            local += ["--access-port", str(ingress_port)]
            run_step(manage + ["register_cluster", *local], env)
        url = f"http://{options.host}:{options.port}/"
        run_step(manage + ["seed_demo", "--url", url], env)

        processes = [
            ("worker", [sys.executable, "-m", "celery", "-A", "ale_site", "worker", "-B", "-l", "INFO",
                        "--concurrency", env.get("CELERY_CONCURRENCY", "2"),
                        "-s", str(var_dir / "celerybeat-schedule")]),
        ]
        if has_command("watch_clusters", env):
            processes.append(("watcher", manage + ["watch_clusters"]))
        processes.append(("web", manage + ["runserver", f"{options.host}:{options.port}"]))

        for index, (name, args) in enumerate(processes):
            proc = stack.spawn(name, args, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            threading.Thread(target=relay, args=(name, PALETTE[index % len(PALETTE)], proc.stdout), daemon=True).start()

        print(f"ale is starting on {url} — press Ctrl-C to stop everything.")
        while (failure := stack.failed()) is None:
            time.sleep(0.5)
        name, code = failure
        print(f"{name} exited with status {code}; stopping everything.")
        raise SystemExit(1)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
    finally:
        signals.received = True  # a signal from here on must not interrupt the clean-up
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
