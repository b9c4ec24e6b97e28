"""Claims: a step being executed belongs to one process, whichever pytest run it is in.

Two pytest runs on one plan (or a run beside another's xdist workers) must never
execute the same step at once. Before a step runs, its process claims it: a file
``.dotasks/claims/SPEC.md.stepN.json`` beside the plan, created exclusively (the
content is written to a private temporary file first and then hard-linked into
place, which fails if the name exists: a reader never sees a half-written claim).
It holds the owner's pid, the start time of that pid (``/proc``, so a reused pid is
not mistaken for the owner), its host and the task id. The owner removes it when
the step's verdict is written (pytest's teardown); a claim whose owner died
(``kill -9``) is stale and is taken over, under a lock, by exactly one taker.

Each xdist worker is a process of its own and claims the steps it is given; the
controller never runs a step, so it never holds a claim.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import socket
import threading
from pathlib import Path

from pytest_dotasks.plan.marking import read_marker
from pytest_dotasks.plan.model import STATUS_DONE, Marker, ident_of
from pytest_dotasks.run.background import carriers, kill_carriers, pid_alive, proc_start

_HOST = socket.gethostname()
# Claims this process holds, by path: a claim file naming our own pid that is not
# in here was left by an earlier session in this process (pytester runs in-process).
_held: dict[Path, Claim] = {}
_held_lock = threading.Lock()
_files: dict[Path, tuple[int, int]] = {}  # (device, inode) of each claim file this process wrote
_made: set[Path] = set()  # claim folders known to exist
_serial = itertools.count()


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim on one step of one plan."""

    path: Path
    pid: int
    starttime: str | None
    host: str
    task_id: str

    def release(self) -> None:
        """Give the step up (its verdict is written). Only the owner removes its file."""
        with _held_lock:
            if _held.get(self.path) is not self:
                return
            del _held[self.path]
            ident = _files.pop(self.path, None)
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == ident:  # still the file we wrote
                os.unlink(self.path)
        except OSError:
            pass

    def describe(self) -> str:
        where = f" on {self.host}" if self.host != _HOST else ""
        return f"pid {self.pid}{where} [task_id: {self.task_id}]"


def claims_dir(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "claims"


def claim_path(spec_path: Path, number: int) -> Path:
    return claims_dir(spec_path) / f"{spec_path.name}.step{number}.json"


def _read(path: Path) -> Claim | None:
    try:
        data = json.loads(path.read_text())
        return Claim(path, int(data["pid"]), data.get("starttime"), str(data.get("host", _HOST)),
                     str(data.get("task_id", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stale(claim: Claim) -> bool:
    """Its owner is gone: dead, or its pid now names another process (start time differs)."""
    if claim.host != _HOST:
        return False  # another machine's process: we cannot tell, so it holds
    if claim.pid == os.getpid():
        with _held_lock:
            return _held.get(claim.path) != claim  # ours only if this session took it
    return not pid_alive(claim.pid, claim.starttime)


def _create(path: Path, mine: Claim) -> bool:
    """Put ``mine`` at ``path`` unless a claim is there; True if it is ours now."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{next(_serial)}.tmp"
    data = {"pid": mine.pid, "starttime": mine.starttime, "host": mine.host, "task_id": mine.task_id}
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # left by a killed process that had our pid
        os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, json.dumps(data).encode())
        st = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and exclusive, like O_EXCL, with the content already in place
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    with _held_lock:
        _files[path] = (st.st_dev, st.st_ino)
    return True


class Held(Exception):
    """The step is claimed by another live process (``holder``)."""

    def __init__(self, holder: Claim) -> None:
        super().__init__(holder.describe())
        self.holder = holder


_own_start: dict[int, str | None] = {}


def _start_of_self() -> str | None:
    pid = os.getpid()  # keyed by pid: a forked child looks its own up
    if pid not in _own_start:
        _own_start[pid] = proc_start(pid)
    return _own_start[pid]


def take(spec_path: Path, number: int, task_id: str) -> Claim | None:
    """Claim STEP ``number`` of ``spec_path`` for this process; raises ``Held`` if another
    live process holds it (a stale claim is taken over).

    None when no claim can be written (a read-only folder): the step then runs
    unclaimed; such a plan cannot be marked either, and says so when marking.
    """
    path = claim_path(spec_path, number)
    mine = Claim(path, os.getpid(), _start_of_self(), _HOST, task_id)
    with _held_lock:
        if path in _held:  # this process executes the step already
            raise Held(_held[path])
        _held[path] = mine  # before the file exists: our own file is never taken for stale
    try:
        if path.parent not in _made:
            path.parent.mkdir(parents=True, exist_ok=True)
            _made.add(path.parent)
        if _create(path, mine):
            return mine
        holder = _take_over(path, mine)
    except OSError:
        with _held_lock:
            _held.pop(path, None)
        return None
    except BaseException:
        with _held_lock:
            _held.pop(path, None)
        raise
    if holder is None:
        return mine
    with _held_lock:
        _held.pop(path, None)
    raise Held(holder)


def _take_over(path: Path, mine: Claim) -> Claim | None:
    """Replace a stale claim by ours: None when ours is in place, else the live holder.

    Only a taker under this lock removes a claim that is not its own, so the
    stale claim it read is still the one it removes; of several takers, the
    first replaces it and the others find a live claim.
    """
    from filelock import FileLock

    with FileLock(str(path.parent / ".takeover.lock")):
        while True:  # the holder may release (or a new one arrive) between our looks
            other = _read(path)
            if other is not None and not _stale(other):
                return other
            if other is not None and other.host == _HOST:
                # Its holder died (kill -9): what it was running still carries its task id. Stop it
                # before this run executes the step again, or both would write the same files.
                kill_carriers(carriers(other.task_id))
            if other is not None or path.exists():  # stale, or not a claim we could have written
                _unlink(path)
            if _create(path, mine):
                return None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def stop_orphans(spec_path: Path, number: int) -> int:
    """STEP ``number``'s process died under it (an xdist worker killed mid-step): stop the
    commands it left running, found by the task id its claim names. Returns how many."""
    claim = _read(claim_path(spec_path, number))
    if claim is None or not _stale(claim):
        return 0  # no claim, or its holder still lives: not an orphan's
    found = carriers(claim.task_id)
    kill_carriers(found)
    return len(found)


def held_by(spec_path: Path, number: int) -> Claim | None:
    """The live claim on STEP ``number``, if any."""
    claim = _read(claim_path(spec_path, number))
    if claim is None or _stale(claim):
        return None
    return claim


def for_step(spec_path: Path, number: int, task_id: str, seen: Marker, redo: bool) -> tuple[Claim | None, str | None]:
    """Claim STEP ``number`` before it is executed: (our claim, why to skip it instead).

    Skip if another process executes it, or if another run marked it done since
    this one read the plan (``seen``; without --redo the done check that follows
    the claim sees that too: taking the claim first is what closes the race).
    """
    try:
        claim = take(spec_path, number, task_id)
    except Held as held:
        return None, f"STEP {ident_of(number)} is running in another pytest process, {held}"
    if redo:
        now = read_marker(spec_path, number)
        if now is not None and now.status == STATUS_DONE and now.task_id != seen.task_id:
            return claim, f"STEP {ident_of(number)} was done meanwhile by another run [task_id: {now.task_id}]"
    return claim, None
