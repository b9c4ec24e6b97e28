"""Rewrite one step's header line in SPEC.md: atomic, locked, nothing else touched.

The step is found again by its number in the file as it is *now* (``headercache``),
so edits a person made elsewhere while a run went on survive, and the file is
written with a compare-and-swap (``filecas``): a person's concurrent append or
editor save is never lost, the temporary file is never a planted link, owner,
group and mode are kept, and a hard-linked plan keeps its links. Writers are
serialised across xdist workers and concurrent runs by a lock.

Every mark is journalled under ``.dotasks/marks/`` (``journal``): a marker an
editor's stale buffer overwrote is restored by the next run
(``restore_lost_markers``, called at session start).

Speed: the header line numbers and line offsets of the last text seen are cached,
so a run that is the only writer parses the plan once, and the CAS check re-reads
bytes, never re-parses.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_dotasks.errors import DotasksError, MarkError
from pytest_dotasks.plan import filecas, journal
from pytest_dotasks.plan.filecas import LOCK_TIMEOUT, lock_path, spec_lock
from pytest_dotasks.plan.header import parse_header, render_header
from pytest_dotasks.plan.headercache import BOM, BREAK, cache_lock
from pytest_dotasks.plan.headercache import cache as _cache
from pytest_dotasks.plan.model import Marker, base_number, ident_of

__all__ = ["LOCK_TIMEOUT", "lock_path", "mark", "read_marker", "reset_cache", "restore_lost_markers",
           "rewrite_header", "seed_cache", "spec_lock"]
_cache_lock = cache_lock


def reset_cache() -> None:
    """Forget cached header lines (what a fresh process starts with)."""
    with _cache_lock:
        _cache.reset()


def seed_cache(text: str, header_lines: dict[int, int]) -> None:
    """Hand the marker the header lines a parse of ``text`` already found."""
    with _cache_lock:
        _cache.put(text, header_lines)


class _CacheUndo:
    """The header cache as ``filecas.write`` sees it: forget a rewrite that never reached the file."""

    def begin(self, text: str) -> None:
        with _cache_lock:
            _cache.begin(text)

    def done(self) -> None:
        with _cache_lock:
            _cache.done()

    def rollback(self, written: str) -> None:
        with _cache_lock:
            _cache.rollback(written)


_UNDO = _CacheUndo()


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
        raise MarkError(f"STEP {ident_of(number)} is no longer in the file", path=path,
                        fix="the step was removed or renumbered during the run; its marker was not written")
    i, start, end = found
    before = text[start:end]
    h = parse_header(before)
    if h is None or h.number != base_number(number):
        raise MarkError(f"STEP {ident_of(number)}'s header line could not be read", path=path, line=i + 1)
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
        if filecas.write(real, spec_path, compute, _UNDO) and done:
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
        present = set(BREAK.split(text.removeprefix(BOM)))  # one split, then a set lookup per step
        with _cache_lock:
            for n, (stale, after) in wanted.items():
                if stale.isdisjoint(present):
                    continue  # the cheap test first: no parse unless a stale line is there
                got = _replace_header_line(text, n, stale, after)
                if got is not None:
                    text = got[0]
                    restored.append((n, got[1], after))
        return text

    if not writable(real):
        return []  # read-only: nothing can be restored now; the journal waits for a later run
    filecas.write(real, shown, compute, _UNDO)
    journal.clear(real)
    where = journal.journal_path(real).relative_to(real.parent)
    out = []
    for n, i, after in restored:
        h = parse_header(after)
        marker = h.marker_text if h else after
        out.append(f"{shown}:{i + 1}: STEP {ident_of(n)}'s marker was overwritten by an older copy of the plan "
                   f"(an editor's save?); restored from {where}: {marker}")
    return out


def _checked_real(spec_path: Path) -> Path:
    real = Path(os.path.realpath(spec_path))
    if not real.exists():
        raise MarkError("SPEC.md was deleted during the run; the marker was not written", path=spec_path,
                        fix="restore the file; the task log keeps this step's result")
    if not writable(real):
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


def writable(path: Path) -> bool:
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
