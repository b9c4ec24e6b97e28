"""Rewrite one step's header line in SPEC.md: atomic, locked, nothing else touched.

The step is found again by its number in the file as it is *now*, so edits a
person made elsewhere while a run went on survive. How the file is written:

- **Compare-and-swap.** The plan is read, the new text computed, and just before
  the new file replaces the old one we check that the old one is still exactly
  what we read (inode, size, mtime and every byte). If a person (an append, an
  editor's save) changed it meanwhile, the mark is redone on their text; after
  ``CAS_ATTEMPTS`` tries a ``MarkError`` leaves the file as they wrote it.
  On Linux the replacement is ``renameat2(RENAME_EXCHANGE)``: the file swapped
  out is checked once more, and if a write landed in the microseconds between
  check and swap it is swapped straight back, so no write is ever lost. Elsewhere
  a plain rename follows the check, and a write that reached the old file in
  between is put back from that file (still open) before the mark is redone.
- **Never through a planted name.** The new text goes to a temporary file created
  exclusively with a random name in the plan's folder (``tempfile.mkstemp``:
  never follows a link), which then replaces the plan. A kill at any moment
  leaves the old or the new file, never half of one, plus at most that one
  temporary file (swept by the next mark).
- **Owner, group and mode kept** (``fchown`` as root, ``fchmod``). A plan whose
  owner the new file could not take (another user's group-writable file) is
  written in place instead, as is a hard-linked plan (``st_nlink > 1``): a
  rename would cut the link, and both names must keep showing one plan. In-place
  writes run under the lock after the same check, and write only from the first
  changed byte on; they are not atomic against a kill in the middle of that one
  write, which is why they are kept to these two cases.
- **A symlinked plan** is written through: the link's target is replaced.
- **Serialised** across xdist workers and concurrent runs by a lock (``filelock``).
- **Journalled.** Every mark is recorded under ``.dotasks/marks/`` (``journal``):
  a marker an editor's stale buffer overwrote is restored by the next run
  (``restore_lost_markers``, called at session start).

Speed: the header line numbers and line offsets of the last text seen are cached,
so a run that is the only writer parses the plan once, and the CAS check re-reads
bytes, never re-parses.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import re
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import accumulate, compress, count
from operator import ne
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dotasks.errors import DotasksError, MarkError
from pytest_dotasks.plan import journal
from pytest_dotasks.plan.header import Header, parse_header, render_header
from pytest_dotasks.plan.model import Marker

if TYPE_CHECKING:
    from filelock import FileLock

LOCK_TIMEOUT = 60.0
# Tries of the compare-and-swap before giving up with a MarkError, with a random pause
# between them growing to 20 ms (a person saving every 20 ms still leaves gaps).
CAS_ATTEMPTS = 30
_BOM = "\ufeff"


def lock_path(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "locks" / f"{spec_path.name}.lock"


# --------------------------------------------------------------------------- lines of a text

# Line breaks as markdown (and the plan grammar) count them: never U+0085, U+2028 or
# the other characters str.splitlines() would also split on.
_BREAK = re.compile(r"\r\n|\r|\n")


class _Lines:
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
            self.items = _BREAK.split(text)
            seps = _BREAK.findall(text)
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

    def changed(self, other: _Lines) -> list[int] | None:
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


class _HeaderCache:
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
        self._lines: _Lines | None = None
        self._at: dict[int, int] = {}  # step number -> line index
        self._number: dict[int, int] = {}  # line index -> step number
        self._complete = False  # every step of the text is in _at
        # (lines changed in place, text before, line, raw line before)
        self._undo: list[tuple[_Lines, str, int, str]] = []
        self._saved: tuple[Any, ...] | None = None
        self._recording = False  # between begin() and rollback()/done(): keep undo entries

    @property
    def text(self) -> str | None:
        return self._text

    @property
    def lines(self) -> dict[int, int]:
        return self._at

    def put(self, text: str, header_lines: dict[int, int], lines: _Lines | None = None) -> None:
        self._text, self._lines = text, lines or _Lines(text)
        self._at = dict(header_lines)
        self._number = {i: n for n, i in header_lines.items()}
        self._complete = True

    def _parse(self, text: str, lines: _Lines | None = None) -> None:
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
        new = _Lines(text)
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

    def _same_header(self, i: int, new: _Lines) -> bool:
        number = self._number.get(i)
        if number is None or self._lines is None:
            return False
        old_h, new_h = _header_at(self._lines, i), _header_at(new, i)
        return old_h is not None and new_h is not None and new_h.number == number and new_h.lead == old_h.lead

    def locate(self, text: str, number: int) -> tuple[int, int, int] | None:
        """(line index, start, end) of STEP ``number``'s header in ``text``, or None."""
        self._sync(text)
        for _ in range(2):
            lines = self._lines
            i = self._at.get(number)
            if lines is not None and i is not None:
                start, line = lines.start(i), lines.line(i)
                if i == 0 and line.startswith(_BOM):
                    start, line = start + 1, line[1:]  # the BOM stays before the first line
                h = parse_header(line)
                if h is not None and h.number == number:
                    return i, start, start + len(line)
            if self._complete:
                return None
            self._parse(text, lines)
        return None

    def after_rewrite(self, new_text: str, i: int, new_line: str) -> None:
        assert self._lines is not None and self._text is not None
        if i == 0 and self._lines.items[0].startswith(_BOM):
            new_line = _BOM + new_line
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


