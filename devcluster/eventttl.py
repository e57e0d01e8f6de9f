"""How long the devcluster keeps Events: kube-apiserver's --event-ttl, an hour unless told.

The controller manager drops an event once its last write is older than this; lists stop showing
it and watches see it DELETED, as when its etcd lease runs out on a real cluster.
"""
from __future__ import annotations

import math
import re

DEFAULT_EVENT_TTL = 3600.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_PART.pattern})+")


def parse_event_ttl(value: float | str) -> float:
    """Seconds, from a number of seconds (3600, "90") or a Go duration ("1h", "1h30m", "90s").

    Raises ValueError with a message that names the value when it is neither, or not above zero.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION.fullmatch(text):
                raise ValueError(f"event TTL {value!r} is not a duration: give seconds (3600) or a duration "
                                 "such as 1h, 30m or 90s") from None
            seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    else:
        seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"event TTL {value!r} must be a finite time above zero")
    return seconds
