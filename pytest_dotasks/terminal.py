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
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from pytest_dotasks.plan.durations import format_elapsed


class LiveOutput:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self.last_line = time.monotonic()
        # The terminal as it is now, before any test captures: a copy of stdout's descriptor, or
        # (when stdout has none: pytest run in-process by pytester) the stream object itself.
        self._tty: int | None = None
        self._tty_file: TextIO | None = None
        if not self.is_worker and (config.get_verbosity() >= 1 or os.environ.get("CI")):
            try:
                self._tty = os.dup(sys.stdout.fileno())
            except (AttributeError, OSError, ValueError):
                self._tty_file = sys.stdout

    @property
    def has_tty(self) -> bool:
        return self._tty is not None or self._tty_file is not None

    def _raw(self, text: str) -> bool:
        """Write past any capture, from any thread; False when nothing could be written."""
        with self._lock:
            try:
                if self._tty is not None:
                    os.write(self._tty, text.encode("utf-8", "replace"))
                elif self._tty_file is not None:
                    self._tty_file.write(text)
                    self._tty_file.flush()
                else:
                    return False
            except (OSError, ValueError):
                return False
        return True

    def emit(self, line: str, force: bool = False) -> None:
        """A live line under ``-v`` (``force``: always)."""
        if self.is_worker or (self.config.get_verbosity() < 1 and not force):
            return
        self.last_line = time.monotonic()  # something was said: no heartbeat needed yet
        if threading.current_thread() is not threading.main_thread():
            # A command's output reader, the background monitor: write past the capture to the
            # terminal's own descriptor (live, and no capture toggled from another thread); without
            # one, the line waits for the main thread.
            if not self._raw(line + "\n"):
                self._pending.append(line)
            return
        self.flush()
        self._write(line)

    @contextlib.contextmanager
    def heartbeat(self, label: str, every: float) -> Iterator[None]:
        """While the block runs, every ``every`` seconds without a live line, say it still runs."""
        if not self.has_tty or every <= 0:
            yield
            return
        stop = threading.Event()
        start = self.last_line = time.monotonic()

        def beat() -> None:
            while not stop.wait(min(every, 1.0)):
                now = time.monotonic()
                if now - self.last_line >= every:
                    self.last_line = now
                    if not self._raw(f"\n[HEARTBEAT] {label}: running {format_elapsed(now - start)}, "
                                     f"no output for {every:g}s\n"):
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
        self._tty_file = None

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
