"""A background step's final outcome reaches pytest: a late report for its test id.

A ``background: yes`` step passes as soon as its body starts (``⏳ Running``);
its real outcome comes later. When it ends while pytest still runs (a dependent
waited for it, the monitor saw it end, or ``--wait-background`` waited for it),
the process that learns it sends a *late report* for the same node id: a
``teardown`` report, failed or passed, carrying the metrics and check results.
Through ``pytest_runtest_logreport`` it reaches everything that reads reports:
the session's failure count (so the exit status), JUnit (an ``<error>`` on that
test id, with the properties), the terminal, and xdist's controller when sent
from a worker. Why teardown: pytest already means "the call passed, then
something failed" by a teardown error, and it needs no change to any plugin.
JUnit shows the late report as a second testcase element with the same name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_dotasks.plan.marking import read_marker
from pytest_dotasks.run.settle import BackgroundSteps
from pytest_dotasks.run.verdicts import Finished, is_running, verdict_of
from pytest_dotasks.settings import Settings

LATE = "dotasks_late"


def late_report(original: pytest.TestReport, ok: bool, message: str, properties: dict[str, Any]) -> pytest.TestReport:
    now = time.time()
    props = [(k, v) for k, v in original.user_properties if k not in properties]
    props += [*properties.items(), (LATE, True), ("background_outcome", "passed" if ok else "failed")]
    rep = pytest.TestReport(
        nodeid=original.nodeid, location=original.location, keywords=dict(original.keywords),
        outcome="passed" if ok else "failed", longrepr=None if ok else message, when="teardown",
        sections=[], duration=0.0, start=now, stop=now, user_properties=props,
    )
    for attr in ("node", "worker_id", "item_index"):  # xdist's: the terminal and JUnit key on them
        if hasattr(original, attr):
            setattr(rep, attr, getattr(original, attr))
    return rep


class LateVerdicts:
    """Which background steps this run started, and which of their outcomes pytest has seen."""

    def __init__(self, background: BackgroundSteps, settings: Settings,
                 send: Callable[[pytest.TestReport], None], emit: Callable[..., None], is_worker: bool = False) -> None:
        self.background = background
        self.settings = settings
        self.send = send
        self.emit = emit
        self.is_worker = is_worker
        self.started: dict[str, pytest.TestReport] = {}  # task id -> the call report that started it
        self.reported: set[str] = set()

    def observe(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        task_id = props.get("task_id")
        if not isinstance(task_id, str):
            return
        if props.get(LATE):
            self.reported.add(task_id)
        elif report.when == "call" and report.passed and props.get("background") == "started":
            self.started[task_id] = report

    def _deliver(self, task_id: str, ok: bool, message: str, properties: dict[str, Any]) -> None:
        if task_id in self.reported or task_id not in self.started:
            return
        self.reported.add(task_id)
        self.send(late_report(self.started[task_id], ok, message, properties))

    def deliver_settled(self) -> None:
        """Outcomes this process settled (main thread only: reports are not thread-safe).

        Not in an xdist worker: a report for another test id while the worker runs an item
        breaks xdist's bookkeeping. The controller tells those at the end (``finish``), from
        the verdict each settled step leaves in its background state.
        """
        if self.is_worker:
            return
        for f in list(self.background.finished):
            self._deliver(f.task.task_id, f.ok, _message(f), f.properties)

    def finish(self) -> None:
        """End of the run (controller): every outcome not yet told, and --wait-background."""
        self.deliver_settled()
        waiting = [t for t in self.started if t not in self.reported]
        if waiting and self.settings.wait_background:
            self.emit(f"[WAIT] --wait-background: waiting for {len(waiting)} background step"
                      f"{'s' if len(waiting) > 1 else ''}", force=True)
        for task_id in waiting:
            props = dict(self.started[task_id].user_properties)
            spec, step = Path(str(props["dotasks_spec"])), int(str(props["dotasks_step"]))
            if not self.settings.no_mark:
                marker = read_marker(spec, step)
                if marker is None or marker.task_id != task_id:
                    continue  # the marker was changed meanwhile: its outcome is not ours to tell
            done = verdict_of(self.background.finished, spec, task_id)  # settled here or by a worker
            if done is None:
                if not self.settings.wait_background and is_running(spec, task_id):
                    continue  # still running: the summary says so
                self.background.wait(spec, step, task_id, None, heartbeat=self.settings.heartbeat)
                done = verdict_of(self.background.finished, spec, task_id)
            if done is not None:
                self._deliver(task_id, done.ok, _message(done), done.properties)


def _message(f: Finished) -> str:
    verdict = "passed" if f.ok else "FAILED"
    return f"{f.message} - {verdict} [{f.task.task_id}]\noutput: {f.task.output}"
