"""Where each step's header line is in a plan's text, kept across writes.

Marking rewrites one line and never adds or removes lines, so the header line
numbers found by one parse (collection's, or the marker's first) still hold after
any writer's marks; a person's lines appended at the end keep them too. The cache
checks that, cheaply, against the text the marker reads each time, and parses
again only when the text changed in another way. Lines are split at LF, CRLF and
CR only: never at U+0085, U+2028 or the other characters ``str.splitlines`` uses.
"""

from __future__ import annotations

import re
import threading
from itertools import accumulate, compress, count
from operator import ne
from typing import Any

from pytest_dotasks.plan.header import Header, parse_header
from pytest_dotasks.plan.model import base_number

BOM = "\ufeff"
# Line breaks as markdown (and the plan grammar) count them.
BREAK = re.compile(r"\r\n|\r|\n")


class Lines:
    """A text's lines (without their breaks) and where each starts.

    Built with ``str.split("\\n")`` (C speed) unless the text has a lone CR; line
    offsets come from one ``accumulate``. A rewritten line's length change is kept
    in a Fenwick tree, so marking line i never shifts a list of every later offset.
    """

    __slots__ = ("_acc", "_crlf", "_step", "_tree", "items")

    def __init__(self, text: str) -> None:
        if "\r" not in text or text.count("\r") == text.count("\r\n"):
            self.items = text.split("\n")  # a CRLF line keeps its "\r": see line()
            self._step = 1  # each "\n" after a line
            self._crlf = "\r" in text
            self._acc = [0, *accumulate(map(len, self.items))]
        else:  # a lone CR (classic Mac or mixed endings): the slow, general split
            self.items = BREAK.split(text)
            seps = BREAK.findall(text)
            self._step = 0
            self._crlf = False
            self._acc = [0, *accumulate(len(a) + len(b) for a, b in zip(self.items, seps))]
            self._acc.append(self._acc[-1] + len(self.items[-1]))
        self._tree: list[int] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def kind(self) -> tuple[int, bool]:
        return self._step, self._crlf

    def line(self, i: int) -> str:
        s = self.items[i]
        return s[:-1] if self._crlf and s.endswith("\r") else s

    def start(self, i: int) -> int:
        return self._acc[i] + self._step * i + self._shift(i)

    def _shift(self, i: int) -> int:
        """Sum of the length changes of lines before line ``i``."""
        tree = self._tree
        total = 0
        while tree is not None and i > 0:
            total += tree[i]
            i -= i & -i
        return total

    def replace(self, i: int, line: str) -> str:
        """Set line ``i`` (its break kept); returns the line as it was stored before."""
        old = self.items[i]
        self.set_raw(i, line + "\r" if self._crlf and old.endswith("\r") else line)
        return old

    def set_raw(self, i: int, new: str) -> None:
        delta = len(new) - len(self.items[i])
        self.items[i] = new
        if delta:
            if self._tree is None:
                self._tree = [0] * (len(self.items) + 1)
            k = i + 1
            while k < len(self._tree):
                self._tree[k] += delta
                k += k & -k

    def changed(self, other: Lines) -> list[int] | None:
        """Indexes of the lines that differ from ``other``'s (None: not comparable)."""
        if len(other.items) != len(self.items) or other.kind() != self.kind():
            return None
        return list(compress(count(), map(ne, self.items, other.items)))

    def last_blank_before_end(self) -> int:
        """Index of the last blank line (spaces and tabs only), -1 if none; the final
        empty remainder after a trailing break does not count."""
        for i in range(len(self.items) - 2, -1, -1):
            if not self.line(i).strip(" \t"):
                return i
        return -1


