"""Container logs, served the way kubelet serves them through kube-apiserver.

What a container prints is a pure function of its ContainerRun and of time: line k
of a run has a fixed timestamp and fixed text, so any slice of the log (tail, since,
follow) is computed on demand. Nothing runs in the background per pod and memory does
not grow with uptime.
"""
from __future__ import annotations

import asyncio
import bisect
import functools
import json
import time
import zlib
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Callable, Iterable, Iterator

from aiohttp import web

from .runtime_types import ContainerRun

NS = 1_000_000_000

# kubelet only reads the live log file, which it rotates at containerLogMaxSize (10Mi).
# The emulator keeps a window of the same order of magnitude (counting line bytes only)
# so that a 100k-line burst stays whole while an hours-old high-rate log stays bounded.
HISTORY_CAP_BYTES = 16 * 1024 * 1024

# Lines per HTTP chunk. The official client's line splitter copies the rest of a chunk
# for every line it cuts off, so very large chunks get slow on its side; a few hundred
# lines (~20 KiB) per write keeps both ends fast.
BATCH_LINES = 256

# A follower that just sent lines waits at least this long before the next write, so a
# high-rate log is sent in batches instead of one chunk per line.
FOLLOW_MIN_WAIT = 0.002
# Upper bound on a follower's sleep: how quickly pod deletion, a finished run or a gone
# client is noticed when the container prints nothing.
FOLLOW_MAX_WAIT = 0.2

# Spacing of the lines a container prints when it stops (stack trace, shutdown notice).
EPILOGUE_GAP_NS = 20_000

LOGGEN_DEFAULT_RATE = 10
LOGGEN_MAX_RATE = 200_000

