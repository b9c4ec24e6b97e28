"""Live lines in the terminal: the seed's ``[PRE-FLIGHT] ✓ ...`` style under ``-v``.

Only the controller writes (xdist workers have no terminal). Lines from other
threads (the background monitor) wait for the main thread: toggling capture
under a running test from another thread would corrupt its output.

The heartbeat is the exception: while a step (or a wait) prints nothing, a
timer thread says so every ``--heartbeat`` through a copy of the terminal's
file descriptor taken before any capture, so a silent hour-long step never
looks hung. Shown under ``-v``, or whenever the ``CI`` variable is set.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import pytest


class LiveOutput:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self._pending: list[str] = []
        self.last_line = time.monotonic()
        self._tty: int | None = None
        if not self.is_worker and (config.get_verbosity() >= 1 or os.environ.get("CI")):
            try:
                self._tty = os.dup(1)  # the terminal as it is now, before any test captures fd 1
            except OSError:
                self._tty = None

    def emit(self, line: str, force: bool = False) -> None:
        """A live line under ``-v`` (``force``: always)."""
        if self.is_worker or (self.config.get_verbosity() < 1 and not force):
            return
        self.last_line = time.monotonic()  # something was said: no heartbeat needed yet
        if threading.current_thread() is not threading.main_thread():
            self._pending.append(line)
            return
        self.flush()
        self._write(line)

    @contextlib.contextmanager
    def heartbeat(self, label: str, every: float) -> Iterator[None]:
        """While the block runs, every ``every`` seconds without a live line, say it still runs."""
        if self._tty is None or every <= 0:
            yield
            return
        stop = threading.Event()
        start = self.last_line = time.monotonic()

        def beat() -> None:
            while not stop.wait(min(every, 1.0)):
                now = time.monotonic()
                if now - self.last_line >= every:
                    self.last_line = now
                    line = f"\n[HEARTBEAT] {label}: running {_elapsed(now - start)}, no output for {every:g}s\n"
                    fd = self._tty
                    try:
                        if fd is not None:
                            os.write(fd, line.encode("utf-8", "replace"))
                    except OSError:
                        return

        thread = threading.Thread(target=beat, name="dotasks-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=2)

    def close(self) -> None:
        if self._tty is not None:
            with contextlib.suppress(OSError):
                os.close(self._tty)
            self._tty = None

    def flush(self) -> None:
        while self._pending:
            self._write(self._pending.pop(0))

    def _write(self, line: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with ctx:
            tr.write_line(line)
        self.last_line = time.monotonic()


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
