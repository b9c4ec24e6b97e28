"""The file operations a safe rewrite of the plan is made of.

Each is small and does one thing a plain ``open(..., "w")`` or ``os.replace``
gets wrong: a temporary file created exclusively with a random name (never
through a planted link) and carrying the plan's owner, group and mode; a sweep of
the temporary files a kill left behind; the atomic exchange of two names
(``renameat2(RENAME_EXCHANGE)`` on Linux), which lets the writer look at the file
it replaced and give it back. ``filecas`` puts them together.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import MarkError


def temp_file(real: Path, shown: Path, st: os.stat_result, data: bytes) -> str | None:
    """A new file with ``data`` beside the plan, with its owner, group and mode; None when
    the owner cannot be given to it (not root, someone else's file)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=TMP_SUFFIX, dir=real.parent)
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
            unlink_quiet(tmp)
            return None
        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which may clear set-id bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
    except OSError as exc:
        with quiet():
            os.close(fd)
        unlink_quiet(tmp)
        raise MarkError(f"cannot write the plan file: {exc.strerror}", path=shown,
                        fix="free disk space or fix permissions; the file is unchanged") from None
    return tmp


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix of ``a`` and ``b`` (blockwise: C-speed compares)."""
    n, k = min(len(a), len(b)), 0
    for size in (1 << 16, 1 << 10, 1 << 4, 1):
        while k + size <= n and a[k:k + size] == b[k:k + size]:
            k += size
    return k


TMP_SUFFIX = ".dotasks-tmp"
swept: set[Path] = set()


def sweep_temp_files(real: Path) -> None:
    """Remove temporary files a kill left behind (once per plan and process, under the lock).

    Only regular files with our exact name shape: ``.SPEC.md.<8 random>.dotasks-tmp``
    (mkstemp's), or the fixed name older versions used.
    """
    if real in swept:
        return
    swept.add(real)
    shape = re.compile(rf"^\.{re.escape(real.name)}\.(?:[a-z0-9_]{{8}}|marking){re.escape(TMP_SUFFIX)}$")
    try:
        names = [n for n in os.listdir(real.parent) if shape.match(n)]
    except OSError:
        return
    for name in names:
        path = real.parent / name
        with quiet():
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)


def unlink_quiet(path: str) -> None:
    with quiet():
        os.unlink(path)


class quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, OSError)


# --------------------------------------------------------------------------- RENAME_EXCHANGE

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def renameat2() -> Any:
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


def exchange(a: str, b: str) -> bool:
    """Swap two names atomically; False when the system or file system cannot."""
    fn = renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)
