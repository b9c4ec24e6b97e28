"""Build steps, contexts and ``.claude/`` definitions by hand, for agent tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_dotasks.plan.model import STATUS_TODO, Field, Marker, Step
from pytest_dotasks.run.context import StepContext
from pytest_dotasks.run.tasklog import TaskLog, secret_values
from pytest_dotasks.settings import resolve


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "SPEC.md").write_text("# Plan\n\n## Phase 1: Setup\n\n- [ ] **STEP 1**: Make the greeting\n")
    return root


def make_step(root: Path, fields: Sequence[tuple[str, str]] = (), *, number: int = 1,
              title: str = "Make the greeting", description: str = "Write hello.py that prints hi.") -> Step:
    return Step(
        number=number,
        title=title,
        description=description,
        fields=tuple(Field(k, v, 6 + i) for i, (k, v) in enumerate(fields)),
        phase="Phase 1: Setup",
        path=root / "SPEC.md",
        line=5,
        marker=Marker(STATUS_TODO),
    )


def make_ctx(root: Path, fields: Sequence[tuple[str, str]] = (), *, cli: Mapping[str, Any] | None = None,
             emitted: list[str] | None = None, task_id: str = "task_1_0badc0de", **step_kw: Any) -> StepContext:
    step = make_step(root, fields, **step_kw)
    sink = emitted if emitted is not None else []
    return StepContext(
        step=step,
        task_id=task_id,
        root=root,
        spec_path=root / "SPEC.md",
        log=TaskLog(root / ".task_execution.log", secret_values()),
        settings=resolve(dict(cli or {}), {}, root),
        state_dir=root / ".dotasks",
        emit=sink.append,
    )


def write_agent(root: Path, filename: str, body: str = "You execute plan steps carefully.", **front: Any) -> Path:
    """``.claude/agents/FILENAME`` with the given frontmatter keys (values written as YAML scalars or lists)."""
    lines = ["---"]
    for key, value in front.items():
        if isinstance(value, (list, tuple)):
            lines.append(f"{key}:")
            lines.extend(f"  - {v}" for v in value)
        else:
            lines.append(f"{key}: {value}")
    lines.append("---")
    return agent_file(root, filename, "\n".join(lines) + "\n" + body + "\n")


def agent_file(root: Path, filename: str, text: str) -> Path:
    """``.claude/agents/FILENAME`` holding ``text`` as it is (for files ``write_agent`` cannot write)."""
    path = root / ".claude" / "agents" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_skill(root: Path, folder: str, description: str, body: str, name: str | None = None) -> Path:
    path = root / ".claude" / "skills" / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nname: {name or folder}\ndescription: {description}\n---\n{body}\n")
    return path
