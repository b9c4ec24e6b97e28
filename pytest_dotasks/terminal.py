"""Live lines in the terminal: the seed's ``[PRE-FLIGHT] ✓ ...`` style under ``-v``.

Only the controller writes (xdist workers have no terminal). Lines from other
threads (the background monitor) wait for the main thread: toggling capture
under a running test from another thread would corrupt its output.
"""

from __future__ import annotations

import contextlib
import threading

import pytest


class LiveOutput:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self._pending: list[str] = []

    def emit(self, line: str, force: bool = False) -> None:
        """A live line under ``-v`` (``force``: always)."""
        if self.is_worker or (self.config.get_verbosity() < 1 and not force):
            return
        if threading.current_thread() is not threading.main_thread():
            self._pending.append(line)
            return
        self.flush()
        self._write(line)

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