def _header_at(lines: _Lines, i: int) -> Header | None:
    line = lines.line(i)
    return parse_header(line[1:] if i == 0 and line.startswith(_BOM) else line)


_cache = _HeaderCache()
# The monitor thread settles background steps while the main thread marks.
_cache_lock = threading.Lock()


def reset_cache() -> None:
    """Forget cached header lines (what a fresh process starts with)."""
    with _cache_lock:
        _cache.reset()


def seed_cache(text: str, header_lines: dict[int, int]) -> None:
    """Hand the marker the header lines a parse of ``text`` already found."""
    with _cache_lock:
        _cache.put(text, header_lines)


def spec_lock(spec_path: Path, timeout: float = LOCK_TIMEOUT) -> FileLock:
    from filelock import FileLock

    path = lock_path(spec_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MarkError(f"cannot create the lock folder {path.parent}: {exc.strerror}", path=spec_path,
                        fix="make the plan's folder writable or run with --no-mark") from None
    return FileLock(str(path), timeout=timeout)


# --------------------------------------------------------------------------- the pure rewrite


def rewrite_header(text: str, number: int, status: str, task_id: str, timestamp: str,
                   note: str = "", path: Path | None = None) -> str:
    """Pure: the text with STEP ``number``'s header re-marked. Raises MarkError."""
    with _cache_lock:
        return _rewrite(text, number, status, task_id, timestamp, note, path)[0]


def _rewrite(text: str, number: int, status: str, task_id: str, timestamp: str, note: str,
             path: Path | None) -> tuple[str, str, str]:
    """(new text, header line before, header line after)."""
    found = _cache.locate(text, number)
    if found is None:
        raise MarkError(f"STEP {number} is no longer in the file", path=path,
                        fix="the step was removed or renumbered during the run; its marker was not written")
    i, start, end = found
    before = text[start:end]
    h = parse_header(before)
    if h is None or h.number != number:
        raise MarkError(f"STEP {number}'s header line could not be read", path=path, line=i + 1)
    after = render_header(h, status, task_id, timestamp, note)
    new_text = text[:start] + after + text[end:]
    _cache.after_rewrite(new_text, i, after)
    return new_text, before, after


def _replace_header_line(text: str, number: int, expected: set[str], line: str) -> tuple[str, int] | None:
    """The text with STEP ``number``'s header line set to ``line``, when it is now one of
    ``expected``; None otherwise. (Used by the restore; caller holds ``_cache_lock``.)"""
    found = _cache.locate(text, number)
    if found is None:
        return None
    i, start, end = found
    if text[start:end] not in expected:
        return None
    new_text = text[:start] + line + text[end:]
    _cache.after_rewrite(new_text, i, line)
    return new_text, i


def read_marker(spec_path: Path, number: int) -> Marker | None:
    """The marker STEP ``number`` carries in the file now (None if absent)."""
    try:
        text = spec_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    with _cache_lock:
        found = _cache.locate(text, number)
    if found is None:
        return None
    h = parse_header(text[found[1]:found[2]])
    return h.marker if h else None


# --------------------------------------------------------------------------- marking the file


def mark(spec_path: Path, number: int, status: str, task_id: str, timestamp: str, note: str = "") -> None:
    """Write STEP ``number``'s marker into the plan file, atomically and under the lock."""
    real = _checked_real(spec_path)
    done: list[tuple[str, str]] = []

    def compute(text: str) -> str:
        with _cache_lock:
            new_text, before, after = _rewrite(text, number, status, task_id, timestamp, note, spec_path)
        done[:] = [(before, after)]
        return new_text

    with _locked(real, spec_path):
        if _write(real, spec_path, compute) and done:
            before, after = done[0]
            journal.append(real, journal.Entry(step=number, task_id=task_id, status=status, before=before,
                                               after=after, time=timestamp))


def restore_lost_markers(spec_path: Path) -> list[str]:
    """Put back markers an editor's stale copy of the plan overwrote; one message per marker.

    For each step the journal names, the marker is restored only when the step's
    header line is now exactly a line our own writes replaced (the line as it was
    before one of our marks): the signature of an editor buffer, loaded before the
    mark, saved after it. Any other edit of that line (a person un-ticking it,
    retitling it, marking it by hand) is theirs and is kept. The journal is then
    emptied: each mark is checked once, by the first run after it, so a later
    deliberate edit is never second-guessed. Never raises: a plan that cannot be
    read or written is left alone, and the problem is one of the messages.
    """
    real = Path(os.path.realpath(spec_path))
    if not journal.journal_path(real).exists() or not real.is_file():
        return []
    from filelock import Timeout

    try:
        with spec_lock(real):
            return _restore_locked(real, spec_path)
    except DotasksError as exc:
        return [f"could not restore markers: {exc.one_line()}"]
    except Timeout:
        return [f"{spec_path}: could not restore markers: another run holds {lock_path(real)}"]


def _restore_locked(real: Path, shown: Path) -> list[str]:
    entries = journal.read(real)
    chains: dict[int, list[journal.Entry]] = {}
    for e in entries:
        chains.setdefault(e.step, []).append(e)
    # step -> (header lines our writes replaced, the line we wrote last)
    wanted = {n: ({e.before for e in chain} - {chain[-1].after}, chain[-1].after) for n, chain in chains.items()}
    restored: list[tuple[int, int, str]] = []

    def compute(text: str) -> str:
        restored.clear()
        with _cache_lock:
            for n, (stale, after) in wanted.items():
                if not stale or not any(_has_line(text, line) for line in stale):
                    continue  # the cheap test first: no parse unless a stale line is there
                got = _replace_header_line(text, n, stale, after)
                if got is not None:
                    text = got[0]
                    restored.append((n, got[1], after))
        return text

    if not _writable(real):
        return []  # read-only: nothing can be restored now; the journal waits for a later run
    _write(real, shown, compute)
    journal.clear(real)
    where = journal.journal_path(real).relative_to(real.parent)
    out = []
    for n, i, after in restored:
        h = parse_header(after)
        marker = h.marker_text if h else after
        out.append(f"{shown}:{i + 1}: STEP {n}'s marker was overwritten by an older copy of the plan "
                   f"(an editor's save?); restored from {where}: {marker}")
    return out


def _has_line(text: str, line: str) -> bool:
    """Is ``line`` one whole line of ``text``? (No parse: find, then check both ends.)"""
    k = text.find(line)
    while k != -1:
        end = k + len(line)
        if (k == 0 or text[k - 1] in "\r\n\ufeff") and (end == len(text) or text[end] in "\r\n"):
            return True
        k = text.find(line, k + 1)
    return False


def _checked_real(spec_path: Path) -> Path:
    real = Path(os.path.realpath(spec_path))
    if not real.exists():
        raise MarkError("SPEC.md was deleted during the run; the marker was not written", path=spec_path,
                        fix="restore the file; the task log keeps this step's result")
    if not _writable(real):
        raise MarkError("the plan file is read-only; the marker was not written", path=spec_path,
                        fix="make it writable (chmod u+w) or run with --no-mark")
    return real


class _locked:
    """The plan's lock, with a MarkError naming the lock file when it cannot be had."""

    def __init__(self, real: Path, shown: Path) -> None:
        self.real, self.shown = real, shown
        self.lock = spec_lock(real)

    def __enter__(self) -> None:
        from filelock import Timeout

        try:
            self.lock.acquire()
        except Timeout:
            raise MarkError(f"could not lock the plan file within {LOCK_TIMEOUT:.0f}s", path=self.shown,
                            fix=f"another run holds {lock_path(self.real)}; wait for it or remove a stale lock "
                                "file") from None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _writable(path: Path) -> bool:
    """Would a person be allowed to write this file?

    ``os.access`` says yes to root whatever the mode, and our rename would then
    replace a file its owner had made read-only; so a file with no write bit at
    all counts as read-only for everyone.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    return os.access(path, os.W_OK)


class _Seen:
    """The plan as we read it: an open descriptor on that very file, its stat and bytes."""

    def __init__(self, real: Path, shown: Path) -> None:
        try:
            self.fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise MarkError("SPEC.md was deleted during the run; the marker was not written", path=shown,
                            fix="restore the file; the task log keeps this step's result") from None
        except OSError as exc:
            raise MarkError(f"cannot read the plan file: {exc.strerror}", path=shown) from None
        try:
            self.st = os.fstat(self.fd)
            self.data = _read_all(self.fd)
        except OSError as exc:
            os.close(self.fd)
            raise MarkError(f"cannot read the plan file: {exc.strerror}", path=shown) from None

    def text(self, shown: Path) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise MarkError("the plan file is no longer valid UTF-8; the marker was not written",
                            path=shown) from None

    def unchanged(self) -> bool:
        """Does the file we read still hold exactly what we read (whatever its name now)?"""
        st = os.fstat(self.fd)
        if (st.st_size, st.st_mtime_ns) != (self.st.st_size, self.st.st_mtime_ns):
            return False
        return os.pread(self.fd, self.st.st_size + 1, 0) == self.data

    def is_at(self, path: str | Path) -> bool:
        """Is the file at ``path`` the one we read, unchanged?"""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return (st.st_ino, st.st_dev) == (self.st.st_ino, self.st.st_dev) and self.unchanged()

    def close(self) -> None:
        if self.fd >= 0:  # idempotent: a descriptor number closed twice may be another file's
            fd, self.fd = self.fd, -1
            os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write(real: Path, shown: Path, compute: Callable[[str], str]) -> bool:
    """Compare-and-swap ``compute(text)`` into the plan. False: nothing to change."""
    _sweep_temp_files(real)
    late = _Late.of(real)
    carry, accept = late.suffix()
    seen = _Seen(real, shown)
    kept = False
    try:
        for attempt in range(CAS_ATTEMPTS):
            text = seen.text(shown)
            with _cache_lock:
                _cache.begin(text)
            how, new_text = "", None
            try:
                if carry:
                    text += carry  # what a late writer added to a file we had replaced
                new_text = compute(text)
                if new_text == text and not carry:
                    return False
                how = _commit(real, shown, seen, new_text.encode("utf-8"))
            finally:
                with _cache_lock:
                    if how or new_text is None:
                        _cache.done()
                    else:  # our text never reached the file: the cache knows the file's again
                        _cache.rollback(new_text)
            if how:
                accept()
                if how == _SWAPPED:
                    late.watch(seen)
                    kept = True
                return True
            # The file changed since we read it: redo the change on the file as it is now.
            seen.close()
            seen = _Seen(real, shown)
            time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise MarkError(f"the plan kept changing while its marker was written ({CAS_ATTEMPTS} tries); "
                        "the marker was not written", path=shown,
                        fix="the file is as you left it; the task log keeps this step's result, and the next "
                            "run marks it")
    finally:
        if not kept:
            seen.close()


_SWAPPED, _IN_PLACE = "swapped", "in place"


class _Late:
    """Files our writes replaced, kept open a while: what a late writer adds to them is carried over.

    A program that opened SPEC.md for appending just before our swap writes into
    the file we replaced (``echo >> SPEC.md`` caught between its open and its
    write; a logger that keeps the file open). The check at the swap cannot see a
    write that has not happened yet; so each write first carries into the plan any
    bytes appended to the last few replaced files since, and the process does it a
    last time when it exits. Only appends are carried: a replaced file changed in
    the middle is a conflict this cannot merge, and is left.
    """

    KEEP = 4  # replaced files watched per plan
    KEEP_ALL = 16  # ... and in all (a test process marks hundreds of plans)
    SECONDS = 30.0  # a replaced file that has not grown for this long is closed

    def __init__(self, real: Path) -> None:
        self.real = real
        self.files: list[tuple[_Seen, bytes, float]] = []  # (file, bytes accounted for, last growth)

    @classmethod
    def of(cls, real: Path) -> _Late:
        if real not in _late:
            _late[real] = cls(real)
            if len(_late) == 1:
                import atexit

                atexit.register(_carry_late_writes)
        return _late[real]

    def watch(self, seen: _Seen) -> None:
        with _late_lock:
            self._watch(seen)

    def _watch(self, seen: _Seen) -> None:
        now = time.monotonic()
        self.files.append((seen, seen.data, now))
        while len(self.files) > self.KEEP:
            self.files.pop(0)[0].close()
        # Other plans' replaced files: close the idle ones and keep the total bounded.
        for late in _late.values():
            if late is not self:
                idle = [f for f in late.files if now - f[2] >= self.SECONDS]
                if idle and len(idle) == len(late.files):
                    for f in idle:
                        f[0].close()
                    late.files = []
        watched = sorted(((f[2], late) for late in _late.values() for f in late.files), key=lambda w: w[0])
        for _, late in watched[: max(0, len(watched) - self.KEEP_ALL)]:
            late.files.pop(0)[0].close()

    def suffix(self) -> tuple[str, Callable[[], None]]:
        """(text appended to the watched files since, a callback once it is in the plan)."""
        with _late_lock:
            return self._suffix()

    def _suffix(self) -> tuple[str, Callable[[], None]]:
        now = time.monotonic()
        parts: list[bytes] = []
        after: list[tuple[_Seen, bytes, float]] = []
        dropped: list[_Seen] = []
        for seen, base, grown in self.files:
            try:
                size = os.fstat(seen.fd).st_size
                data = os.pread(seen.fd, size, 0) if size > len(base) else base
            except OSError:
                data = base
            if len(data) > len(base) and data.startswith(base):
                parts.append(data[len(base):])
                base, grown = data, now
            if now - grown < self.SECONDS:
                after.append((seen, base, grown))
            else:
                dropped.append(seen)
        try:
            carry = b"".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            carry = ""  # not UTF-8: not carried

        def accept() -> None:
            # Descriptors are closed only here: one closed early could be reused by
            # another file while self.files still named it.
            with _late_lock:
                kept = {id(f[0]) for f in self.files}  # watch() may have closed some meanwhile
                self.files = [f for f in after if id(f[0]) in kept]
                for seen in dropped:
                    if id(seen) in kept:
                        seen.close()

        if not carry:
            self.files = after
            for seen in dropped:
                seen.close()
        return carry, accept


_late: dict[Path, _Late] = {}
_late_lock = threading.Lock()


def _carry_late_writes() -> None:
    """At exit: carry what late writers appended to replaced files into the plans (best effort)."""
    from filelock import Timeout

    for real, late in list(_late.items()):
        if not late.files:
            continue
        try:
            if late.suffix()[0] and real.exists():
                with spec_lock(real, timeout=5):
                    _write(real, real, lambda text: text)
        except (DotasksError, OSError, Timeout):
            pass
        with _late_lock:
            for seen, _, _ in late.files:
                with _quiet():
                    seen.close()
            late.files = []


def _commit(real: Path, shown: Path, seen: _Seen, data: bytes) -> str:
    """Put ``data`` in place of the file ``seen`` read, if it is still that file unchanged.

    Returns ``_SWAPPED`` (a new file replaced it), ``_IN_PLACE``, or "" (it changed)."""
    if seen.st.st_nlink > 1:
        return _write_in_place(real, shown, seen, data)
    tmp = _temp_file(real, shown, seen.st, data)
    if tmp is None:  # the new file could not take the owner: in place keeps it
        return _write_in_place(real, shown, seen, data)
    try:
        if not seen.is_at(real):
            return ""
        if _exchange(tmp, str(real)):
            # ``tmp`` now names the file we replaced: is it still the one we read?
            if seen.is_at(tmp):
                return _SWAPPED
            _exchange(tmp, str(real))  # a write landed between check and swap: theirs goes back
            return ""
        os.replace(tmp, real)
        if seen.unchanged():
            return _SWAPPED
        # A write reached the old file between the check and the rename: put it back.
        _put_back(real, shown, seen)
        return ""
    except OSError as exc:
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="free disk space or fix permissions; the file is unchanged") from None
    finally:
        _unlink_quiet(tmp)


def _put_back(real: Path, shown: Path, seen: _Seen) -> None:
    """Without RENAME_EXCHANGE: the person's bytes, read from the replaced file, replace ours."""
    theirs = os.pread(seen.fd, os.fstat(seen.fd).st_size, 0)
    tmp = _temp_file(real, shown, seen.st, theirs)
    if tmp is not None:
        try:
            os.replace(tmp, real)
        finally:
            _unlink_quiet(tmp)


def _temp_file(real: Path, shown: Path, st: os.stat_result, data: bytes) -> str | None:
    """A new file with ``data`` beside the plan, with its owner, group and mode; None when
    the owner cannot be given to it (not root, someone else's file)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=_TMP_SUFFIX, dir=real.parent)
    except OSError as exc:
        raise MarkError(f"cannot write beside the plan file: {exc.strerror}", path=shown,
                        fix=f"make {real.parent} writable (the marker is written to a temporary file "
                            "there, then renamed) or run with --no-mark; the file is unchanged") from None
    try:
        try:
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, st.st_uid, st.st_gid)
        except PermissionError:
            os.close(fd)
            _unlink_quiet(tmp)
            return None
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which may clear set-id bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
    except OSError as exc:
        with _quiet():
            os.close(fd)
        _unlink_quiet(tmp)
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="free disk space or fix permissions; the file is unchanged") from None
    return tmp


def _write_in_place(real: Path, shown: Path, seen: _Seen, data: bytes) -> str:
    """Hard-linked plan (or one whose owner a new file could not take): rewrite the file itself."""
    try:
        fd = os.open(real, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="fix its permissions or run with --no-mark; the file is unchanged") from None
    try:
        st = os.fstat(fd)
        if (st.st_ino, st.st_dev) != (seen.st.st_ino, seen.st.st_dev) or not seen.unchanged():
            return ""
        k = _common_prefix(seen.data, data)
        view = memoryview(data)[k:]
        pos = k
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        return _IN_PLACE
    except OSError as exc:
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="free disk space or fix permissions") from None
    finally:
        os.close(fd)


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of ``a`` and ``b`` (blockwise: C-speed compares)."""
    n, k = min(len(a), len(b)), 0
    for size in (1 << 16, 1 << 10, 1 << 4, 1):
        while k + size <= n and a[k:k + size] == b[k:k + size]:
            k += size
    return k


_TMP_SUFFIX = ".dotasks-tmp"
_swept: set[Path] = set()


def _sweep_temp_files(real: Path) -> None:
    """Remove temporary files a kill left behind (once per plan and process, under the lock).

    Only regular files with our exact name shape: ``.SPEC.md.<8 random>.dotasks-tmp``
    (mkstemp's), or the fixed name older versions used.
    """
    if real in _swept:
        return
    _swept.add(real)
    shape = re.compile(rf"^\.{re.escape(real.name)}\.(?:[a-z0-9_]{{8}}|marking){re.escape(_TMP_SUFFIX)}$")
    try:
        names = [n for n in os.listdir(real.parent) if shape.match(n)]
    except OSError:
        return
    for name in names:
        path = real.parent / name
        with _quiet():
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)


def _unlink_quiet(path: str) -> None:
    with _quiet():
        os.unlink(path)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


# --------------------------------------------------------------------------- RENAME_EXCHANGE

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None  # glibc < 2.28, or a libc without it
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: str, b: str) -> bool:
    """Swap two names atomically; False when the system or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)
