"""The outcomes of one run's steps, shared by its xdist workers.

Under ``-n N`` a plan is cut into chains (``plan.graph.chains``) that xdist's loadgroup
scheduler hands to different workers, so a step may need one that another worker runs:
a ``[P]`` task of a Spec Kit plan and the task after the parallel run, say. Each worker
writes the outcome of every step it settles here, one small JSON file per step, written
whole (a reader sees all of it or nothing); a worker whose step needs a step of another
chain waits here until that outcome appears.

Waiting cannot deadlock while chains are handed out in file order (``plugin.py`` turns off
xdist's reordering): the first unfinished step in file order never waits. It can still
wait for nothing when the run stops short (``-x``, a crashed worker): every worker lists
itself under ``workers/`` until its loop ends, and a waiter lists itself under ``waiting/``;
when every live worker still in its loop has been waiting for a few seconds, no step can finish any more, and the wait ends
with :class:`Stuck` instead of a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_dotasks.run.background import pid_alive, proc_start

STUCK_AFTER = 3.0  # seconds every live worker must have been waiting before a wait gives up


class Stuck(Exception):
    """No worker of this run can finish the awaited step any more."""


class Board:
    """One plan's shared outcomes in one run: ``<plan folder>/.dotasks/runs/<run id>/<plan name>/``."""

    def __init__(self, state_dir: Path, run_id: str, plan_name: str, worker: str) -> None:
        self.run_root = state_dir / "runs" / run_id
        self.folder = self.run_root / plan_name
        self.worker = worker

    # ------------------------------------------------------------ outcomes

    def put(self, number: int, outcome: str, task_id: str | None = None) -> None:
        data: dict[str, object] = {"outcome": outcome, "task_id": task_id, "worker": self.worker}
        _write(self.folder / f"{number}.json", data)

    def put_if_absent(self, number: int, outcome: str) -> None:
        """The controller's word for a step whose worker crashed: never over a worker's own."""
        if self.get(number) is None:
            self.put(number, outcome)

    def get(self, number: int) -> tuple[str, str | None] | None:
        data = _read(self.folder / f"{number}.json")
        outcome = data.get("outcome") if data is not None else None
        if data is None or not isinstance(outcome, str):
            return None
        task_id = data.get("task_id")
        return outcome, task_id if isinstance(task_id, str) else None

    # ------------------------------------------------------------ workers

    def register(self) -> None:
        """This worker takes part in the run (before any step is handed out)."""
        _write(self.run_root / "workers" / f"{self.worker}.json", _me())

    def expect(self, worker: str) -> None:
        """Controller: a worker is starting (a replacement for a crashed one, say). Until it
        registers itself, the controller stands in for it: nobody is stuck while it boots."""
        _write(self.run_root / "workers" / f"{worker}.json", _me())

    def gone(self, worker: str) -> None:
        """Controller: a worker is down (finished or crashed): it runs no more steps."""
        try:
            (self.run_root / "workers" / f"{worker}.json").unlink()
        except OSError:
            pass

    def leave(self) -> None:
        """This worker runs no more steps (its loop ended: all done, or ``-x`` stopped it)."""
        try:
            (self.run_root / "workers" / f"{self.worker}.json").unlink()
        except OSError:
            pass

    def wait(self, number: int, *, poll: float = 0.05, max_poll: float = 0.5,
             stuck_after: float = STUCK_AFTER, now: Callable[[], float] = time.monotonic,
             check: Callable[[], None] = lambda: None) -> tuple[str, str | None]:
        """The outcome of ``number`` once another worker settles it; :class:`Stuck` when every
        live worker of the run has been waiting for ``stuck_after`` seconds. ``check`` runs at
        every look and may end the wait by raising (another need of the step failed, say)."""
        found = self.get(number)
        if found is not None:
            return found
        with self._waiting(number):
            stuck_since: float | None = None
            delay = poll
            while True:
                found = self.get(number)
                if found is not None:
                    return found
                check()
                if self._everyone_waits():
                    stuck_since = now() if stuck_since is None else stuck_since
                    if now() - stuck_since >= stuck_after:
                        found = self.get(number)  # settled in the last instant
                        if found is not None:
                            return found
                        raise Stuck("every live worker of this run is waiting for a step")
                else:
                    stuck_since = None
                time.sleep(delay)
                delay = min(max_poll, delay * 1.5)

    @contextmanager
    def _waiting(self, number: int) -> Iterator[None]:
        path = self.run_root / "waiting" / f"{self.worker}.json"
        _write(path, {**_me(), "for": number})
        try:
            yield
        finally:
            try:
                path.unlink()
            except OSError:
                pass

    def _everyone_waits(self) -> bool:
        waiting = {p.stem for p in _listing(self.run_root / "waiting") if _live(p)}
        live = {p.stem for p in _listing(self.run_root / "workers") if _live(p)}
        return live <= waiting

    def remove(self) -> None:
        """The run is over (controller): its board goes."""
        shutil.rmtree(self.run_root, ignore_errors=True)


def remove_old_runs(state_dir: Path, older_than: float = 2 * 86400.0) -> None:
    """Boards left by runs that were killed (no session finish); a live run's board is fresh."""
    cutoff = time.time() - older_than
    for folder in _listing(state_dir / "runs"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _me() -> dict[str, object]:
    return {"pid": os.getpid(), "starttime": proc_start(os.getpid())}


def _live(path: Path) -> bool:
    data = _read(path)
    pid = data.get("pid") if data is not None else None
    if data is None or not isinstance(pid, int):
        return False
    start = data.get("starttime")
    return pid_alive(pid, start if isinstance(start, str) else None)


def _listing(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # whole or not at all
