"""The monitor of a run's background steps: one thread that tails, alerts and notices ends.

Every ``tick`` it looks at each watched task: its ``monitor:`` file every
``monitor_every`` (bounded reads, see ``background.read_new_lines``), and its
state; a task whose body ended is passed to ``on_finish`` once, after its last
monitor lines.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from pytest_dotasks.run.background import RUNNING, BgTask, MonitorRefused, read_new_lines, status


class Monitor(threading.Thread):
    """Watches this run's background steps: tails, alerts, and settles them."""

    def __init__(self, on_lines: Callable[[BgTask, list[str]], None],
                 on_finish: Callable[[BgTask, str, int | None], None], tick: float = 0.5,
                 on_warning: Callable[[BgTask, str], None] | None = None) -> None:
        super().__init__(daemon=True, name="dotasks-monitor")
        self.on_lines = on_lines
        self.on_finish = on_finish
        self.on_warning = on_warning
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
            self.read(task)

    def read(self, task: BgTask) -> None:
        """Pass on what the monitor file gained since the last look (or say once why it is not read)."""
        with self.read_lock:
            try:
                lines, refused = read_new_lines(task, task.spec.parent), None
            except MonitorRefused as exc:
                lines, refused = [], str(exc)
        if refused and self.on_warning is not None:
            self.on_warning(task, refused)
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
                self.read(task)
            state, code = status(task)
            if state != RUNNING:
                with self.lock:
                    mine = self.tasks.pop(task.task_id, None) is not None
                if not mine:
                    continue  # drained by a waiting dependent, which settles it
                self.read(task)
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
