"""`.env` files → variables, for bulk entry of an environment's variables and secrets.

What is accepted, one per line: `KEY=value`, `export KEY=value`, values in single quotes
(literal) or double quotes (with the escapes \\n, \\t, \\", \\\\ and values spanning lines), an
unquoted value ending at ` #` (an inline comment), blank lines and `#` comment lines. A key
given twice keeps its last value and is reported, so the preview can say so. Errors name the
line and never repeat a value: the file holds secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_DOTENV_BYTES = 256 * 1024
MAX_VARIABLES = 500
MAX_VALUE_CHARS = 64 * 1024
# Said for a dropped file, a chosen one and pasted text alike, and for a paste too large to read.
TOO_LARGE_MESSAGE = f"The file is larger than {MAX_DOTENV_BYTES // 1024} KiB; a .env file is much smaller."
_DOUBLE_QUOTED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


@dataclass
class DotenvResult:
    values: dict[str, str] = field(default_factory=dict)
    # key → the line numbers where it was set, when more than one: the last one wins.
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _double_quoted(text: str, start_line: int) -> tuple[str, str] | None:
    """Parse a double-quoted value from `text` (which starts after the opening quote).
    Returns (value, rest after the closing quote), or None when the quote never closes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_DOUBLE_QUOTED_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            return "".join(out), text[i + 1 :]
        out.append(ch)
        i += 1
    return None


def parse_dotenv(text: str) -> DotenvResult:
    result = DotenvResult()
    seen: dict[str, list[int]] = {}
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    number = 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep:
            result.errors.append(f"Line {number}: write KEY=value.")
            continue
        if not KEY_RE.match(key):
            # The key is shown (it is not secret); cut so that a pasted value cannot flood the page.
            shown = key if len(key) <= 60 else key[:60] + "…"
            result.errors.append(
                f"Line {number}: “{shown}” is not a valid variable name: use letters, digits and "
                "underscores, not starting with a digit."
            )
            continue
        rest = rest.lstrip()
        key_line = number
        if rest.startswith('"'):
            body = rest[1:]
            parsed = _double_quoted(body, key_line)
            # A double-quoted value may span lines, as in docker compose and python-dotenv.
            while parsed is None and number < len(lines):
                body += "\n" + lines[number]
                number += 1
                parsed = _double_quoted(body, key_line)
            if parsed is None:
                result.errors.append(f"Line {key_line}: the double quote opened here is never closed.")
                continue
            value, after = parsed
            if after.strip() and not after.strip().startswith("#"):
                result.errors.append(f"Line {number}: only a # comment may follow the closing quote.")
                continue
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                result.errors.append(f"Line {key_line}: the single quote opened here is never closed.")
                continue
            value, after = rest[1:end], rest[end + 1 :]
            if after.strip() and not after.strip().startswith("#"):
                result.errors.append(f"Line {key_line}: only a # comment may follow the closing quote.")
                continue
        else:
            # An unquoted value ends at a # that follows whitespace (`a#b` keeps its #).
            value = re.split(r"\s+#", rest, maxsplit=1)[0].strip()
        if len(value) > MAX_VALUE_CHARS:
            result.errors.append(f"Line {key_line}: the value of {key} is longer than {MAX_VALUE_CHARS} characters.")
            continue
        seen.setdefault(key, []).append(key_line)
        result.values[key] = value
    result.duplicates = {key: lines_ for key, lines_ in seen.items() if len(lines_) > 1}
    if len(result.values) > MAX_VARIABLES:
        result.errors.append(f"At most {MAX_VARIABLES} variables in one file.")
    return result


def decode_upload(data: bytes) -> str:
    """The text of an uploaded `.env` file; ValueError with a sentence for the user otherwise."""
    if len(data) > MAX_DOTENV_BYTES:
        raise ValueError(TOO_LARGE_MESSAGE)
    if b"\x00" in data:
        raise ValueError("This is not a text file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("This is not a UTF-8 text file.") from None
    return text
