"""Compare-and-swap of the plan file: a person's concurrent write is never lost.

``write`` reads the plan, has the caller compute the new text, and just before
the new file replaces the old one checks that the old one is still exactly what
was read (inode, size, mtime and every byte). If a person (an append, an
editor's save) changed it meanwhile, the change is computed again on their text;
after ``CAS_ATTEMPTS`` tries and at least ``CAS_SECONDS`` of trying (a loaded
machine makes each try slow), a ``MarkError`` leaves the file as they wrote it.

- On Linux the replacement is ``renameat2(RENAME_EXCHANGE)``: the file swapped
  out is checked once more, and a write that landed in the microseconds between
  check and swap is swapped straight back. Elsewhere a plain rename follows the
  check, and a write that reached the old file in between is put back from that
  file (still open) before the change is redone.
- A program that opened the plan for appending just before a swap writes into the
  replaced file afterwards (``echo >> SPEC.md`` caught between its open and its
  write, a logger keeping the file open): ``_Late`` keeps the last replaced files
  open and carries what is appended to them into the plan, at the next write and
  when the process exits. Such a line can land a few lines later than written.
- A hard-linked plan (``st_nlink > 1``) is written in place, after the same check,
  from the first changed byte on: a rename would cut the link, and both names must
  keep showing one plan. So is a plan whose owner a new file could not take
  (another user's group-writable file). In-place writes are not atomic against a
  kill in the middle of that one write, which is why they are kept to these cases.
- Writers are serialised across processes by a lock (``filelock``) under
  ``.dotasks/locks/``; ``write`` is called with it held.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_dotasks.errors import DotasksError, MarkError
from pytest_dotasks.plan import fileops

if TYPE_CHECKING:
    from filelock import FileLock

LOCK_TIMEOUT = 60.0
# Tries of the compare-and-swap before giving up with a MarkError, with a random pause
# between them growing to 20 ms (a person saving every 20 ms still leaves gaps); on a
# loaded machine, where each try is slow, the tries go on for CAS_SECONDS at least
# (and stop at CAS_MAX_ATTEMPTS whatever the time).
CAS_ATTEMPTS = 30
CAS_SECONDS = 10.0
CAS_MAX_ATTEMPTS = 1000


class Undo(Protocol):
    """What the caller assumed about the file while computing (its header cache)."""

    def begin(self, text: str) -> None: ...

    def done(self) -> None: ...

    def rollback(self, written: str) -> None: ...


def lock_path(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "locks" / f"{spec_path.name}.lock"


def spec_lock(spec_path: Path, timeout: float = LOCK_TIMEOUT) -> FileLock:
    from filelock import FileLock

    path = lock_path(spec_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MarkError(f"cannot create the lock folder {path.parent}: {exc.strerror}", path=spec_path,
                        fix="make the plan's folder writable or run with --no-mark") from None
    return FileLock(str(path), timeout=timeout)


class Seen:
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


def write(real: Path, shown: Path, compute: Callable[[str], str], undo: Undo | None = None) -> bool:
    """Compare-and-swap ``compute(text)`` into the plan. False: nothing to change."""
    fileops.sweep_temp_files(real)
    late = _Late.of(real)
    carry, accept = late.suffix()
    seen = Seen(real, shown)
    kept = False
    try:
        started = time.monotonic()
        attempt = 0
        while attempt < CAS_ATTEMPTS or (time.monotonic() - started < CAS_SECONDS and attempt < CAS_MAX_ATTEMPTS):
            attempt += 1
            text = seen.text(shown)
            if undo is not None:
                undo.begin(text)
            how, new_text = "", None
            try:
                if carry:
                    text += carry  # what a late writer added to a file we had replaced
                new_text = compute(text)
                if new_text == text and not carry:
                    return False
                how = _commit(real, shown, seen, new_text.encode("utf-8"))
            finally:
                if undo is None:
                    pass
                elif how or new_text is None:
                    undo.done()
                else:  # our text never reached the file: forget what compute() assumed it would
                    undo.rollback(new_text)
            if how:
                accept()
                if how == _SWAPPED:
                    late.watch(seen)
                    kept = True
                return True
            # The file changed since we read it: redo the change on the file as it is now.
            seen.close()
            seen = Seen(real, shown)
            time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise MarkError(f"the plan kept changing while its marker was written ({attempt} tries in "
                        f"{time.monotonic() - started:.0f}s); "
                        "the marker was not written", path=shown,
                        fix="the file is as you left it and the task log keeps this step's result; let the "
                            "plan rest while steps finish, then run again")
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
        self.files: list[tuple[Seen, bytes, float]] = []  # (file, bytes accounted for, last growth)

    @classmethod
    def of(cls, real: Path) -> _Late:
        if real not in _late:
            _late[real] = cls(real)
            if len(_late) == 1:
                import atexit

                atexit.register(carry_late_writes)
        return _late[real]

    def watch(self, seen: Seen) -> None:
        with _late_lock:
            self._watch(seen)

    def _watch(self, seen: Seen) -> None:
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
        after: list[tuple[Seen, bytes, float]] = []
        dropped: list[Seen] = []
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


def carry_late_writes() -> None:
    """At exit: carry what late writers appended to replaced files into the plans (best effort)."""
    from filelock import Timeout

    for real, late in list(_late.items()):
        if not late.files:
            continue
        try:
            if late.suffix()[0] and real.exists():
                with spec_lock(real, timeout=5):
                    write(real, real, lambda text: text)
        except (DotasksError, OSError, Timeout):
            pass
        with _late_lock:
            for seen, _, _ in late.files:
                with fileops.quiet():
                    seen.close()
            late.files = []


def _commit(real: Path, shown: Path, seen: Seen, data: bytes) -> str:
    """Put ``data`` in place of the file ``seen`` read, if it is still that file unchanged.

    Returns ``_SWAPPED`` (a new file replaced it), ``_IN_PLACE``, or "" (it changed)."""
    if seen.st.st_nlink > 1:
        return _write_in_place(real, shown, seen, data)
    tmp = fileops.temp_file(real, shown, seen.st, data)
    if tmp is None:  # the new file could not take the owner: in place keeps it
        return _write_in_place(real, shown, seen, data)
    try:
        if not seen.is_at(real):
            return ""
        if fileops.exchange(tmp, str(real)):
            # ``tmp`` now names the file we replaced: is it still the one we read?
            if seen.is_at(tmp):
                return _SWAPPED
            fileops.exchange(tmp, str(real))  # a write landed between check and swap: theirs goes back
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
        fileops.unlink_quiet(tmp)


def _put_back(real: Path, shown: Path, seen: Seen) -> None:
    """Without RENAME_EXCHANGE: the person's bytes, read from the replaced file, replace ours."""
    theirs = os.pread(seen.fd, os.fstat(seen.fd).st_size, 0)
    tmp = fileops.temp_file(real, shown, seen.st, theirs)
    if tmp is not None:
        try:
            os.replace(tmp, real)
        finally:
            fileops.unlink_quiet(tmp)



def _write_in_place(real: Path, shown: Path, seen: Seen, data: bytes) -> str:
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
        k = fileops.common_prefix(seen.data, data)
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
