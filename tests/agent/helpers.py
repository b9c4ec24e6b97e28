"""Shared by the agent tests: a project with the executor agent, and readers of what a session left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_dotasks.run.tasklog import read_log
from tests.stubs.steps import make_project, write_agent

DONE = "Ran it: prints hi.\nSTEP RESULT: SUCCESS"


def agent_project(tmp_path: Path) -> Path:
    """``tmp_path/proj`` with SPEC.md and ``.claude/agents/AGENT.md`` (tinker-executor, every tool)."""
    r = make_project(tmp_path)
    write_agent(r, "AGENT.md", "You are the executor.", name="tinker-executor",
                description="Executes plan steps", tools="Read, Edit, Task, Bash, Write")
    return r


def events(root: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_log(root / ".task_execution.log") if e.get("event") == name]


def transcript(root: Path, task_id: str = "task_1_0badc0de") -> list[dict[str, Any]]:
    path = root / ".dotasks" / "transcripts" / f"{task_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def tool_results(request: Any) -> dict[str, dict[str, Any]]:
    """tool_use_id -> tool_result block, in the last user message of a recorded request."""
    content = request.messages[-1]["content"]
    return {b["tool_use_id"]: b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"}
