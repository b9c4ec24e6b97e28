"""Rewrite one step's header line in SPEC.md: atomic, locked, nothing else touched.

The step is found again by its number in the file as it is *now*, so edits
a person made elsewhere while a run went on survive. The write goes to a
temporary file in the same folder which then replaces SPEC.md (mode kept),
so a kill at any moment leaves either the old or the new file, never half
of one. A lock (``filelock``) serialises writers across xdist workers and
concurrent pytest runs.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_dotasks.errors import MarkError
from pytest_dotasks.plan.header import parse_header, render_header
from pytest_dotasks.plan.model import Marker

if TYPE_CHECKING:
    from filelock import FileLock

LOCK_TIMEOUT = 60.0


def lock_path(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "locks" / f"{spec_path.name}.lock"


_BREAK = re.compile(r"\r\n|\r|\n")


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in _BREAK.finditer(text))]


class _HeaderCache:
    """Header line numbers and line offsets of the last text we read or wrote.

    Marking rewrites one line and never adds or removes lines, so after any
    writer's mark (ours, another xdist worker's) the header line numbers
    still hold. The full markdown parse runs again only when the target line
    no longer holds its step's header (someone moved lines): a run of N steps
    parses the file about once, not N times.
    """

    def __init__(self) -> None:
        # One tuple, swapped in one assignment: a reader in another thread never
        # pairs one text with another text's numbers.
        self.entry: tuple[str | None, dict[int, int], list[int], bool] = (None, {}, [], False)

    @property
    def text(self) -> str | None:
        return self.entry[0]

    @property
    def lines(self) -> dict[int, int]:
        return self.entry[1]

    def locate(self, text: str, number: int) -> tuple[int, int, int] | None:
        """(line index, start, end) of STEP ``number``'s header in ``text``, or None."""
        cached, lines, starts, parsed = self.entry
        if text != cached:
            new_starts = _line_starts(text)
            if len(new_starts) == len(starts):
                self.entry = (text, lines, new_starts, False)  # same shape: trust, verify below
            else:
                self._parse(text, new_starts)
        for attempt in range(2):
            _, lines, starts, parsed = self.entry
            if number in lines:
                i = lines[number]
                start, end = _bounds(text, starts, i)
                h = parse_header(text[start:end])
                if h is not None and h.number == number:
                    return i, start, end
            if parsed:
                return None
            self._parse(text, starts)
        return None

    def _parse(self, text: str, starts: list[int]) -> None:
        from pytest_dotasks.plan.specmd import header_lines

        self.entry = (text, header_lines(text), starts, True)

    def after_rewrite(self, new_text: str, i: int, delta: int) -> None:
        _, lines, starts, parsed = self.entry
        shifted = starts[: i + 1] + [x + delta for x in starts[i + 1:]]
        self.entry = (new_text, lines, shifted, parsed)

    def put(self, text: str, lines: dict[int, int]) -> None:
        """Seed the cache from a parse done elsewhere (collection)."""
        self.entry = (text, lines, _line_starts(text), True)


def _bounds(text: str, starts: list[int], i: int) -> tuple[int, int]:
    start = starts[i]
    if start == 0 and text.startswith("\ufeff"):
        start = 1  # the BOM stays where it is, before the first line
    end = starts[i + 1] if i + 1 < len(starts) else len(text)
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return start, end


_cache = _HeaderCache()
# The monitor thread settles background steps while the main thread marks.
_cache_lock = threading.Lock()


def reset_cache() -> None:
    """Forget cached header lines (what a fresh process starts with)."""
    with _cache_lock:
        _cache.entry = (None, {}, [], False)


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


def rewrite_header(text: str, number: int, status: str, task_id: str, timestamp: str,
                   note: str = "", path: Path | None = None) -> str:
    """Pure: the text with STEP ``number``'s header re-marked. Raises MarkError."""
    with _cache_lock:
        return _rewrite(text, number, status, task_id, timestamp, note, path)


def _rewrite(text: str, number: int, status: str, task_id: str, timestamp: str, note: str,
             path: Path | None) -> str:
    found = _cache.locate(text, number)
    if found is None:
        raise MarkError(f"STEP {number} is no longer in the file", path=path,
                        fix="the step was removed or renumbered during the run; its marker was not written")
    i, start, end = found
    h = parse_header(text[start:end])
    if h is None or h.number != number:
        raise MarkError(f"STEP {number}'s header line could not be read", path=path, line=i + 1)
    new_line = render_header(h, status, task_id, timestamp, note)
    new_text = text[:start] + new_line + text[end:]
    _cache.after_rewrite(new_text, i, len(new_line) - (end - start))
    return new_text


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


def mark(spec_path: Path, number: int, status: str, task_id: str, timestamp: str, note: str = "") -> None:
    """Write STEP ``number``'s marker into the plan file, atomically and under the lock."""
    real = Path(os.path.realpath(spec_path))
    if not real.exists():
        raise MarkError("SPEC.md was deleted during the run; the marker was not written", path=spec_path,
                        fix="restore the file; the task log keeps this step's result")
    if not _writable(real):
        raise MarkError("the plan file is read-only; the marker was not written", path=spec_path,
                        fix="make it writable (chmod u+w) or run with --no-mark")
    from filelock import Timeout

    try:
        with spec_lock(real):
            _mark_locked(real, spec_path, number, status, task_id, timestamp, note)
    except Timeout:
        raise MarkError(f"could not lock the plan file within {LOCK_TIMEOUT:.0f}s", path=spec_path,
                        fix=f"another run holds {lock_path(real)}; wait for it or remove a stale lock file") from None


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


def _mark_locked(real: Path, shown: Path, number: int, status: str, task_id: str, timestamp: str,
                 note: str) -> None:
    try:
        data = real.read_bytes()
    except FileNotFoundError:
        raise MarkError("SPEC.md was deleted during the run; the marker was not written", path=shown) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MarkError("the plan file is no longer valid UTF-8; the marker was not written", path=shown) from None
    new_text = rewrite_header(text, number, status, task_id, timestamp, note, path=shown)
    mode = stat.S_IMODE(real.stat().st_mode)
    try:
        # One fixed name, used only under the lock: a kill between write and
        # rename leaves at most this one file, which the next mark reuses.
        tmp = str(real.parent / f".{real.name}.marking.dotasks-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise MarkError(f"cannot write beside the plan file: {exc.strerror}", path=shown,
                        fix=f"make {real.parent} writable (the marker is written to a temporary file "
                            "there, then renamed) or run with --no-mark; the file is unchanged") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="free disk space or fix permissions; the file is unchanged") from None
