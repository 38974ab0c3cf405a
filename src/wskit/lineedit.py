"""The line typed at a terminal by ``connect``, kept whole while messages are printed above it."""

from __future__ import annotations

import codecs
import contextlib
import os
import unicodedata
from collections.abc import Callable, Iterator

__all__ = ["LineEditor", "terminal_mode"]

#: Erases from the start of the cursor's row to the end of the screen.
CLEAR_LINE = "\r\x1b[J"
#: Longest line kept: typing beyond it rings the bell rather than growing without bound.
MAX_LINE = 64 * 1024

_BACKSPACES = ("\x7f", "\x08")
_KILL_LINE = "\x15"  # Ctrl-U
_KILL_WORD = "\x17"  # Ctrl-W
_END_OF_INPUT = "\x04"  # Ctrl-D
_REDRAW = "\x0c"  # Ctrl-L
_BELL = "\x07"


class LineEditor:
    """Echo and editing of one input line, done here because the terminal's own echo is off.

    ``feed(data)`` takes what the terminal sent and returns the lines completed with Enter,
    what to write back (the echo) and whether Ctrl-D on an empty line ended the input.
    ``above(text)`` is what to write to print ``text`` on its own line above the line being
    typed, which is then drawn again with the prompt, intact. Backspace, Ctrl-U (the whole
    line), Ctrl-W (a word) and Ctrl-L (redraw) edit; escape sequences (arrow keys) are ignored.
    ``columns()`` is the terminal's width: a line longer than a row wraps, and the rows it
    takes are all erased before it is drawn again.
    """

    def __init__(self, prompt: str = "> ", columns: Callable[[], int] = lambda: 80) -> None:
        self.prompt = prompt
        self.columns = columns
        self.buffer = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._escape = ""  # an escape sequence being received, swallowed whole

    def feed(self, data: bytes) -> tuple[list[str], str, bool]:
        lines: list[str] = []
        echo: list[str] = []
        for char in self._decoder.decode(data):
            if self._escape:
                self._escape = self._swallow(self._escape + char)
            elif char == "\x1b":
                self._escape = char
            elif char in ("\r", "\n"):
                lines.append(self.buffer)
                self.buffer = ""
                echo.append("\n" + self.prompt)
            elif char in _BACKSPACES:
                if self.buffer:
                    self.buffer = self.buffer[:-1]
                    echo.append(self.redraw())
            elif char == _KILL_LINE:
                self.buffer = ""
                echo.append(self.redraw())
            elif char == _KILL_WORD:
                self.buffer = self.buffer.rstrip()
                self.buffer = self.buffer[: len(self.buffer) - len(self.buffer.split(" ")[-1])]
                echo.append(self.redraw())
            elif char == _REDRAW:
                echo.append(self.redraw())
            elif char == _END_OF_INPUT:
                if not self.buffer:
                    return lines, "".join(echo), True
                echo.append(_BELL)
            elif char < " " and char != "\t":
                continue  # other control characters mean nothing here
            elif len(self.buffer) >= MAX_LINE:
                echo.append(_BELL)
            else:
                self.buffer += char
                echo.append(char)
        return lines, "".join(echo), False

    @staticmethod
    def _swallow(sequence: str) -> str:
        """What is left of an escape sequence after ``sequence``: "" once it is complete.

        ESC [ parameters final (CSI, the arrow keys: ESC [ A) or ESC O final (SS3, F1-F4).
        """
        if len(sequence) == 2:
            return sequence if sequence[1] in "[O" else ""
        if sequence[1] == "O":
            return ""
        return "" if "@" <= sequence[-1] <= "~" else sequence[:16]

    def redraw(self) -> str:
        """The typed line drawn again: the prompt and the text typed so far."""
        return self.clear() + self.prompt + self.buffer

    def above(self, text: str) -> str:
        """Print ``text`` as a line of its own, then draw the typed line again below it."""
        return self.clear() + text + "\n" + self.prompt + self.buffer

    def clear(self) -> str:
        """Erase the typed line, every row of it, leaving the cursor where it began."""
        # After the last column the cursor waits on the same row (a pending wrap), so a line
        # of exactly one row's width still takes one row.
        rows_above = max(0, _cells(self.prompt + self.buffer) - 1) // max(1, self.columns())
        return (f"\x1b[{rows_above}A" if rows_above else "") + CLEAR_LINE


def _cells(text: str) -> int:
    """How many terminal columns ``text`` takes: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@contextlib.contextmanager
def terminal_mode(fd: int) -> Iterator[bool]:
    """Inside the block, ``fd``'s terminal passes each key at once without echoing it
    (ICANON and ECHO off), while Ctrl-C still raises SIGINT. Yields False, changing nothing,
    when ``fd`` is not a terminal or the platform has no termios; restores the terminal after.
    """
    try:
        import termios
    except ImportError:  # pragma: no cover - Windows
        yield False
        return
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