class HeaderCache:
    """Header line numbers and line offsets of the last text we read or wrote.

    Marking rewrites one line and never adds or removes lines, so after any
    writer's mark (ours, another xdist worker's) the header line numbers still
    hold: a changed text whose only changed lines are known header lines (still
    headers of the same steps, same indent and bullet) keeps the numbers. A
    person's lines appended at the end keep them too, for headers followed by a
    blank line (a setext underline could otherwise turn the last paragraph into a
    heading). Anything else is parsed again: a run of N steps parses the file
    about once, not N times.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._text: str | None = None
        self._lines: Lines | None = None
        self._at: dict[int, int] = {}  # step number -> line index
        self._number: dict[int, int] = {}  # line index -> step number
        self._complete = False  # every step of the text is in _at
        # (lines changed in place, text before, line, raw line before)
        self._undo: list[tuple[Lines, str, int, str]] = []
        self._saved: tuple[Any, ...] | None = None
        self._recording = False  # between begin() and rollback()/done(): keep undo entries

    @property
    def text(self) -> str | None:
        return self._text

    @property
    def lines(self) -> dict[int, int]:
        return self._at

    def put(self, text: str, header_lines: dict[int, int], lines: Lines | None = None) -> None:
        self._text, self._lines = text, lines or Lines(text)
        self._at = dict(header_lines)
        self._number = {i: n for n, i in header_lines.items()}
        self._complete = True

    def _parse(self, text: str, lines: Lines | None = None) -> None:
        from pytest_dotasks.plan.specmd import header_lines

        self.put(text, header_lines(text), lines)

    def _sync(self, text: str) -> None:
        if text is self._text:
            return
        if text == self._text:
            self._text = text  # the next check is by identity: no second compare of the whole text
            return
        if self._text is None or self._lines is None:
            self._parse(text)
            return
        new = Lines(text)
        diff = self._lines.changed(new)
        if diff is not None and all(self._same_header(i, new) for i in diff):
            self._text, self._lines = text, new
            return
        if diff is None and self._text.endswith("\n") and text.startswith(self._text):
            # Lines appended at the end: headers before the last blank line hold.
            limit = self._lines.last_blank_before_end()
            self._at = {n: i for n, i in self._at.items() if i < limit}
            self._number = {i: n for n, i in self._at.items()}
            self._text, self._lines, self._complete = text, new, False
            return
        self._parse(text, new)

    def _same_header(self, i: int, new: Lines) -> bool:
        number = self._number.get(i)
        if number is None or self._lines is None:
            return False
        old_h, new_h = header_at(self._lines, i), header_at(new, i)
        return old_h is not None and new_h is not None and new_h.number == base_number(number) and new_h.lead == old_h.lead

    def locate(self, text: str, number: int) -> tuple[int, int, int] | None:
        """(line index, start, end) of STEP ``number``'s header in ``text``, or None."""
        self._sync(text)
        for _ in range(2):
            lines = self._lines
            i = self._at.get(number)
            if lines is not None and i is not None:
                start, line = lines.start(i), lines.line(i)
                if i == 0 and line.startswith(BOM):
                    start, line = start + 1, line[1:]  # the BOM stays before the first line
                h = parse_header(line)
                if h is not None and h.number == base_number(number):  # T320-2's line shows T320
                    return i, start, start + len(line)
            if self._complete:
                return None
            self._parse(text, lines)
        return None

    def after_rewrite(self, new_text: str, i: int, new_line: str) -> None:
        assert self._lines is not None and self._text is not None
        if i == 0 and self._lines.items[0].startswith(BOM):
            new_line = BOM + new_line
        raw = self._lines.replace(i, new_line)
        if self._recording:
            self._undo.append((self._lines, self._text, i, raw))
        self._text = new_text

    def begin(self, text: str) -> None:
        """Know ``text`` (the file as read), then record what follows, so ``rollback`` can undo it.

        A cold cache stays cold: a restore that finds nothing to do never parses."""
        self._undo = []
        self._saved = None
        self._recording = True
        if self._text is not None:
            self._sync(text)
            self._saved = (self._text, self._lines, self._at, self._number, self._complete)

    def rollback(self, written: str) -> None:
        """The rewrites since ``begin`` never reached the file: know the file's text again.

        Only when the cache still holds ``written`` (another plan may have been
        marked meanwhile). The next attempt then compares the file with the text it
        really had: a person's appended lines cost no parse, however many attempts.
        """
        undo, saved = self._undo, self._saved
        self.done()
        if self._text is not written or not undo:
            return
        for lines, _, i, raw in reversed(undo):
            lines.set_raw(i, raw)
        if saved is not None:
            self._text, self._lines, self._at, self._number, self._complete = saved
        else:  # the cache was cold: keep the parse, of the text as read
            self._text = undo[0][1]

    def done(self) -> None:
        """The rewrites since ``begin`` are in the file (or forgotten): stop recording."""
        self._undo, self._saved, self._recording = [], None, False


def header_at(lines: Lines, i: int) -> Header | None:
    line = lines.line(i)
    return parse_header(line[1:] if i == 0 and line.startswith(BOM) else line)


cache = HeaderCache()
# The monitor thread settles background steps while the main thread marks.
cache_lock = threading.Lock()
