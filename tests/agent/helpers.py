"""Shared by the agent tests (and the end-to-end ones in tests/): the executor agent and the greeting
plan they run, and readers of what a run left (task log, transcripts, JUnit properties, tool results)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tests.stubs.steps import agent_file, make_project, write_agent

DONE = "Ran it: prints hi.\nSTEP RESULT: SUCCESS"
SUCCESS = "Tested it.\nSTEP RESULT: SUCCESS"

AGENT = """\
---
name: tinker-executor
description: Executes plan steps.
tools: Bash, Read, Write, Edit
model: haiku
---
You are the executor. Test before you claim success.
"""
"""The executor of the end-to-end tests: tinker-executor on haiku (claude-haiku-5-5), four tools."""


def greeting(body: str = "Write hello.py that prints a greeting.", *,
             validate: str | None = "python3 hello.py | grep -q hi", extra: str = "") -> str:
    """STEP 1 "Make the greeting" (outputs hello.py; validated by running it unless ``validate`` is None),
    then the ``extra`` lines as they are."""
    plan = f"- [ ] **STEP 1**: Make the greeting\n  {body}\n  - outputs: hello.py\n"
    if validate is not None:
        plan += f"  - validate: {validate}\n"
    return plan + extra


def write_executor(root: Path, text: str = AGENT) -> Path:
    """``root/.claude/agents/AGENT.md`` holding ``text`` (the executor, ``AGENT``, unless told)."""
    return agent_file(root, "AGENT.md", text)


def agent_project(tmp_path: Path) -> Path:
    """``tmp_path/proj`` with SPEC.md and ``.claude/agents/AGENT.md`` (tinker-executor, every tool)."""
    r = make_project(tmp_path)
    write_agent(r, "AGENT.md", "You are the executor.", name="tinker-executor",
                description="Executes plan steps", tools="Read, Edit, Task, Bash, Write")
    return r


def log(root: Path) -> list[dict[str, Any]]:
    """Every line of ``root/.task_execution.log``, each of which must parse; none when there is no log."""
    path = root / ".task_execution.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def events(root: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in log(root) if e.get("event") == name]


def transcript(root: Path, task_id: str = "task_1_0badc0de") -> list[dict[str, Any]]:
    path = root / ".dotasks" / "transcripts" / f"{task_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def junit(path: Path) -> dict[str, dict[str, str]]:
    """Each test case's name -> its properties, in a JUnit XML report."""
    return {str(case.get("name")): {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}
            for case in ET.parse(path).getroot().iter("testcase")}


def properties(path: Path) -> dict[str, str]:
    """The properties of the first (for a one-step plan: the only) test case in a JUnit XML report."""
    case = ET.parse(path).getroot().find(".//testcase")
    assert case is not None
    return {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}


def results(request: Any) -> list[dict[str, Any]]:
    """The tool_result blocks in the last user message of a recorded request."""
    last = [m for m in request.messages if m["role"] == "user"][-1]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def tool_results(request: Any) -> dict[str, dict[str, Any]]:
    """tool_use_id -> tool_result block, in the last user message of a recorded request."""
    return {b["tool_use_id"]: b for b in results(request)}
