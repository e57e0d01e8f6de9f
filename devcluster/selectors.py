"""Label and field selector strings, parsed and matched with kube-apiserver's semantics."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .kinds import LABEL_VALUE, QUALIFIED_NAME, DNS1123_SUBDOMAIN


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return has and value == self.values[0]
        if self.op == "!=":
            return not has or value != self.values[0]
        if self.op == "in":
            return has and value in self.values
        if self.op == "notin":
            return not has or value not in self.values
        if self.op == "exists":
            return has
        return not has


_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break
        if m.group(1):
            tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        raise SelectorError(f"unable to parse requirement: <nil>: Invalid value: {key!r}: name part must consist of "
                            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                            "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".replace("'" + key + "'", '"' + key + '"'))


def _check_value(value: str) -> None:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        raise SelectorError(f'unable to parse requirement: values[0][{value}]: Invalid value: "{value}": a valid label '
                            "must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
                            "start and end with an alphanumeric character")


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    tokens = _tokenize(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_value(j: int) -> tuple[str, int]:
        if j < len(tokens) and tokens[j] not in (",", "(", ")", "!", "=", "==", "!="):
            return tokens[j], j + 1
        return "", j

    while i < len(tokens):
        if tokens[i] == "!":
            if i + 1 >= len(tokens):
                raise SelectorError("found '', expected: identifier after '!'")
            _check_key(tokens[i + 1])
            reqs.append(Requirement(tokens[i + 1], "!"))
            i += 2
        else:
            key = tokens[i]
            _check_key(key)
            i += 1
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            elif tokens[i] in ("=", "=="):
                value, i = expect_value(i + 1)
                _check_value(value)
                reqs.append(Requirement(key, "=", (value,)))
            elif tokens[i] == "!=":
                value, i = expect_value(i + 1)
                _check_value(value)
                reqs.append(Requirement(key, "!=", (value,)))
            elif tokens[i].lower() in ("in", "notin"):
                op = tokens[i].lower()
                i += 1
                if i >= len(tokens) or tokens[i] != "(":
                    raise SelectorError(f"found '{tokens[i] if i < len(tokens) else ''}', expected: '('")
                i += 1
                values: list[str] = []
                while i < len(tokens) and tokens[i] != ")":
                    if tokens[i] != ",":
                        _check_value(tokens[i])
                        values.append(tokens[i])
                    i += 1
                if i >= len(tokens):
                    raise SelectorError("found '', expected: ')'")
                i += 1
                reqs.append(Requirement(key, op, tuple(values)))
            else:
                raise SelectorError(f"found '{tokens[i]}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def label_matcher(text: str | None) -> Callable[[dict[str, str]], bool]:
    reqs = parse_label_selector(text)
    return lambda labels: all(r.matches(labels or {}) for r in reqs)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str  # "=" or "!="
    value: str


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    if not text or not text.strip():
        return []
    out = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                fname, _, value = part.partition(op)
                out.append(FieldRequirement(fname.strip(), "!=" if op == "!=" else "=", _unescape(value.strip())))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
    return out


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def selector_string(selector: dict | None) -> str:
    """A LabelSelector rendered as the string the scale subresource reports."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
