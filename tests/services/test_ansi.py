"""The log sanitiser against a hostile corpus: colours survive, nothing else a terminal obeys does."""

from __future__ import annotations

import re

import pytest

from services.ansi import MAX_LINE_CHARS, sanitize, strip_all
from services.streams.escaping import LineSplitter
from services.streams.timestamps import split_stamp, timestamp_key

ESC = "\x1b"
# After sanitising, the only escape sequences allowed are SGR.
ONLY_SGR = re.compile(r"^(?:[^\x00-\x08\x0a-\x1f\x7f-\x9f]|\x1b\[[0-9;:]*m)*$")

HOSTILE = {
    "cursor moves": f"a{ESC}[10;20Hb{ESC}[2Ac{ESC}[5Cd",
    "screen clear": f"{ESC}[2J{ESC}[3J{ESC}[Hcleared",
    "erase line": f"keep{ESC}[2K{ESC}[1Kthis",
    "title (BEL)": f"{ESC}]0;pwned{chr(7)}text",
    "title (ST)": f"{ESC}]2;pwned{ESC}\\text",
    "OSC 52 clipboard": f"{ESC}]52;c;ZWNobyBoYWNrZWQ={chr(7)}copy",
    "OSC 8 hyperlink": f"{ESC}]8;;javascript:alert(1){ESC}\\click{ESC}]8;;{ESC}\\",
    "unterminated OSC": f"before{ESC}]52;c;ZWNobyBoYWNrZWQ=",
    "DCS": f"{ESC}P+q544e{ESC}\\dcs",
    "APC": f"{ESC}_Gf=100;AAAA{ESC}\\apc",
    "PM and SOS": f"{ESC}^private{ESC}\\{ESC}Xsos{ESC}\\pm",
    "C1 CSI": "\x9b2Jc1",
    "C1 OSC": "\x9d0;title\x9cc1osc",
    "private modes": f"{ESC}[?1049h{ESC}[?25l{ESC}[?1000halt screen",
    "device queries": f"{ESC}[6n{ESC}[c{ESC}Zquery",
    "charset and keypad": f"{ESC}(0{ESC})B{ESC}={ESC}>{ESC}7{ESC}8{ESC}Mcharset",
    "reset": f"{ESC}cRIS",
    "lone ESC": f"end{ESC}",
    "C0 controls": "bell\x07back\x08space\x0bvt\x0cff\x00nul\x7fdel",
    "bidi override": "file\u202etxt.exe\u2066isolated\u2069",
    "script tag": "<script>alert(document.cookie)</script>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_it_leaves_no_control_sequence_but_colours(name):
    cleaned = sanitize(HOSTILE[name])
    assert ONLY_SGR.match(cleaned), repr(cleaned)
    assert ESC not in strip_all(HOSTILE[name])


def test_it_keeps_the_text_around_what_it_removes():
    assert sanitize(HOSTILE["cursor moves"]) == "abcd"
    assert sanitize(HOSTILE["title (BEL)"]) == "text"
    assert sanitize(HOSTILE["title (ST)"]) == "text"
    assert sanitize(HOSTILE["OSC 52 clipboard"]) == "copy"
    assert sanitize(HOSTILE["OSC 8 hyperlink"]) == "click"
    assert sanitize(HOSTILE["unterminated OSC"]) == "before"
    assert sanitize(HOSTILE["C0 controls"]) == "bellbackspacevtffnuldel"
    assert sanitize(HOSTILE["bidi override"]) == "filetxt.exeisolated"


def test_markup_is_text_for_the_browser_to_escape():
    # The sanitiser is about terminal control; markup stays text, and the viewer only ever sets
    # it with textContent (the browser journey checks that it renders inert).
    assert sanitize(HOSTILE["script tag"]) == "<script>alert(document.cookie)</script>"


def test_it_keeps_colours_and_strip_all_removes_them():
    line = f"{ESC}[32mINFO {ESC}[0m{ESC}[1;38;5;196mred{ESC}[38;2;1;2;3m rgb{ESC}[m"
    assert sanitize(line) == line
    assert strip_all(line) == "INFO red rgb"


def test_a_carriage_return_keeps_what_the_terminal_would_finally_show():
    assert sanitize("progress 10%\rprogress 55%\rprogress 100%") == "progress 100%"
    assert sanitize("windows line\r") == "windows line"
    assert sanitize("\r\r") == ""


def test_sequences_cannot_be_rebuilt_from_the_pieces_left():
    # Removing the inner sequence must not join an ESC to a "[2J" left next to it.
    for line in (f"{ESC}{ESC}[2J", f"{ESC}\x07[2J", f"{ESC}]0;x{ESC}[2J", f"\x9b{ESC}[31m"):
        cleaned = sanitize(line)
        assert ONLY_SGR.match(cleaned), repr(cleaned)
        assert "[2J" not in cleaned or ESC not in cleaned


def test_an_endless_line_is_cut():
    cleaned = sanitize("x" * (MAX_LINE_CHARS * 3))
    assert len(cleaned) < MAX_LINE_CHARS + 20 and cleaned.endswith("[line cut]")
    # Endless SGR parameters are not a colour to keep.
    assert ESC not in sanitize(f"{ESC}[" + "1;" * 1000 + "m")


def test_the_splitter_cuts_lines_across_chunks_and_cleans_only_after_the_timestamp():
    splitter = LineSplitter()
    lines, size = splitter.feed(b"2024-05-01T10:00:00.000000001Z first\n2024-05-01T10:00:00.5Z sec")
    assert lines == ["2024-05-01T10:00:00.000000001Z first"] and size == 37
    lines, _ = splitter.feed(b"ond \x1b]0;t\x07line\nno timestamp here\n2024-05-01T10:00:01Z 10%\r100%\n")
    assert lines == ["2024-05-01T10:00:00.5Z second line", "no timestamp here", "2024-05-01T10:00:01Z 100%"]
    assert split_stamp(lines[0]) == ("2024-05-01T10:00:00.5Z", "second line")
    assert split_stamp(lines[1]) == ("", "no timestamp here")
    assert splitter.feed(b"\xff\xfe broken utf-8\n")[0] == ["\ufffd\ufffd broken utf-8"]
    # A multi-byte character cut between two chunks comes out whole.
    assert splitter.feed("2024-05-01T10:00:02Z caf\u00e9".encode()[:-1])[0] == []
    assert splitter.feed(b"\xa9!\n")[0] == ["2024-05-01T10:00:02Z caf\u00e9!"]
    assert splitter.flush() == []


def test_a_plain_text_splitter_drops_colours_too():
    splitter = LineSplitter(keep_colours=False)
    assert splitter.feed(b"2024-05-01T10:00:00Z \x1b[32mok\x1b[0m\n")[0] == ["2024-05-01T10:00:00Z ok"]


def test_a_line_without_an_end_comes_out_in_pieces():
    splitter = LineSplitter()
    lines, size = splitter.feed(b"x" * (MAX_LINE_CHARS * 4 + 10))
    assert size == MAX_LINE_CHARS * 4 + 10 and len(lines) == 1 and lines[0].endswith("[line cut]")


def test_timestamps_compare_whatever_their_precision():
    assert timestamp_key("2024-05-01T10:00:00.5Z") > timestamp_key("2024-05-01T10:00:00.25Z")
    assert timestamp_key("2024-05-01T10:00:01Z") > timestamp_key("2024-05-01T10:00:00.999999999Z")
