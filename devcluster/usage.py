"""What a container uses: CPU and memory as a pure function of its spec and of time.

Like the logs (podlogs.py), usage is computed on demand from what the kubelet knows of a run
(image, env, resources, start time), so the same question always gets the same answer and a
test can predict it:

- a log generator (`*loggen*`) burns CPU in proportion to its LOG_RATE, and falls back to its
  floor once it has printed LOG_COUNT lines;
- an image named `*leak*` starts at LEAK_BASE_BYTES and grows by its leak rate (the container's
  LEAK_MIB_PER_SECOND env, else the server's `--leak-mib-per-second`) until it reaches its
  memory limit (the node's memory without one): the kernel then kills it (OOMKilled, exit 137)
  and the kubelet restarts it, growing again from the start;
- anything else (a web server, an app) sits near its floor, with a small wobble that changes
  once per metrics window (15 s), as scraped usage does.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from .kinds import parse_quantity
from .podlogs import log_count, log_rate

MIB = 1024 ** 2
# The node's size, as kind reports a laptop-sized Docker host.
NODE_CPU_CORES = 8
NODE_MEMORY_BYTES = 16 * 1024 * MIB
# What the node's own processes (kubelet, containerd, the control plane) use.
SYSTEM_CPU_CORES = 0.120
SYSTEM_MEMORY_BYTES = 640 * MIB

WINDOW_SECONDS = 15
LEAK_BASE_BYTES = 16 * MIB
LEAK_DEFAULT_MIB_PER_SECOND = 1.0
# CPU per log line per second: a line formatted and written costs about 50 µs.
LOGGEN_CORES_PER_LINE = 0.000_05


@dataclass(frozen=True)
class Usage:
    cpu_cores: float
    memory_bytes: int

    def as_metrics(self) -> dict[str, str]:
        """metrics-server's spelling: CPU in nanocores, memory in KiB."""
        return {"cpu": f"{round(self.cpu_cores * 1e9)}n", "memory": f"{self.memory_bytes // 1024}Ki"}


def _seed(*parts: str) -> int:
    return zlib.crc32("\x00".join(parts).encode())


def is_leak(image: str) -> bool:
    return "leak" in image.lower()


def leak_rate_bytes(env: dict[str, str], default_mib_per_second: float) -> float:
    """Bytes per second a leaking container grows by: its LEAK_MIB_PER_SECOND, else the default."""
    raw = env.get("LEAK_MIB_PER_SECOND")
    try:
        rate = float(raw) if raw else default_mib_per_second
    except ValueError:
        rate = default_mib_per_second
    return max(rate, 0.001) * MIB


def memory_limit(resources: dict) -> float:
    """The container's memory limit in bytes, or the node's memory when it has none."""
    limit = parse_quantity(((resources or {}).get("limits") or {}).get("memory"))
    return limit if limit and limit > 0 else float(NODE_MEMORY_BYTES)


def _cpu_limit(resources: dict) -> float | None:
    limit = parse_quantity(((resources or {}).get("limits") or {}).get("cpu"))
    return limit if limit and limit > 0 else None


def seconds_until_oom(image: str, env: dict[str, str], resources: dict, default_leak_mib: float) -> float | None:
    """How long after it starts a leaking container reaches its memory limit; None for others."""
    if not is_leak(image):
        return None
    headroom = memory_limit(resources) - LEAK_BASE_BYTES
    return max(headroom / leak_rate_bytes(env, default_leak_mib), 0.05)


def container_usage(*, pod: str, container: str, image: str, env: dict[str, str], resources: dict,
                    started_at: float, now: float, default_leak_mib: float) -> Usage:
    """What a running container uses at `now` (epoch seconds)."""
    elapsed = max(now - started_at, 0.0)
    wobble = _seed(pod, container, str(int(now // WINDOW_SECONDS))) % 1000 / 1000  # 0..1, per window
    fixed = _seed(pod, container) % 1000 / 1000  # 0..1, per container
    name = image.lower()
    if "loggen" in name:
        rate = float(log_rate(env))
        count = log_count(env)
        printing = count is None or elapsed * rate < count
        cpu = 0.002 + (rate * LOGGEN_CORES_PER_LINE if printing else 0.0)
        memory = 12 * MIB + int(fixed * 2 * MIB)
    elif is_leak(name):
        cpu = 0.004 + wobble * 0.002
        memory = min(LEAK_BASE_BYTES + int(elapsed * leak_rate_bytes(env, default_leak_mib)),
                     int(memory_limit(resources)))
    elif "nginx" in name:
        cpu = 0.001 + wobble * 0.001
        memory = 3 * MIB + int(fixed * 2 * MIB)
    else:
        cpu = 0.001 + wobble * 0.002
        memory = 24 * MIB + int(fixed * 8 * MIB)
    cap = _cpu_limit(resources)
    if cap is not None:
        cpu = min(cpu, cap)  # CFS throttling: never more than the limit
    return Usage(cpu, memory)
