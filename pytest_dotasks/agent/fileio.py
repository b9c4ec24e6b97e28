"""Whole-file writes that never leave half a file, and reads that never hang.

``atomic_write`` writes a temporary file beside the target (an exclusive
new name, never following a link) and renames it over the target, so a
failed write (disk full, a bad byte found late, a kill) leaves the old file
whole; the old file's mode (and owner and group, where allowed) is kept, a
new file gets the default mode under the umask. ``read_regular`` opens without following a final symlink and
without blocking (a FIFO would hang a plain ``open``), and reads at most
``cap`` bytes. Used by the workspace (Write, Edit, Read) and by the guard.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

_TEMP_SUFFIX = ".dotasks-tmp"


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (kept under the 255-byte name limit)."""
    stem = path.name.encode("utf-8", "surrogateescape")[:120].decode("utf-8", "ignore")
    return path.with_name(f".{stem}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one rename; ``mode`` None: keep the current file's, else the default.

    Raises OSError with nothing changed at ``path``.
    """
    try:
        old: os.stat_result | None = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        old = None
    if mode is None and old is not None:
        mode = stat.S_IMODE(old.st_mode)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(10):
        tmp = temp_name(path)
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - ten random 48-bit names taken
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                try:  # keep owner and group where we may (root may; a user may keep a group it is in)
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
                except OSError:
                    pass
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_regular(path: str | Path, cap: int) -> tuple[os.stat_result, bytes | None]:
    """(stat, bytes) of a regular file, bytes None when it is larger than ``cap``.

    Raises IsADirectoryError / OSError for what is not a regular file (FIFO,
    socket, device, a symlink as the last component): nothing here blocks.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(0, "not a regular file", str(path))
        if st.st_size > cap:
            return st, None
        chunks = []
        left = cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return st, (data if len(data) <= cap else None)
    finally:
        os.close(fd)
