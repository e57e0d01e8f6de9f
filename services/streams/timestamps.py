"""The RFC 3339 timestamps at the start of each line of a Kubernetes log, made comparable."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone


def timestamp_key(ts: str) -> str:
    """A timestamp made comparable as a string: Kubernetes trims trailing zeros of the fraction
    (RFC3339Nano), so `…:00.5Z` and `…:00.25Z` sort wrong until padded to nine digits."""
    base, _, rest = ts.partition(".")
    if not rest:
        return base.rstrip("Z") + ".000000000Z"
    return f"{base}.{rest.rstrip('Z')[:9].ljust(9, '0')}Z"


def seconds_since(ts: str, *, now: float | None = None) -> int:
    """Whole seconds from `ts` to now, rounded up, plus a margin for the cluster's clock being
    behind ours; the lines before `ts` that this lets through are dropped by timestamp."""
    try:
        moment = datetime.strptime(timestamp_key(ts)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    elapsed = (now if now is not None else time.time()) - moment.timestamp()
    return max(1, math.ceil(elapsed) + 5)


def is_timestamp(ts: str) -> bool:
    return len(ts) >= 20 and ts[4] == "-" and ts[10] == "T" and ts.endswith("Z")


def split_stamp(line: str) -> tuple[str, str]:
    """`"<timestamp> <text>"` → (timestamp, text); ("", line) when it has no timestamp."""
    ts, sep, text = line.partition(" ")
    return (ts, text) if sep and is_timestamp(ts) else ("", line)
