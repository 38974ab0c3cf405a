"""The line typed at ``connect``'s terminal: editing, echo, and messages printed above it."""

from __future__ import annotations

import os

import pytest
from cli_process import screen

from wskit.lineedit import CLEAR_LINE, MAX_LINE, LineEditor, terminal_mode


def typed(editor: LineEditor, *chunks: bytes) -> tuple[list[str], str, bool]:
    lines: list[str] = []
    echo = ""
    ended = False
    for chunk in chunks:
        more, out, ended = editor.feed(chunk)
        lines += more
        echo += out
    return lines, echo, ended


def test_a_message_is_printed_above_the_line_being_typed() -> None:
    """The point of it all (issue 16): the typed text stays whole under what arrives."""
    editor = LineEditor()
    output = editor.redraw()
    _, echo, _ = typed(editor, b"hel")
    output += echo + editor.above("< a message") + editor.above("< another")
    _, echo, _ = typed(editor, b"lo")
    output += echo
    assert screen(output) == ["< a message", "< another", "> hello"]
    assert editor.buffer == "hello"


@pytest.mark.parametrize("typed_text", ["x" * 8, "x" * 15, "x" * 18, "x" * 19, "y" * 40])
def test_a_line_longer_than_a_row_is_erased_whole(typed_text: str) -> None:
    """A typed line that wraps takes several rows; all are erased before it is drawn again."""
    editor = LineEditor(columns=lambda: 10)
    output = editor.redraw()
    _, echo, _ = typed(editor, typed_text.encode())
    output += echo + editor.above("< a message")
    _, echo, _ = typed(editor, b"z")
    output += echo + editor.above("< another")
    line = "> " + typed_text + "z"
    wrapped = [line[i:i + 10] for i in range(0, len(line), 10)]
    assert screen(output, columns=10) == ["< a message"[:10], "e", "< another", *wrapped]
    assert screen(output + editor.clear(), columns=10)[-1] == ""


def test_wide_characters_take_two_columns() -> None:
    editor = LineEditor(columns=lambda: 10)
    typed(editor, "日本語の".encode())  # 2 + 8 columns: one row exactly
    assert editor.clear() == CLEAR_LINE
    typed(editor, b"x")
    assert editor.clear() == "\x1b[1A" + CLEAR_LINE


def test_lines_editing_and_the_end() -> None:
    editor = LineEditor()
    lines, echo, ended = typed(editor, b"one\rtwo\n", b"thr\xc3", b"\xa9e\x7f\x7fx\n")
    assert (lines, ended) == (["one", "two", "thrx"], False)
    assert screen(editor.redraw() + echo) == ["> one", "> two", "> thrx", "> "]
    assert typed(editor, b"a b  c\x17")[0:1] == ([],) and editor.buffer == "a b  "
    typed(editor, b"\x17")
    assert editor.buffer == "a "
    typed(editor, b"\x15")
    assert editor.buffer == ""
    typed(editor, b"x\x08\x08")  # backspace on an empty line does nothing
    assert editor.buffer == ""
    lines, echo, ended = typed(editor, b"some\x04")  # Ctrl-D with text: the bell, no end
    assert (lines, ended, echo[-1]) == ([], False, "\x07")
    assert typed(editor, b"\x0c")[1] == CLEAR_LINE + "> some"
    typed(editor, b"\x15")
    assert typed(editor, b"\x04") == ([], "", True)


def test_keys_that_are_not_text_are_ignored() -> None:
    editor = LineEditor()
    # Arrow keys (CSI), F1 (SS3), Alt-x, a long CSI, other controls: none of it is text.
    lines, _, _ = typed(editor, b"a\x1b[A\x1b[1;5Cb\x1bOPc\x1bxd\x1b[", b"2", b"~e\x01\x02\tf\n")
    assert lines == ["abcde\tf"]


def test_the_line_is_bounded() -> None:
    editor = LineEditor()
    _, echo, _ = typed(editor, b"x" * (MAX_LINE + 3))
    assert len(editor.buffer) == MAX_LINE and echo.endswith("\x07" * 3)


def test_terminal_mode_on_a_pty_and_not_on_a_pipe() -> None:
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    read_end, write_end = os.pipe()
    try:
        before = termios.tcgetattr(slave)
        with terminal_mode(slave) as tty:
            assert tty is True
            inside = termios.tcgetattr(slave)
            assert not inside[3] & (termios.ICANON | termios.ECHO)
            assert inside[3] & termios.ISIG  # Ctrl-C still interrupts
        assert termios.tcgetattr(slave) == before
        with terminal_mode(read_end) as tty:
            assert tty is False
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)
