"""What a step's body and checks are handed while they run, and what a body returns."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pytest_dotasks.plan.model import Step
from pytest_dotasks.run.tasklog import TaskLog
from pytest_dotasks.settings import Settings


@dataclasses.dataclass
class StepContext:
    step: Step
    task_id: str
    root: Path  # folder of SPEC.md: commands run here, file tools are confined here
    spec_path: Path
    log: TaskLog
    settings: Settings
    state_dir: Path  # .dotasks/ beside SPEC.md (transcripts, background status, outputs)
    ini_path: Path | None = None  # the ini file pytest used: it configures the run, so agents may not touch it
    emit: Callable[[str], None] = print  # one live line for the terminal (shown under -v)
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)  # -> JUnit properties
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # hook implementations' scratch
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # added to the step's environment (--record)

    def log_event(self, phase: str, event: str, message: str, **data: Any) -> None:
        self.log.event(self.task_id, message, step=self.step.log_step, phase=phase, event=event, **data)


@dataclasses.dataclass
class BodyResult:
    """Outcome of a step's main phase.

    ``summary`` is the one line a failure report leads with (exit code, the
    agent's last words); ``output`` the tail of what the body printed.
    """

    ok: bool
    summary: str
    output: str = ""
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


class AgentSession(Protocol):
    """The one interface between a step and its agent, whatever the backend.

    ``run(feedback)`` is called once, then again with the failure text for each
    ``retries:`` attempt; ``close()`` ends the session.
    """

    def run(self, feedback: str | None = None) -> BodyResult: ...

    def close(self) -> None: ...


def new_task_id(number: int | str) -> str:
    return f"task_{number}_{uuid.uuid4().hex[:8]}"


def dotasks_env(task_id: str, step: int | str, spec_path: Path, root: Path) -> dict[str, str]:
    """The environment of a step's commands: ours plus what tells them which task they serve."""
    return dict(os.environ, DOTASKS_TASK_ID=task_id, DOTASKS_STEP=str(step), DOTASKS_SPEC=str(spec_path),
                DOTASKS_ROOT=str(root))


def step_env(ctx: StepContext) -> dict[str, str]:
    return {**dotasks_env(ctx.task_id, ctx.step.ident, ctx.spec_path, ctx.root), **ctx.env}
