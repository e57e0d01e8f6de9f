"""The OpenAPI v2 document in gnostic's protobuf encoding (openapi_v2.Document).

client-go fetches /openapi/v2 as `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
unmarshals it as protobuf, with no JSON fallback; kubectl up to 1.29 needs it for `apply`. The
message and field numbers are those of gnostic's openapiv2/OpenAPIv2.proto; vendor extensions
travel as YAML text (JSON is YAML), as gnostic writes them.
"""
from __future__ import annotations

import json
import struct
from typing import Any

from .kinds import Obj

# What client-go asks for (the "@" spelling kube-openapi keeps for it) and the spelling the answer
# carries: Go's mime parser refuses an "@" in a Content-Type.
ACCEPTED = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
MEDIA_TYPE = ACCEPTED[1]


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, value: str | None) -> bytes:
    return _bytes(field, value.encode()) if value else b""


def _strs(field: int, values: list[str] | None) -> bytes:
    return b"".join(_bytes(field, v.encode()) for v in values or [])


def _bool(field: int, value: bool | None) -> bytes:
    return _key(field, 0) + _varint(1) if value else b""


def _double(field: int, value: float | None) -> bytes:
    return _key(field, 1) + struct.pack("<d", float(value)) if value is not None else b""


def _msg(field: int, body: bytes, *, always: bool = False) -> bytes:
    return _bytes(field, body) if body or always else b""


def _any(value: Any) -> bytes:
    return _str(2, json.dumps(value))  # Any.yaml


def _extensions(field: int, node: Obj) -> bytes:
    return b"".join(_msg(field, _str(1, k) + _msg(2, _any(v), always=True), always=True)
                    for k, v in node.items() if k.startswith("x-"))


def schema(node: Obj) -> bytes:
    out = [_str(1, node.get("$ref")), _str(2, node.get("format")), _str(3, node.get("title")),
           _str(4, node.get("description"))]
    if "default" in node:
        out.append(_msg(5, _any(node["default"]), always=True))
    out += [_double(7, node.get("maximum")), _double(9, node.get("minimum")), _str(13, node.get("pattern")),
            _bool(16, node.get("uniqueItems")), _strs(19, node.get("required"))]
    out += [_msg(20, _any(v), always=True) for v in node.get("enum") or []]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out.append(_msg(21, _msg(1, schema(extra), always=True), always=True))
    elif isinstance(extra, bool):
        out.append(_msg(21, _key(2, 0) + _varint(int(extra)), always=True))
    kind = node.get("type")
    if kind:
        out.append(_msg(22, _strs(1, kind if isinstance(kind, list) else [kind]), always=True))
    if isinstance(node.get("items"), dict):
        out.append(_msg(23, _msg(1, schema(node["items"]), always=True), always=True))
    out += [_msg(24, schema(s), always=True) for s in node.get("allOf") or []]
    if "properties" in node:
        props = b"".join(_msg(1, _str(1, name) + _msg(2, schema(prop), always=True), always=True)
                         for name, prop in node["properties"].items())
        out.append(_msg(25, props, always=True))
    out += [_bool(27, node.get("readOnly")), _extensions(31, node)]
    return b"".join(out)


def _parameter(param: Obj) -> bytes:
    if param.get("in") == "body":
        body = (_str(1, param.get("description")) + _str(2, param["name"]) + _str(3, "body")
                + _bool(4, param.get("required")) + _msg(5, schema(param.get("schema") or {}), always=True))
        return _msg(1, _msg(1, body, always=True), always=True)
    if param.get("in") == "path":
        sub = (_bool(1, param.get("required")) + _str(2, "path") + _str(3, param.get("description"))
               + _str(4, param["name"]) + _str(5, param.get("type")) + _bool(19, param.get("uniqueItems")))
        non_body = _msg(4, sub, always=True)
    else:
        sub = (_bool(1, param.get("required")) + _str(2, "query") + _str(3, param.get("description"))
               + _str(4, param["name"]) + _str(6, param.get("type")) + _bool(20, param.get("uniqueItems")))
        non_body = _msg(3, sub, always=True)
    return _msg(1, _msg(2, non_body, always=True), always=True)


def _operation(op: Obj) -> bytes:
    responses = b"".join(
        _msg(1, _str(1, code) + _msg(2, _msg(1, _str(1, r.get("description"))
                                            + (_msg(2, _msg(1, schema(r["schema"]), always=True), always=True)
                                               if "schema" in r else b""), always=True), always=True), always=True)
        for code, r in op.get("responses", {}).items())
    return b"".join([_strs(1, op.get("tags")), _str(3, op.get("description")), _str(5, op.get("operationId")),
                     _strs(6, op.get("produces")), _strs(7, op.get("consumes")),
                     b"".join(_msg(8, _parameter(p), always=True) for p in op.get("parameters") or []),
                     _msg(9, responses, always=True), _strs(10, op.get("schemes")), _extensions(13, op)])


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: Obj) -> bytes:
    out = [_msg(field, _operation(item[m]), always=True) for m, field in _METHODS.items() if m in item]
    out += [_msg(9, _parameter(p), always=True) for p in item.get("parameters") or []]
    return b"".join(out)


def document(doc: Obj) -> bytes:
    """gnostic's openapi_v2.Document for a swagger 2.0 document held as JSON-shaped dicts."""
    info = doc.get("info") or {}
    paths = b"".join(_msg(2, _str(1, path) + _msg(2, _path_item(item), always=True), always=True)
                     for path, item in (doc.get("paths") or {}).items())
    definitions = b"".join(_msg(1, _str(1, name) + _msg(2, schema(s), always=True), always=True)
                           for name, s in (doc.get("definitions") or {}).items())
    return b"".join([_str(1, doc.get("swagger")), _msg(2, _str(1, info.get("title")) + _str(2, info.get("version"))),
                     _msg(8, paths, always=True), _msg(9, definitions, always=True)])
