"""Make container output safe to show: colours stay, every other control sequence goes.

A log line is written by whatever runs in the container, so it is hostile input for the viewer.
Colours (SGR, `ESC [ … m`) are kept because they carry meaning (red errors, green OKs) and the
browser renders them from a fixed palette; everything else a terminal would obey is removed:
cursor moves and screen clears (other CSI), window titles and clipboard writes (OSC, incl. 52),
device control strings (DCS, SOS, PM, APC), lone or two-byte escapes, C0 and C1 controls, and
bidirectional overrides that would make text display in another order than it reads. A `\\r`
overwrite keeps what a terminal would finally show of a progress line: the last segment.

These are pure functions on `str`; the stream readers call them in their threads.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINE_CHARS", "ascii_block_is_clean", "block_is_clean", "sanitize", "strip_all"]

# A line longer than this is cut: a container that prints megabytes without a newline must not
# become one unbounded JSON frame and one unbounded DOM node.
MAX_LINE_CHARS = 16 * 1024

# SGR with a sane parameter list (digits, `;`, `:` for 38:2:r:g:b). Bounded so that a line of
# endless parameters cannot be kept as one "colour".
_SGR = r"\x1b\[[0-9;:]{0,48}m"
# Any other CSI, 7-bit or C1 (0x9b), complete or cut off at the end of the line.
_CSI = r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
# String sequences: OSC (title, clipboard, hyperlinks…), DCS, SOS, PM, APC — up to their
# terminator (BEL, ST as ESC \\ or 0x9c) or, when unterminated, to the end of the line.
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
# Every other escape: ESC, optional intermediates, a final byte (or nothing: a lone ESC).
_ESC = r"\x1b[\x20-\x2f]*[\x30-\x7e]?"
# Controls left once sequences are gone: C0 but tab, DEL, C1, and the bidi embedding/override
# and isolate characters (a line could otherwise reorder how the lines after it read).
_CONTROL = r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"

_ANY = re.compile(f"({_SGR})|{_CSI}|{_STRING}|{_ESC}|{_CONTROL}")
# The quick check: most log lines contain no control character at all and are returned as is.
_NEEDS_WORK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The same for a block of lines: newlines are allowed between them.
_BLOCK_NEEDS_WORK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def block_is_clean(text: str) -> bool:
    """True when `text` (lines joined by newlines) has nothing to remove: no escape sequence,
    colours included, and no control character. One scan in C for a whole chunk of a log."""
    return _BLOCK_NEEDS_WORK.search(text) is None


# What a clean ASCII block holds: printable characters, tabs and the newlines between lines.
_ASCII_CLEAN = bytes(range(0x20, 0x7F)) + b"\t\n"


def ascii_block_is_clean(data: bytes) -> bool:
    """`block_is_clean` on raw bytes, before decoding: True when they are ASCII with nothing to
    remove. Two passes in C (the usual case of a log), no regex; False says "look closer"."""
    return data.isascii() and not data.translate(None, _ASCII_CLEAN)


def _keep_sgr(match: re.Match[str]) -> str:
    return match.group(1) or ""


def _last_overwrite(text: str) -> str:
    """What a terminal shows after `\\r` overwrites: the last non-empty segment.

    (A real terminal would show the tail of a longer earlier segment past the end of a shorter
    later one; for a log that is noise, and progress bars redraw the whole line anyway.)
    """
    for segment in reversed(text.split("\r")):
        if segment:
            return segment
    return ""


def _cut(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return text[:MAX_LINE_CHARS] + " …[line cut]"


def sanitize(text: str) -> str:
    """One log line with SGR colours kept and every other control sequence removed."""
    if not _NEEDS_WORK.search(text):
        return _cut(text)
    if "\r" in text:
        text = _last_overwrite(text)
    return _cut(_ANY.sub(_keep_sgr, text))


def strip_all(text: str) -> str:
    """One log line as plain text: colours removed too (downloads, search)."""
    if not _NEEDS_WORK.search(text):
        return _cut(text)
    if "\r" in text:
        text = _last_overwrite(text)
    return _cut(_ANY.sub("", text))
