"""How files looked: stat signatures, and the bytes of small regular files, read only when they moved.

The guard takes a snapshot of the protected set before every tool call that
can write and compares after it. To keep that cheap a ``Looker`` remembers
each file's bytes with its lstat signature (mode, inode, device, size, mtime,
ctime) and reads a file again only when the signature moved. ctime is in
the signature because nobody can set it: a same-size rewrite followed by
``touch -r`` still shows.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from pytest_dotasks.agent.fileio import read_regular

Sig = tuple[int, int, int, int, int, int]
TEMPORARY = (".tmp", "-tmp")  # names their writers rename into place: not state


def signature(st: os.stat_result) -> Sig:
    return (st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One path as it was: its lstat signature (None: absent) and, for a small regular file, its bytes."""

    sig: Sig | None
    data: bytes | None = None

    @property
    def kind(self) -> str:
        if self.sig is None:
            return "absent"
        mode = self.sig[0]
        return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else \
            "link" if stat.S_ISLNK(mode) else "other"

    @property
    def mode(self) -> int | None:
        return stat.S_IMODE(self.sig[0]) if self.sig is not None else None


class Looker:
    """Looks at paths, remembering the bytes it read by signature.

    Paths are plain strings inside (a tree of a few thousand entries is
    walked before and after every call: ``pathlib`` objects would cost more
    than the ``lstat`` calls).
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Sig, bytes]] = {}

    def look(self, path: str | Path, cap: int, st: os.stat_result | None = None) -> Seen:
        """``path`` now, without following a final symlink; bytes only for a regular file up to ``cap``."""
        path = os.fspath(path)
        if st is None:
            try:
                st = os.lstat(path)
            except (OSError, ValueError):
                return Seen(None)
        sig = signature(st)
        if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
            return Seen(sig)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == sig:
            return Seen(sig, cached[1])
        try:
            st2, data = read_regular(path, cap)
        except OSError:
            return Seen(sig)
        if data is None or signature(st2) != sig:
            return Seen(sig)  # it moved while we read it: compared by signature only
        self._cache[path] = (sig, data)
        return Seen(sig, data)

    def forget(self, path: str | Path) -> None:
        self._cache.pop(os.fspath(path), None)

    def tree(self, top: str | Path, cap: int) -> dict[str, Seen]:
        """``top`` and everything under it (symlinks not followed; temporary files left out)."""
        top = os.fspath(top)
        out: dict[str, Seen] = {}
        seen = self.look(top, cap)
        if seen.sig is None:
            return out
        out[top] = seen
        folders = [top] if seen.kind == "dir" else []
        while folders:
            folder = folders.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            for e in entries:
                if e.name.endswith(TEMPORARY):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                out[e.path] = self.look(e.path, cap, st)
                if stat.S_ISDIR(st.st_mode):
                    folders.append(e.path)
        return out

    def same(self, before: Seen, path: str | Path, cap: int) -> bool:
        """Is ``path`` as ``before`` saw it? Same signature, or same kind, mode and bytes (a mere touch)."""
        try:
            st = os.lstat(path)
        except (OSError, ValueError):
            return before.sig is None
        if before.sig is not None and signature(st) == before.sig:
            return True
        now = self.look(path, cap)
        if now.kind != before.kind or now.mode != before.mode:
            return False  # chmod 000 SPEC.md stops the plugin marking it as surely as an edit
        return before.kind == "dir" or (before.data is not None and now.data == before.data)
