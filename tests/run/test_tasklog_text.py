"""The task log never loses a line to odd text."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_dotasks.run.tasklog import TaskLog


def test_a_lone_surrogate_is_escaped_not_lost(tmp_path: Path) -> None:
    log = TaskLog(tmp_path / "task.log", [])
    log.event("task_1_aaaaaaaa", "the model said \ud800 here", step=1, phase="main", event="turn", text="\udfff")
    lines = (tmp_path / "task.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "the model said \ud800 here" and entry["text"] == "\udfff"