GREEN, YELLOW, RED, CYAN, RESET = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[36m", "\x1b[0m"


def _seed(*parts: str) -> int:
    """A hash that is stable across processes (str hash() is salted)."""
    return zlib.crc32("\x00".join(parts).encode())


def _mentions(run: ContainerRun, word: str) -> bool:
    return any(word in s for s in [*run.args, *run.env.values()])


def job_outcome(run: ContainerRun) -> tuple[float, int]:
    """How long a Job's container runs (seconds) and its exit code.

    Between 1.5 and 3 s, fixed per pod so repeated runs of the same spec agree; a job
    whose args or env values mention `build-fails` exits 1, every other job exits 0.
    """
    duration = 1.5 + (_seed(run.pod, run.container, run.image) % 1500) / 1000
    return duration, 1 if _mentions(run, "build-fails") else 0


# ---------------------------------------------------------------------------------------
# Time formatting (cached per second: a high-rate log repeats the same second a lot)

@functools.lru_cache(maxsize=4096)
def _utc_second(sec: int, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(sec))


def rfc3339nano(t_ns: int) -> str:
    """kubelet's timestamp prefix: RFC3339 with nine fraction digits, always UTC."""
    sec, frac = divmod(t_ns, NS)
    return f"{_utc_second(sec, '%Y-%m-%dT%H:%M:%S')}.{frac:09d}Z"


def _app_clock(t_ns: int) -> str:
    sec, frac = divmod(t_ns, NS)
    return f"{_utc_second(sec, '%Y-%m-%dT%H:%M:%S')}.{frac // 1_000_000:03d}Z"


def _nginx_access_clock(t_ns: int) -> str:
    return _utc_second(t_ns // NS, "%d/%b/%Y:%H:%M:%S +0000")


def _nginx_error_clock(t_ns: int) -> str:
    return _utc_second(t_ns // NS, "%Y/%m/%d %H:%M:%S")


def _to_ns(t: float) -> int:
    return int(round(t * NS))


# ---------------------------------------------------------------------------------------
# Programs: what one kind of container prints


class _Program:
    """The output of one container run, in three parts.

    prelude: a few lines at fixed offsets after start; body: line j at
    body_start + j * body_period (as an exact fraction of ns), at most body_limit lines;
    epilogue: lines printed right before the run finished (only known once it has).
    Every body line comes after every prelude line.
    """

    body_start_ns: int = 0
    body_period: Fraction | None = None  # ns between body lines; None = no body
    body_limit: int | None = None
    max_body_bytes: int = 200

    def __init__(self, run: ContainerRun) -> None:
        self.run = run
        self.start_ns = _to_ns(run.started_at)
        self.name = _app_name(run)

    def prelude(self) -> list[tuple[int, str]]:
        """(offset ns, text) pairs, offsets ascending."""
        return []

    def body_line(self, j: int, t_ns: int) -> str:
        raise NotImplementedError

    def body_lines(self, j0: int, times: list[int]) -> list[str]:
        return [self.body_line(j0 + i, t) for i, t in enumerate(times)]

    def epilogue(self, end_ns: int) -> list[str]:
        return []


def _app_name(run: ContainerRun) -> str:
    """The image's repository name without registry and tag: 'ghcr.io/acme/shop:1.2' → 'shop'."""
    last = run.image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0] or run.container


def _arg_value(args: list[str], flag: str) -> str | None:
    """Value of `--flag=value` or `--flag value` in an argument list."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def _env_first(env: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        if env.get(key):
            return env[key]
    return None


_SECRET_HINTS = ("SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIAL", "PASS")


def _shown_env_value(key: str, value: str) -> str:
    """Apps do not print secrets at start-up: mask what looks like one."""
    return "****" if any(h in key.upper() for h in _SECRET_HINTS) else value


class _Heartbeat(_Program):
    """A generic web service: start-up banner, then a heartbeat every 2 s."""

    body_start_ns = 2 * NS
    body_period = Fraction(2 * NS)
    max_body_bytes = 160

    def _level(self, level: str) -> str:
        colour = {"INFO": GREEN, "WARN": YELLOW, "ERROR": RED, "DEBUG": CYAN}[level]
        return f"{colour}{level:<5}{RESET}"

    def _line(self, t_ns: int, level: str, msg: str) -> str:
        return f"{_app_clock(t_ns)} {self._level(level)} {msg}"

    def prelude(self) -> list[tuple[int, str]]:
        run, port = self.run, self.run.env.get("PORT", "8080")
        msgs = [("INFO", f"starting {self.name} (image {run.image}, pod {run.pod})")]
        if run.args:
            msgs.append(("INFO", "command: " + " ".join(run.args)))
        for key in sorted(run.env)[:20]:
            msgs.append(("DEBUG", f"config {key}={_shown_env_value(key, run.env[key])}"))
        msgs.append(("INFO", "loading routes"))
        msgs.append(("INFO", f"service started on :{port}"))
        out, offset = [], 3_000_000
        for i, (level, msg) in enumerate(msgs):
            offset += 1_000_000 + (_seed(run.pod, str(i)) % 9_000_000)
            out.append((offset, self._line(self.start_ns + offset, level, msg)))
        return out

    def body_line(self, j: int, t_ns: int) -> str:
        uptime = (t_ns - self.start_ns) // NS
        if j % 15 == 14:
            latency = 250 + _seed(self.run.pod, str(j)) % 900
            return self._line(t_ns, "WARN", f"slow upstream response: GET /api/health took {latency}ms")
        return self._line(t_ns, "INFO", f"heartbeat ok uptime={uptime}s requests={j * 3 + 1}")

    def epilogue(self, end_ns: int) -> list[str]:
        return [self._line(end_ns, "INFO", "received SIGTERM, shutting down"),
                self._line(end_ns, "INFO", "bye")]


_NGINX_BANNER = [
    "/docker-entrypoint.sh: /docker-entrypoint.d/ is not empty, will attempt to perform configuration",
    "/docker-entrypoint.sh: Looking for shell scripts in /docker-entrypoint.d/",
    "/docker-entrypoint.sh: Launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh",
    "10-listen-on-ipv6-by-default.sh: info: Getting the checksum of /etc/nginx/conf.d/default.conf",
    "10-listen-on-ipv6-by-default.sh: info: Enabled listen on IPv6 in /etc/nginx/conf.d/default.conf",
    "/docker-entrypoint.sh: Sourcing /docker-entrypoint.d/15-local-resolvers.envsh",
    "/docker-entrypoint.sh: Launching /docker-entrypoint.d/20-envsubst-on-templates.sh",
    "/docker-entrypoint.sh: Launching /docker-entrypoint.d/30-tune-worker-processes.sh",
    "/docker-entrypoint.sh: Configuration complete; ready for start up",
]
_NGINX_NOTICES = [
    'using the "epoll" event method',
    "nginx/1.27.3",
    "built by gcc 12.2.0 (Debian 12.2.0-14)",
    "OS: Linux 6.1.0-27-amd64",
    "getrlimit(RLIMIT_NOFILE): 1048576:1048576",
    "start worker processes",
    "start worker process 29",
    "start worker process 30",
]
_BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


class _Nginx(_Program):
    """Official nginx image: entrypoint banner, notices, then access-log lines every ~2 s."""

    body_start_ns = 2 * NS
    body_period = Fraction(2 * NS)
    max_body_bytes = 260

    def prelude(self) -> list[tuple[int, str]]:
        out = [(2_000_000 + i * 1_500_000, line) for i, line in enumerate(_NGINX_BANNER)]
        base = 20_000_000
        for i, notice in enumerate(_NGINX_NOTICES):
            t = self.start_ns + base + i * 400_000
            out.append((base + i * 400_000, f"{_nginx_error_clock(t)} [notice] 1#1: {notice}"))
        return out

    def body_line(self, j: int, t_ns: int) -> str:
        clock = _nginx_access_clock(t_ns)
        h = _seed(self.run.pod, str(j))
        if j % 9 == 4:
            client = f"10.244.0.{10 + h % 200}"
            return f'{client} - - [{clock}] "GET /favicon.ico HTTP/1.1" 404 153 "http://{self.run.pod}/" "{_BROWSER_UA}"'
        if j % 4 == 1:
            client = f"10.244.0.{10 + h % 200}"
            return f'{client} - - [{clock}] "GET / HTTP/1.1" 200 615 "-" "{_BROWSER_UA}"'
        return f'10.244.0.1 - - [{clock}] "GET / HTTP/1.1" 200 615 "-" "kube-probe/1.31"'

    def epilogue(self, end_ns: int) -> list[str]:
        clock = _nginx_error_clock(end_ns)
        return [f"{clock} [notice] 1#1: signal 3 (SIGQUIT) received, shutting down",
                f"{clock} [notice] 29#29: gracefully shutting down",
                f"{clock} [notice] 1#1: exit"]


class _Crasher(_Heartbeat):
    """An app that starts, retries its database for a while, then dies with a traceback."""

    body_start_ns = NS
    body_period = Fraction(NS)

    def _db_url(self) -> str:
        return _env_first(self.run.env, "DATABASE_URL", "DB_URL") or "postgres://db:5432/app"

    def prelude(self) -> list[tuple[int, str]]:
        msgs = [("INFO", f"starting {self.name} (image {self.run.image})"),
                ("INFO", "loading configuration from environment"),
                ("INFO", f"connecting to database at {self._db_url()}")]
        return [(5_000_000 * (i + 1), self._line(self.start_ns + 5_000_000 * (i + 1), lvl, msg))
                for i, (lvl, msg) in enumerate(msgs)]

    def body_line(self, j: int, t_ns: int) -> str:
        return self._line(t_ns, "WARN", f"database not reachable yet, retrying in 1s (attempt {j + 1})")

    def epilogue(self, end_ns: int) -> list[str]:
        url = self._db_url()
        return [
            self._line(end_ns, "ERROR", "unhandled exception, exiting"),
            "Traceback (most recent call last):",
            '  File "/app/main.py", line 58, in <module>',
            "    main()",
            '  File "/app/main.py", line 41, in main',
            '    pool = connect(os.environ.get("DATABASE_URL", DEFAULT_URL))',
            '  File "/app/db.py", line 23, in connect',
            "    raise ConnectionError(f\"could not connect to {url}: {err}\")",
            f"ConnectionError: could not connect to {url}: connection refused",
        ]


class _Loggen(_Program):
    """Load generator: LOG_RATE numbered lines per second, LOG_COUNT lines at most."""

    def __init__(self, run: ContainerRun) -> None:
        super().__init__(run)
        rate = _parse_rate(run.env.get("LOG_RATE"))
        self.body_period = Fraction(NS) / rate
        self.body_limit = _parse_count(run.env.get("LOG_COUNT"))
        self._head = "loggen seq="
        self._tail = [f" pod={run.pod} level={lvl} msg=\"{msg}\"" for lvl, msg in (
            ("info", "synthetic request handled"), ("info", "cache refreshed"),
            ("debug", "tick"), ("info", "payload accepted bytes=512"),
            ("warn", "queue depth above threshold"), ("info", "synthetic request handled"),
            ("info", "flushed batch"), ("debug", "tock"))]
        self.max_body_bytes = len(self._head) + 20 + max(len(t) for t in self._tail)

    def body_lines(self, j0: int, times: list[int]) -> list[str]:
        head, tail = self._head, self._tail
        return [f"{head}{j:06d}{tail[j & 7]}" for j in range(j0, j0 + len(times))]

    def body_line(self, j: int, t_ns: int) -> str:
        return f"{self._head}{j:06d}{self._tail[j & 7]}"


def log_rate(env: dict[str, str]) -> Fraction:
    """Lines per second a log generator with this env prints: LOG_RATE, defaulted and capped."""
    return _parse_rate(env.get("LOG_RATE"))


def log_count(env: dict[str, str]) -> int | None:
    """LOG_COUNT: how many lines a log generator prints before it falls silent (None: no end)."""
    return _parse_count(env.get("LOG_COUNT"))


def _parse_rate(raw: str | None) -> Fraction:
    try:
        rate = Fraction(raw.strip()).limit_denominator(1000) if raw else Fraction(LOGGEN_DEFAULT_RATE)
    except (ValueError, ZeroDivisionError):
        return Fraction(LOGGEN_DEFAULT_RATE)
    if rate <= 0:
        return Fraction(LOGGEN_DEFAULT_RATE)
    return min(rate, Fraction(LOGGEN_MAX_RATE))


def _parse_count(raw: str | None) -> int | None:
    try:
        count = int(raw) if raw else None
    except ValueError:
        return None
    return count if count is None or count >= 0 else None


class _BuildJob(_Program):
    """An image build (kaniko executor behind a git clone), spread over job_outcome's duration."""

    def __init__(self, run: ContainerRun) -> None:
        super().__init__(run)
        self.duration, self.exit_code = job_outcome(run)

    def _sources(self) -> tuple[str, str, str]:
        run = self.run
        context = _arg_value(run.args, "--context") or ""
        repo = _env_first(run.env, "GIT_REPO", "GIT_URL", "REPO_URL", "SOURCE_URL")
        ref = _env_first(run.env, "GIT_REF", "GIT_BRANCH", "REF", "BRANCH")
        if not repo and context.startswith("git://"):
            repo, _, ctx_ref = context[len("git://"):].partition("#")
            repo, ref = "https://" + repo, ref or ctx_ref.rsplit("/", 1)[-1]
        repo = repo or f"https://git.local/{self.name}.git"
        dest = (_arg_value(run.args, "--destination")
                or _env_first(run.env, "IMAGE", "DESTINATION", "IMAGE_REF")
                or f"registry.local/{self.run.pod.rsplit('-', 1)[0]}:latest")
        return repo, ref or "main", dest

    def _texts(self) -> list[str]:
        repo, ref, dest = self._sources()
        h = _seed(self.run.pod, repo, ref)
        sha = f"{h:08x}{_seed(repo):08x}"
        objects = 40 + h % 300
        steps = ["WORKDIR /app", "COPY requirements.txt .",
                 "RUN pip install --no-cache-dir -r requirements.txt", "COPY . .",
                 "EXPOSE 8000", 'CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app.wsgi"]']
        lines = [
            f"Cloning repository {repo} (ref {ref}) into /workspace",
            f"Enumerating objects: {objects}, done.",
            f"Counting objects: 100% ({objects}/{objects}), done.",
            f"Compressing objects: 100% ({objects * 2 // 3}/{objects * 2 // 3}), done.",
            f"Total {objects} (delta {objects // 4}), reused {objects - 9} (delta {objects // 5}), pack-reused 0",
            f"HEAD is now at {sha[:7]} Merge branch '{ref}'",
            "@K Retrieving image manifest python:3.12-slim",
            "@K Retrieving image python:3.12-slim from registry index.docker.io",
            "@K Built cross stage deps: map[]",
            "@K Retrieving image manifest python:3.12-slim",
            "@K Returning cached image manifest",
            "@K Executing 0 build triggers",
            "@K Building stage 'python:3.12-slim' [idx: '0', base-idx: '-1']",
            f"@K Executing {len(steps)} build steps",
            "@K Unpacking rootfs as cmd COPY requirements.txt . requires it.",
            f"@K Step 1/{len(steps)}: {steps[0]}",
            "@K Changed working directory to /app",
            "@K Creating directory /app with uid -1 and gid -1",
            "@K Taking snapshot of files...",
            f"@K Step 2/{len(steps)}: {steps[1]}",
            "@K Taking snapshot of files...",
            f"@K Step 3/{len(steps)}: {steps[2]}",
            "@K Initializing snapshotter ...",
            "@K Taking snapshot of full filesystem...",
            "@K Running: [/bin/sh -c pip install --no-cache-dir -r requirements.txt]",
            "Collecting Django==5.1.3 (from -r requirements.txt (line 1))",
            "  Downloading Django-5.1.3-py3-none-any.whl.metadata (4.2 kB)",
            "Collecting gunicorn==23.0.0 (from -r requirements.txt (line 2))",
            "  Downloading gunicorn-23.0.0-py3-none-any.whl.metadata (4.4 kB)",
        ]
        if self.exit_code != 0:
            return lines + [
                "Collecting ale-build-fails==0.0.1 (from -r requirements.txt (line 3))",
                f"{RED}ERROR: Could not find a version that satisfies the requirement ale-build-fails==0.0.1 (from versions: none){RESET}",
                f"{RED}ERROR: No matching distribution found for ale-build-fails==0.0.1{RESET}",
                "error building image: error building stage: failed to execute command: "
                "waiting for process to exit: exit status 1",
            ]
        digest = f"{_seed(dest, sha):08x}" * 8
        return lines + [
            "Installing collected packages: sqlparse, asgiref, gunicorn, Django",
            "Successfully installed Django-5.1.3 asgiref-3.8.1 gunicorn-23.0.0 sqlparse-0.5.2",
            "@K Taking snapshot of full filesystem...",
            f"@K Step 4/{len(steps)}: {steps[3]}",
            "@K Taking snapshot of files...",
            f"@K Step 5/{len(steps)}: {steps[4]}",
            "@K Adding exposed port: 8000/tcp",
            f"@K Step 6/{len(steps)}: {steps[5]}",
            f"@K Pushing image to {dest}",
            f"@K Pushed {dest.rsplit(':', 1)[0]}@sha256:{digest}",
            "@K Build succeeded",
        ]

    def prelude(self) -> list[tuple[int, str]]:
        texts = self._texts()
        span = int(self.duration * NS * 0.94)
        out, last = [], 0
        for i, text in enumerate(texts):
            # Even spread with a little deterministic jitter, kept strictly increasing.
            jitter = _seed(self.run.pod, str(i)) % max(1, span // (4 * len(texts)))
            offset = max(last + 1, 5_000_000 + span * i // len(texts) + jitter)
            last = offset
            if text.startswith("@K "):
                # kaniko's logrus prefix: level and whole seconds since the executor started.
                text = f"INFO[{offset // NS:04d}] {text[3:]}"
            out.append((offset, text))
        return out


def _program_for(run: ContainerRun) -> _Program:
    image = run.image.lower()
    if run.is_job:
        return _BuildJob(run)
    if "loggen" in image:
        return _Loggen(run)
    if "nginx" in image:
        return _Nginx(run)
    if "crash" in image:
        return _Crasher(run)
    return _Heartbeat(run)


# ---------------------------------------------------------------------------------------
# Timeline: the run's lines as one indexed sequence


class _Timeline:
    """Index ↔ time ↔ text for every line of one run, in O(1) or O(log n) per query."""

    def __init__(self, run: ContainerRun) -> None:
        prog = _program_for(run)
        self.run, self.prog = run, prog
        # The core may update a run in place: remember what this timeline was built from.
        self.snapshot = (run.started_at, run.finished_at, run.exit_code)
        self.start = prog.start_ns
        self.end = _to_ns(run.finished_at) if run.finished_at is not None else None
        epi = prog.epilogue(self.end) if self.end is not None else []
        # The epilogue ends exactly at finished_at; everything else stops before it.
        self.cut = self.end - len(epi) * EPILOGUE_GAP_NS if self.end is not None else None
        pre = [(self.start + off, text) for off, text in prog.prelude()]
        if self.cut is not None:
            pre = [(t, s) for t, s in pre if t < self.cut]
        self.pre_t = [t for t, _ in pre]
        self.pre_s = [s for _, s in pre]
        self.body_t0 = self.start + prog.body_start_ns
        # The period as an exact ratio of integers: integer arithmetic is fast and never drifts.
        period = prog.body_period
        self.has_body = period is not None
        self.p_num, self.p_den = (period.numerator, period.denominator) if period is not None else (1, 1)
        self.body_total = self._body_count_le(self.cut - 1) if self.cut is not None else prog.body_limit
        floor = self.cut if self.cut is not None else 0
        self.epi_t = [max(floor, self.end - (len(epi) - i - 1) * EPILOGUE_GAP_NS) for i in range(len(epi))]
        self.epi_s = epi
        self.max_line_bytes = max([prog.max_body_bytes, *map(len, self.pre_s), *map(len, epi)])

    def _body_count_le(self, t: int) -> int:
        """Body lines with time <= t (ignoring the cut, honouring the program's limit)."""
        if not self.has_body or t < self.body_t0:
            return 0
        # line j is at t0 + floor(j * num / den); it is <= t iff j * num < (t - t0 + 1) * den
        count = -((-(t - self.body_t0 + 1) * self.p_den) // self.p_num)
        limit = self.prog.body_limit
        return count if limit is None else min(count, limit)

    def body_time(self, j: int) -> int:
        return self.body_t0 + j * self.p_num // self.p_den

    @property
    def total(self) -> int | None:
        """Number of lines the run will ever print, None while unbounded."""
        if self.body_total is None:
            return None
        return len(self.pre_t) + self.body_total + len(self.epi_t)

    def count_at(self, t: int) -> int:
        """Lines printed at or before t (ns)."""
        n = bisect.bisect_right(self.pre_t, t)
        body = self._body_count_le(t)
        if self.body_total is not None:
            body = min(body, self.body_total)
        n += body
        if self.epi_t:
            n += bisect.bisect_right(self.epi_t, t)
        return n

    def time_of(self, k: int) -> int:
        pre = len(self.pre_t)
        if k < pre:
            return self.pre_t[k]
        if self.body_total is None or k < pre + self.body_total:
            return self.body_time(k - pre)
        return self.epi_t[k - pre - self.body_total]

    def lines(self, lo: int, hi: int) -> tuple[list[int], list[str]]:
        """Times and texts of lines [lo, hi)."""
        times: list[int] = []
        texts: list[str] = []
        pre = len(self.pre_t)
        if lo < pre:
            times += self.pre_t[lo:min(hi, pre)]
            texts += self.pre_s[lo:min(hi, pre)]
        body_end = pre + self.body_total if self.body_total is not None else hi
        b0, b1 = max(lo, pre), min(hi, body_end)
        if b0 < b1:
            j0 = b0 - pre
            t0, num, den = self.body_t0, self.p_num, self.p_den
            body_times = [t0 + j * num // den for j in range(j0, b1 - pre)]
            times += body_times
            texts += self.prog.body_lines(j0, body_times)
        e0, e1 = max(lo, body_end) - body_end, hi - body_end
        if e0 < e1:
            times += self.epi_t[e0:e1]
            texts += self.epi_s[e0:e1]
        return times, texts


def lines_between(run: ContainerRun, start: float, end: float) -> list[tuple[float, str]]:
    """Lines the run prints at times t with start <= t < end (epoch seconds), in order."""
    tl = _Timeline(run)
    lo = tl.count_at(_to_ns(start) - 1)
    hi = tl.count_at(_to_ns(end) - 1)
    out: list[tuple[float, str]] = []
    for b in range(lo, hi, 4096):
        times, texts = tl.lines(b, min(hi, b + 4096))
        out += [(t / NS, s) for t, s in zip(times, texts)]
    return out


# ---------------------------------------------------------------------------------------
# Query options, parsed and validated like kube-apiserver does for PodLogOptions


class StatusError(Exception):
    """A Kubernetes API error, answered as a v1 Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def response(self) -> web.Response:
        body: dict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": self.message, "reason": self.reason}
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return web.Response(status=self.code, body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


@dataclass
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: int | None = None  # ns


def _pod_name(request: web.Request) -> str:
    """The {name} of .../pods/{name}/log, whether or not the router captured it."""
    name = request.match_info.get("name")
    if name:
        return name
    parts = [p for p in request.path.split("/") if p]
    return parts[-2] if len(parts) >= 2 and parts[-1] == "log" else ""


def _query_bool(query, key: str) -> bool:
    """apimachinery's string→bool: absent, "0" and "false" are false, anything else true."""
    values = query.getall(key, [])
    return bool(values) and not (values[0] == "0" or values[0].lower() == "false")


def _query_int(query, key: str) -> int | None:
    values = query.getall(key, [])
    if not values:
        return None
    raw = values[0]
    try:
        if not raw or raw.strip() != raw or "_" in raw:
            raise ValueError
        return int(raw, 10)
    except ValueError:
        raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None


def _parse_rfc3339(raw: str) -> int:
    """Go's time.Parse(time.RFC3339, ...): a full date-time with a zone, fraction optional."""
    text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        if len(raw) < 20 or raw[10] not in "Tt":
            raise ValueError
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError
    except ValueError:
        raise bad_request(f'parsing time "{raw}" as "2006-01-02T15:04:05Z07:00": cannot parse '
                          f'"{raw}" as "2006"') from None
    frac = text[19:].split("+")[0].split("-")[0]
    ns_frac = int((frac[1:] + "000000000")[:9]) if frac.startswith(".") else 0
    return int(parsed.replace(microsecond=0).timestamp()) * NS + ns_frac


def parse_log_options(query, pod: str) -> LogOptions:
    opts = LogOptions(
        follow=_query_bool(query, "follow"),
        previous=_query_bool(query, "previous"),
        timestamps=_query_bool(query, "timestamps"),
        tail_lines=_query_int(query, "tailLines"),
        limit_bytes=_query_int(query, "limitBytes"),
        since_seconds=_query_int(query, "sinceSeconds"),
    )
    raw_since = query.get("sinceTime")
    if raw_since and raw_since != "null":
        opts.since_time = _parse_rfc3339(raw_since)
    _validate(opts, pod)
    return opts


def _validate(opts: LogOptions, pod: str) -> None:
    """ValidatePodLogOptions: range errors are 422 Invalid, like kube-apiserver."""
    causes: list[dict] = []
    if opts.tail_lines is not None and opts.tail_lines < 0:
        causes.append(_invalid("tailLines", opts.tail_lines, "must be greater than or equal to 0"))
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        causes.append(_invalid("limitBytes", opts.limit_bytes, "must be greater than 0"))
    if opts.since_seconds is not None and opts.since_time is not None:
        causes.append({"reason": "FieldValueForbidden", "field": "",
                       "message": "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"})
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        causes.append(_invalid("sinceSeconds", opts.since_seconds, "must be greater than 0"))
    if not causes:
        return
    errors = [f"{c['field']}: {c['message']}" for c in causes]
    summary = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    raise StatusError(422, "Invalid", f'PodLogOptions "{pod}" is invalid: {summary}',
                      {"name": pod, "kind": "PodLogOptions", "causes": causes})


def _invalid(field: str, value: int, detail: str) -> dict:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {value}: {detail}", "field": field}


# ---------------------------------------------------------------------------------------
# Serving


class _Output:
    """Renders line ranges and writes them, honouring timestamps and limitBytes."""

    def __init__(self, opts: LogOptions) -> None:
        self.timestamps = opts.timestamps
        self.remaining = opts.limit_bytes  # None = unlimited
        self.resp: web.StreamResponse | None = None

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def render(self, tl: _Timeline, lo: int, hi: int) -> bytes:
        times, texts = tl.lines(lo, hi)
        if self.timestamps:
            data = "".join([f"{rfc3339nano(t)} {s}\n" for t, s in zip(times, texts)]).encode()
        else:
            data = ("\n".join(texts) + "\n").encode() if texts else b""
        if self.remaining is not None:
            # kubelet writes a partial last line and stops once limitBytes is reached.
            data = data[:self.remaining]
            self.remaining -= len(data)
        return data

    def chunks(self, tl: _Timeline, lo: int, hi: int) -> Iterator[bytes]:
        for b in range(lo, hi, BATCH_LINES):
            if self.exhausted:
                return
            data = self.render(tl, b, min(hi, b + BATCH_LINES))
            if data:
                yield data


def _history_start(tl: _Timeline, hi: int, opts: LogOptions, now: int) -> int:
    """First line of the already-written log to send: within the live file, the last
    tailLines of it, none older than since."""
    lo = 0
    if opts.tail_lines is not None:
        lo = max(lo, hi - opts.tail_lines)
    since = _since_ns(opts, now)
    if since is not None:
        lo = max(lo, tl.count_at(since - 1))
    return min(_rotation_floor(tl, lo, hi), hi)


def _since_ns(opts: LogOptions, now: int) -> int | None:
    if opts.since_seconds is not None:
        return now - opts.since_seconds * NS
    return opts.since_time


def _rotation_floor(tl: _Timeline, lo: int, hi: int) -> int:
    """First line of [lo, hi) still in the live log file (see HISTORY_CAP_BYTES)."""
    if (hi - lo) * (tl.max_line_bytes + 1) <= HISTORY_CAP_BYTES:
        return lo
    size, k = 0, hi
    while k > lo:
        b = max(lo, k - 4096)
        _, texts = tl.lines(b, k)
        for i in range(len(texts) - 1, -1, -1):
            size += len(texts[i].encode()) + 1
            if size > HISTORY_CAP_BYTES:
                return b + i + 1
        k = b
    return lo


def _find_run(runs: list[ContainerRun], like: ContainerRun) -> ContainerRun | None:
    """The current state of a run, matched by container and start time."""
    for run in reversed(runs):
        if run.container == like.container and run.started_at == like.started_at:
            return run
    return None


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _previous_run(runs: list[ContainerRun]) -> ContainerRun | None:
    """kubelet's lastState.terminated: the run before the current container.

    While a crashed container waits out its back-off there is no new run yet, and the
    finished last run already is the previous one (kubectl logs --previous shows it during
    CrashLoopBackOff). A Job's finished container is terminated for good (restartPolicy
    Never): then it is the current container and the previous one is the run before it.
    """
    if not runs:
        return None
    last = runs[-1]
    waiting_to_restart = last.finished_at is not None and not last.is_job
    candidates = runs if waiting_to_restart else runs[:-1]
    if candidates and candidates[-1].finished_at is not None:
        return candidates[-1]
    return None


def _pick_run(request: web.Request, current: list[ContainerRun] | None, previous: bool) -> ContainerRun:
    pod = _pod_name(request)
    container = request.query.get("container", "")
    if current:
        pod, container = current[-1].pod, current[-1].container
    if current is None:
        raise StatusError(404, "NotFound", f'pods "{pod}" not found',
                          {"name": pod, "kind": "pods"})
    if previous:
        prior = _previous_run(current)
        if prior is None:
            raise bad_request(f'previous terminated container "{container}" in pod "{pod}" not found')
        return prior
    if not current:
        raise bad_request(f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating')
    return current[-1]


async def serve_log(request: web.Request,
                    runs: Callable[[], list[ContainerRun] | None]) -> web.StreamResponse:
    """GET /api/v1/namespaces/{ns}/pods/{name}/log, as kubelet answers through kube-apiserver."""
    try:
        opts = parse_log_options(request.query, _pod_name(request))
        run = _pick_run(request, runs(), opts.previous)
    except StatusError as err:
        return err.response()
    tl = _Timeline(run)
    now = time.time_ns()
    hi = tl.count_at(now)
    out = _Output(opts)
    chunks = out.chunks(tl, _history_start(tl, hi, opts, now), hi)
    first = next(chunks, b"")
    if not opts.follow:
        second = next(chunks, None)
        if second is None:
            # Small answers go out in one piece with a Content-Length, as Go's server does.
            return web.Response(body=first, headers={"Content-Type": "text/plain"})
        return await _stream_all(request, [first, second], chunks)
    resp = await _start_stream(request)
    try:
        await _send(resp, _prepend(first, chunks))
        await _follow(request, resp, runs, tl, hi, opts, out)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away; nothing left to do for it
    return resp


async def _send(resp: web.StreamResponse, chunks: Iterable[bytes]) -> None:
    """Write chunks, yielding to the event loop now and then: a long history must not
    starve the other requests while the socket keeps accepting data without blocking."""
    for i, data in enumerate(chunks, 1):
        await resp.write(data)
        if i % 16 == 0:
            await asyncio.sleep(0)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


async def _start_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    return resp


async def _stream_all(request: web.Request, head: list[bytes], rest: Iterator[bytes]) -> web.StreamResponse:
    resp = await _start_stream(request)
    try:
        await _send(resp, head)
        await _send(resp, rest)
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


async def _follow(request: web.Request, resp: web.StreamResponse,
                  runs: Callable[[], list[ContainerRun] | None],
                  tl: _Timeline, pos: int, opts: LogOptions, out: _Output) -> None:
    """Send lines as their time comes until the run finishes, the pod goes or the client does."""
    since = _since_ns(opts, time.time_ns())
    while not out.exhausted and not _client_gone(request):
        current = runs()
        run = _find_run(current, tl.run) if current is not None else None
        if run is None:
            # Pod deleted: kubelet ends the stream too, but only after what the container printed
            # while it stopped (its shutdown lines). The kubelet finished the run in place
            # before it removed the pod.
            last = tl.run
            if last.finished_at is not None and (last.started_at, last.finished_at, last.exit_code) != tl.snapshot:
                tl = _Timeline(last)
                await _send(resp, out.chunks(tl, min(pos, tl.total - len(tl.epi_t)), tl.total))
            return
        if (run.started_at, run.finished_at, run.exit_code) != tl.snapshot:
            tl = _Timeline(run)
            if tl.total is not None:
                # The run just finished: its closing lines come right after what was sent.
                pos = min(pos, tl.total - len(tl.epi_t))
        now = time.time_ns()
        hi = tl.count_at(now)
        if since is not None:
            pos = max(pos, min(hi, tl.count_at(since - 1)))
        sent = pos < hi
        await _send(resp, out.chunks(tl, pos, hi))
        pos = hi
        if tl.end is not None and now >= tl.end:
            return
        await asyncio.sleep(_follow_wait(tl, pos, now, sent))


def _follow_wait(tl: _Timeline, pos: int, now: int, sent: bool) -> float:
    total = tl.total
    if total is not None and pos >= total:
        nxt = tl.end  # nothing more to print; wake when the run ends
    else:
        nxt = tl.time_of(pos)
    if nxt is None:
        return FOLLOW_MAX_WAIT
    wait = (nxt - now) / NS + 0.0002
    return min(FOLLOW_MAX_WAIT, max(FOLLOW_MIN_WAIT if sent else 0.0005, wait))
