"""A background step's settled outcome, kept where every process of the run can read it.

The process that settles a step (its worker, the monitor, a later run) writes the verdict beside
the step's background state; xdist's controller and ``--no-mark`` runs read it from there, since
SPEC.md may not say (or not yet).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from pytest_dotasks.plan.marking import read_marker
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED
from pytest_dotasks.run import background as bg


@dataclasses.dataclass
class Finished:
    """A background step that ended while this run watched."""

    task: bg.BgTask
    ok: bool
    message: str
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)  # metrics and checks, for JUnit



def verdict_of(finished: list[Finished], spec: Path, task_id: str) -> Finished | None:
    """The settled outcome of a background step, from this process or another one's record."""
    for f in reversed(finished):
        if f.task.task_id == task_id:
            return f
    task = bg.find(spec, task_id)
    verdict = read_verdict(task) if task is not None else None
    if task is None or verdict is None:
        return None
    return Finished(task, bool(verdict["ok"]), str(verdict.get("message", "")), dict(verdict.get("properties") or {}))


def is_running(spec: Path, task_id: str) -> bool:
    task = bg.find(spec, task_id)
    return task is not None and bg.status(task)[0] == bg.RUNNING


def status_of(done: Finished | None, spec: Path, step: int, task_id: str) -> str:
    """A finished background step's status: its verdict, else its marker."""
    if done is not None:
        return STATUS_DONE if done.ok else STATUS_FAILED
    marker = read_marker(spec, step)
    return marker.status if marker is not None and marker.task_id == task_id else STATUS_FAILED


def write_verdict(task: bg.BgTask, ok: bool, message: str, properties: dict[str, Any]) -> None:
    """The settled outcome, for any process of the run (xdist's controller, ``--no-mark``)."""
    try:
        tmp = task.state / "verdict.json.tmp"
        tmp.write_text(json.dumps({"ok": ok, "message": message, "properties": properties}, default=str))
        os.replace(tmp, task.state / "verdict.json")
    except OSError:
        pass


def read_verdict(task: bg.BgTask) -> dict[str, Any] | None:
    data = bg.read_json(task.state / "verdict.json")
    return data if data is not None and isinstance(data.get("ok"), bool) else None
