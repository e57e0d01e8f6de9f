"""Log bytes into sanitised lines and into the JSON strings of a socket frame, fast for clean text."""

from __future__ import annotations

import json
from collections.abc import Callable

from services.ansi import MAX_LINE_CHARS, ascii_block_is_clean, block_is_clean, sanitize, strip_all
from services.streams.timestamps import is_timestamp, split_stamp

# A line with no newline is cut at this many bytes (see `ansi.MAX_LINE_CHARS`).
MAX_LINE_BYTES = MAX_LINE_CHARS * 4


def json_strings(lines: list[str]) -> str:
    """Lines as the comma-separated JSON strings of an array's inside (no brackets)."""
    return json.dumps(lines)[1:-1] if lines else ""


# No line longer than this passes the fast paths (a timestamp and its space come before the
# text, whose limit is MAX_LINE_CHARS).
_LINE_LIMIT = MAX_LINE_CHARS + 40
_LINE_WINDOW = _LINE_LIMIT // 2


def _lines_fit(block: bytes) -> bool:
    """True when no line of `block` is longer than `_LINE_LIMIT` bytes.

    A line that long covers at least one whole aligned window of half that size, so a block
    whose every such window holds a newline is fine: a few `find`s in C instead of splitting
    the block into its lines. Only when one of them has none are the lines measured.
    """
    if len(block) <= _LINE_LIMIT:
        return True
    for start in range(0, len(block) - _LINE_WINDOW + 1, _LINE_WINDOW):
        if block.find(b"\n", start, start + _LINE_WINDOW) < 0:
            return max(map(len, block.split(b"\n"))) <= _LINE_LIMIT
    return True


def _escape_ascii(block: bytes) -> tuple[bytes, int]:
    """Clean ASCII lines (no control character but tabs, and newlines between them) as the
    inside of JSON strings joined by `","`, and their number: only backslashes, quotes and tabs
    need escaping."""
    if b"\\" in block:
        block = block.replace(b"\\", b"\\\\")
    if b'"' in block:
        block = block.replace(b'"', b'\\"')
    if b"\t" in block:
        block = block.replace(b"\t", b"\\t")
    joined = block.replace(b"\n", b'","')
    # Each newline became three characters: what the join added counts the lines.
    return joined, (len(joined) - len(block)) // 2 + 1


def _escape_text(text: str) -> tuple[str, int]:
    """`_escape_ascii` for clean lines that are not all ASCII."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    if "\t" in text:
        text = text.replace("\t", "\\t")
    joined = text.replace("\n", '","')
    return joined, (len(joined) - len(text)) // 2 + 1


class LineSplitter:
    """Bytes of a timestamped log in, sanitised `"<timestamp> <text>"` lines out, across chunk
    boundaries.

    A whole chunk is decoded, checked and split at once: a log is mostly clean text, and the
    per-line work of Python would be most of the cost of streaming it (a burst of 100,000
    lines). Only the lines of a chunk that holds something to remove are cleaned one by one.

    `blocks` hands out the complete lines of a chunk as one block of bytes; `lines` makes them
    a list, `encode` the JSON strings of a frame directly (the socket needs nothing else).
    """

    def __init__(self, *, keep_colours: bool = True) -> None:
        self._rest = b""
        self._clean: Callable[[str], str] = sanitize if keep_colours else strip_all

    def feed(self, chunk: bytes) -> tuple[list[str], int]:
        """The complete lines in `chunk` (and before it), and their size in bytes."""
        blocks, size = self.blocks(chunk)
        lines: list[str] = []
        for block in blocks:
            lines += self.lines(block)
        return lines, size

    def blocks(self, chunk: bytes) -> tuple[list[bytes], int]:
        """The complete lines in `chunk` (and before it) as blocks of bytes without their last
        newline, and their size in bytes."""
        data = self._rest + chunk if self._rest else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) <= MAX_LINE_BYTES:
                self._rest = data
                return [], 0
            # No newline in sight: let the line out in pieces rather than buffer it whole.
            self._rest = b""
            return [data], len(data)
        self._rest = data[cut + 1 :]
        # A newline byte never occurs inside a UTF-8 sequence: the cut splits no character.
        blocks = [data[:cut]]
        size = cut + 1
        if len(self._rest) > MAX_LINE_BYTES:
            blocks.append(self._rest)
            size += len(self._rest)
            self._rest = b""
        return blocks, size

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, b""
        return self._lines(rest.decode("utf-8", "replace")) if rest else []

    def lines(self, block: bytes) -> list[str]:
        return self._lines(block.decode("utf-8", "replace"))

    def encode(self, block: bytes) -> tuple[str, int, str]:
        """The lines of `block` as JSON strings (see `json_strings`), their number, and the
        timestamp of the last one ("" when it has none).

        The usual block (clean lines of a sane length) is escaped and joined by a few replaces
        over the whole block, never line by line, on bytes while it is ASCII.
        """
        if block and _lines_fit(block):
            payload, count = "", 0
            if ascii_block_is_clean(block):
                escaped, count = _escape_ascii(block)
                payload = escaped.decode("ascii")
            else:
                text = block.decode("utf-8", "replace")
                if block_is_clean(text):
                    payload, count = _escape_text(text)
            if count:
                last = block[block.rfind(b"\n") + 1 :][:40].partition(b" ")[0].decode("ascii", "replace")
                return '"' + payload + '"', count, last if is_timestamp(last) else ""
        lines = self.lines(block)
        return json_strings(lines), len(lines), split_stamp(lines[-1])[0]

    def _lines(self, text: str) -> list[str]:
        lines = text.split("\n")
        # A timestamp and its space come before the text: a clean line fits in this.
        if block_is_clean(text) and max(map(len, lines)) <= MAX_LINE_CHARS + 40:
            return lines
        return [self._clean_line(line) for line in lines]

    def _clean_line(self, line: str) -> str:
        ts, text = split_stamp(line)
        return f"{ts} {self._clean(text)}" if ts else self._clean(line)
