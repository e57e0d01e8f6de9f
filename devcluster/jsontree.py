"""Copying the JSON trees the devcluster stores: every object it keeps, returns or compares is
dicts, lists, strings, numbers, booleans and None, which `clone` copies several times faster
than `copy.deepcopy` (no memo, no dispatch table). Anything else goes to `copy.deepcopy`."""
from __future__ import annotations

import copy
from typing import Any


_ATOMS = (str, int, float, bool, type(None))


def clone(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: clone(item) for key, item in value.items()}
    if kind is list:
        return [clone(item) for item in value]
    if kind in _ATOMS:
        return value
    return clone(value)
