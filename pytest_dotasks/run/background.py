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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
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

    @property
    def output(self) -> Path:
        return self.state / "output.log"

    @classmethod
    def load(cls, state: Path) -> BgTask:
        meta = json.loads((state / "meta.json").read_text())
        pid_info = json.loads((state / "pid.json").read_text()) if (state / "pid.json").exists() else {}
        return cls(task_id=meta["task_id"], step=int(meta["step"]), spec=Path(meta["spec"]), state=state,
                   command=meta["command"], pid=int(pid_info.get("pid", 0)), starttime=pid_info.get("starttime"),
                   monitor=meta.get("monitor"), monitor_every=float(meta.get("monitor_every", 60.0)),
                   alerts=tuple(meta.get("alerts", ())))


def background_root(spec_path: Path) -> Path:
    return spec_path.parent / ".dotasks" / "background"


def _proc_start(pid: int) -> str | None:
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
        now = _proc_start(pid)
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
            "timeout": timeout}
    (state / "meta.json").write_text(json.dumps(meta))
    out = subprocess.run([sys.executable, "-m", "pytest_dotasks.run.supervisor", str(state)], cwd=str(cwd), env=env,
                         capture_output=True, text=True, timeout=30, check=True)
    pid = int(out.stdout.strip())
    start = _proc_start(pid)
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


def kill_orphan(task: BgTask) -> None:
    """The supervisor is gone: stop the body it left behind, nobody is watching it."""
    import signal

    try:
        child = int(json.loads((task.state / "child.json").read_text())["pid"])
        os.killpg(child, signal.SIGKILL)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        pass


def claim(task: BgTask) -> bool:
    """True for exactly one caller: the one that will write the final marker."""
    try:
        fd = os.open(task.state / "settling", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def claimed(task: BgTask) -> bool:
    return (task.state / "settling").exists()


def mark_settled(task: BgTask) -> None:
    """The claimer has written the final marker (or decided to leave it)."""
    (task.state / "settled").touch()


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


def read_new_lines(task: BgTask, root: Path, limit: int = 200) -> list[str]:
    """Lines appended to the monitor file since the last look."""
    if not task.monitor:
        return []
    path = root / task.monitor
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < task.offset:  # truncated or rotated: start over
                task.offset = 0
            fh.seek(task.offset)
            data = fh.read()
    except OSError:
        return []
    cut = data.rfind(b"\n") + 1  # keep a partial last line for next time
    task.offset += cut
    lines = data[:cut].decode("utf-8", "replace").splitlines()
    return lines[-limit:]


def alert_in(line: str, patterns: Iterable[str]) -> str | None:
    for p in patterns:
        if re.search(rf"(?<![A-Za-z]){re.escape(p)}(?![A-Za-z])", line, re.IGNORECASE):
            return p
    return None


def tail_file(path: Path, lines: int = 3) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.rstrip().splitlines()[-lines:])


class Monitor(threading.Thread):
    """Watches this run's background steps: tails, alerts, and settles them."""

    def __init__(self, on_lines: Callable[[BgTask, list[str]], None],
                 on_finish: Callable[[BgTask, str, int | None], None], tick: float = 0.5) -> None:
        super().__init__(daemon=True, name="dotasks-monitor")
        self.on_lines = on_lines
        self.on_finish = on_finish
        self.tick = tick
        self.tasks: dict[str, BgTask] = {}
        self.next_tail: dict[str, float] = {}
        self.lock = threading.Lock()
        self.read_lock = threading.Lock()  # one reader of a monitor file at a time
        self.stopping = threading.Event()

    def watch(self, task: BgTask) -> None:
        with self.lock:
            self.tasks[task.task_id] = task
            self.next_tail[task.task_id] = 0.0
        if not self.is_alive() and not self.stopping.is_set():
            try:
                self.start()
            except RuntimeError:
                pass

    def drain(self, task_id: str) -> None:
        """Stop watching ``task_id`` after passing on its last monitor lines (it has ended)."""
        with self.lock:
            task = self.tasks.pop(task_id, None)
        if task is not None:
            with self.read_lock:
                lines = read_new_lines(task, task.spec.parent)
            if lines:
                self.on_lines(task, lines)

    def running(self) -> list[BgTask]:
        with self.lock:
            return list(self.tasks.values())

    def poll_once(self) -> None:
        now = time.monotonic()
        for task in self.running():
            if now >= self.next_tail.get(task.task_id, 0.0):
                self.next_tail[task.task_id] = now + task.monitor_every
                with self.read_lock:
                    lines = read_new_lines(task, task.spec.parent)
                if lines:
                    self.on_lines(task, lines)
            state, code = status(task)
            if state != RUNNING:
                with self.lock:
                    mine = self.tasks.pop(task.task_id, None) is not None
                if not mine:
                    continue  # drained by a waiting dependent, which settles it
                with self.read_lock:
                    lines = read_new_lines(task, task.spec.parent)
                if lines:
                    self.on_lines(task, lines)
                self.on_finish(task, state, code)

    def run(self) -> None:
        while not self.stopping.wait(self.tick):
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - a monitor must never take the run down
                sys.stderr.write(f"pytest-dotasks monitor: {exc!r}\n")

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=5)


def describe(task: BgTask) -> dict[str, Any]:
    return {"pid": task.pid, "log": str(task.output), "monitor": task.monitor,
            "tail": tail_file(task.spec.parent / task.monitor) if task.monitor else tail_file(task.output)}
