"""Background steps: launch detached, watch, and settle their markers.

State of one background execution lives in ``.dotasks/background/TASK_ID/``:
``meta.json`` (what runs, which step), ``output.log``, ``pid`` of the
supervisor (``run.supervisor``), ``exit.json`` when the body ended, ``settling``
once one process (this run's monitor, a waiting dependent, or a later run)
took on writing the final marker, and ``settled`` once it has. Creating
``settling`` with O_EXCL makes that happen exactly once, whichever process
gets there first; the others wait for ``settled`` before reading the marker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RUNNING, EXITED, VANISHED = "running", "exited", "vanished"


@dataclasses.dataclass
class BgTask:
    task_id: str
    step: int
    spec: Path
    state: Path
    command: str
    pid: int
    starttime: str | None
    monitor: str | None = None
    monitor_every: float = 60.0
    alerts: tuple[str, ...] = ()
    offset: int = 0  # bytes of the monitor file already read
    monitor_id: tuple[int, int] | None = None  # (device, inode) of the monitor file read so far
    refused: str | None = None  # why the monitor file is not read (not a regular file)

    @property
    def output(self) -> Path:
        return self.state / "output.log"

    @classmethod
    def load(cls, state: Path) -> BgTask:
        meta = json.loads((state / "meta.json").read_text())
        pid_info = json.loads((state / "pid.json").read_text()) if (state / "pid.json").exists() else {}
        # Where reading the monitor file resumes: the position the last reader recorded, else
        # the file's size when the step started (what was there before is not this run's).
        pos = read_json(state / "monitor.json") or meta.get("monitor_start") or {}
        ident = pos.get("id")
        return cls(task_id=meta["task_id"], step=int(meta["step"]), spec=Path(meta["spec"]), state=state,
                   command=meta["command"], pid=int(pid_info.get("pid", 0)), starttime=pid_info.get("starttime"),
                   monitor=meta.get("monitor"), monitor_every=float(meta.get("monitor_every", 60.0)),
                   alerts=tuple(meta.get("alerts", ())), offset=int(pos.get("offset", 0)),
                   monitor_id=(int(ident[0]), int(ident[1])) if ident else None)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def background_root(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "background"


def proc_start(pid: int) -> str | None:
    """Start time of ``pid`` from /proc (guards against pid reuse); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def pid_alive(pid: int, starttime: str | None) -> bool:
    if pid <= 0:
        return False
    if Path("/proc").is_dir():
        now = proc_start(pid)
        return now is not None and (starttime is None or now == starttime)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def launch(task_id: str, step: int, spec: Path, command: str, cwd: Path, env: dict[str, str],
           monitor: str | None, monitor_every: float, alerts: Iterable[str],
           timeout: float | None = None) -> BgTask:
    """Start ``command`` detached from pytest; returns once it is running."""
    state = background_root(spec) / task_id
    state.mkdir(parents=True, exist_ok=True)
    meta = {"task_id": task_id, "step": step, "spec": str(spec), "command": command, "cwd": str(cwd),
            "env": {k: v for k, v in env.items() if k.startswith("DOTASKS_")}, "monitor": monitor,
            "monitor_every": monitor_every, "alerts": list(alerts), "started": time.time(),
            "timeout": timeout, "monitor_start": _monitor_start(spec.parent / monitor) if monitor else None}
    (state / "meta.json").write_text(json.dumps(meta))
    out = subprocess.run([sys.executable, "-m", "pytest_dotasks.run.supervisor", str(state)], cwd=str(cwd), env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    pid = int(out.stdout.strip())
    start = proc_start(pid)
    tmp = state / "pid.json.tmp"
    tmp.write_text(json.dumps({"pid": pid, "starttime": start}))
    os.replace(tmp, state / "pid.json")
    return BgTask.load(state)


def status(task: BgTask) -> tuple[str, int | None]:
    """(running | exited | vanished, exit code)."""
    exit_file = task.state / "exit.json"
    if exit_file.exists():
        try:
            return EXITED, int(json.loads(exit_file.read_text())["exit_code"])
        except (ValueError, KeyError, json.JSONDecodeError):
            return EXITED, 255
    if pid_alive(task.pid, task.starttime):
        return RUNNING, None
    # The supervisor may have written exit.json between our two looks.
    if exit_file.exists():
        return status(task)
    return VANISHED, None


@dataclasses.dataclass(frozen=True)
class Carrier:
    """A live process that carries a task's identity (``DOTASKS_TASK_ID`` in its environment)."""

    pid: int
    supervisor: bool  # the task's supervisor, not its body (or the body's children)


SUPERVISOR_MODULE = "pytest_dotasks.run.supervisor"


def carriers(task_id: str) -> list[Carrier]:
    """Live processes of background execution ``task_id``, found without its state folder.

    Its supervisor and body (and their children) carry ``DOTASKS_TASK_ID`` in
    their environment (``context.dotasks_env``); the supervisor also names its
    state folder, which ends in the task id, on its command line. Processes of
    other users cannot be read and are not ours to find. Linux only (``/proc``).
    """
    needle = f"DOTASKS_TASK_ID={task_id}".encode()
    me = os.getpid()
    out: list[Carrier] = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return out
    for name in entries:
        pid = int(name)
        if pid == me:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        supervisor = SUPERVISOR_MODULE.encode() in cmdline and any(arg.endswith(task_id.encode()) for arg in cmdline)
        if (needle in environ or supervisor) and proc_start(pid) is not None:
            out.append(Carrier(pid, supervisor))
    return out


def kill_carriers(found: list[Carrier]) -> None:
    """Stop a body nobody supervises any more: its whole process group (never our own)."""
    mine = os.getpgrp()
    for c in found:
        try:
            group = os.getpgid(c.pid)
            if group != mine:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(c.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def kill_orphan(task: BgTask) -> None:
    """The supervisor is gone: stop the body it left behind, nobody is watching it."""
    try:
        child = int(json.loads((task.state / "child.json").read_text())["pid"])
        os.killpg(child, signal.SIGKILL)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass


def claim(task: BgTask) -> bool:
    """True for exactly one caller: the one that will write the final marker."""
    try:
        task.state.mkdir(parents=True, exist_ok=True)  # its folder may have been deleted meanwhile
        fd = os.open(task.state / "settling", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError:
        return True  # nowhere to record the claim (folder gone, read-only): settle anyway
    os.close(fd)
    return True


def claimed(task: BgTask) -> bool:
    return (task.state / "settling").exists()


def mark_settled(task: BgTask) -> None:
    """The claimer has written the final marker (or decided to leave it)."""
    try:
        (task.state / "settled").touch()
    except OSError:
        pass


def settled(task: BgTask) -> bool:
    return (task.state / "settled").exists()


def find(spec: Path, task_id: str | None) -> BgTask | None:
    """The background execution ``task_id`` of ``spec``, if it was launched."""
    state = background_root(spec) / (task_id or "-")
    if not task_id or not (state / "pid.json").exists():
        return None
    return BgTask.load(state)


def tasks_for(spec: Path) -> list[BgTask]:
    root = background_root(spec)
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "meta.json").exists() and (d / "pid.json").exists():
                try:
                    out.append(BgTask.load(d))
                except (OSError, ValueError, KeyError, json.JSONDecodeError):
                    continue
    return out


MONITOR_CHUNK = 1024 * 1024  # at most this much of a monitor file is read per look
MONITOR_LINE_MAX = 2000  # characters kept of one monitor line


def _monitor_start(path: Path) -> dict[str, Any]:
    """Where tailing starts: the end of the file as it is before the step runs."""
    try:
        st = os.stat(path)
    except OSError:
        return {"offset": 0, "id": None}
    if not stat.S_ISREG(st.st_mode):
        return {"offset": 0, "id": None}
    return {"offset": st.st_size, "id": [st.st_dev, st.st_ino]}


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


class MonitorRefused(Exception):
    """The monitor file is not a regular file: it is not read (once said, then silent)."""


def _open_regular(path: Path) -> int | None:
    """A read-only descriptor on ``path`` if it is a regular file; None if it does not exist.

    Checked before opening (a FIFO would block ``open``) and again on the open
    descriptor (opened O_NONBLOCK, so one swapped in between cannot block either).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise MonitorRefused(f"{path.name} is {_kind(st.st_mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise MonitorRefused(f"{path.name} is {_kind(mode)}, not a regular file")
    return fd


def read_new_lines(task: BgTask, root: Path, limit: int = 200) -> list[str]:
    """Lines appended to the monitor file since the last look (the latest ``limit`` of them).

    Bounded: at most ``MONITOR_CHUNK`` bytes are read per look (when the file grew
    by more, the look starts that far from its end: a monitor shows the latest
    lines) and each line is cut at ``MONITOR_LINE_MAX`` characters. Raises
    ``MonitorRefused`` once if the file is not a regular file.
    """
    if not task.monitor or task.refused:
        return []
    try:
        fd = _open_regular(root / task.monitor)
    except MonitorRefused as exc:
        task.refused = str(exc)
        raise
    except OSError:
        return []
    if fd is None:
        return []
    try:
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if task.monitor_id is not None and ident != task.monitor_id:
            task.offset = 0  # replaced by a new file (rotated): read the new one from its start
        task.monitor_id = ident
        if st.st_size < task.offset:
            task.offset = 0  # truncated: start over
        skip = st.st_size - task.offset > MONITOR_CHUNK
        if skip:
            task.offset = st.st_size - MONITOR_CHUNK
        data = os.pread(fd, MONITOR_CHUNK, task.offset)
    except OSError:
        return []
    finally:
        os.close(fd)
    start = data.find(b"\n") + 1 if skip else 0  # a look that skipped ahead starts at a whole line
    cut = data.rfind(b"\n") + 1  # keep a partial last line for next time...
    if cut <= start and len(data) == MONITOR_CHUNK:
        start, cut = 0, len(data)  # ...unless one line fills the chunk
    task.offset += cut
    lines = data[start:cut].decode("utf-8", "replace").splitlines()
    if cut:
        _save_position(task)
    return [ln if len(ln) <= MONITOR_LINE_MAX else ln[:MONITOR_LINE_MAX] + " [...]" for ln in lines[-limit:]]


def _save_position(task: BgTask) -> None:
    """Record how far the monitor file was read: a later run resumes there, replaying nothing."""
    try:
        tmp = task.state / f"monitor.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"offset": task.offset, "id": list(task.monitor_id or ()) or None}))
        os.replace(tmp, task.state / "monitor.json")
    except OSError:
        pass


def alert_in(line: str, patterns: Iterable[str]) -> str | None:
    for p in patterns:
        if re.search(rf"(?<![A-Za-z]){re.escape(p)}(?![A-Za-z])", line, re.IGNORECASE):
            return p
    return None


def tail_file(path: Path, lines: int = 3) -> str:
    """The last lines of a regular file (at most 4 KiB read; anything else: "")."""
    try:
        fd = _open_regular(path)
    except (OSError, MonitorRefused):
        return ""
    if fd is None:
        return ""
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, 4096, max(0, size - 4096)).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
    return "\n".join(ln[:MONITOR_LINE_MAX] for ln in data.rstrip().splitlines()[-lines:])


def describe(task: BgTask) -> dict[str, Any]:
    return {"pid": task.pid, "log": str(task.output), "monitor": task.monitor,
            "tail": tail_file(task.spec.parent / task.monitor) if task.monitor else tail_file(task.output)}
