"""A plan's status at a glance: each step's state, and the background steps still running.

Used by ``pytest --spec SPEC.md --co`` (each item's line) and by
``pytest-dotasks status [SPEC.md]``, which needs no pytest session.
"""

from __future__ import annotations

from pathlib import Path

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, Marker, Step

_LABEL = {STATUS_DONE: "✓ done", STATUS_FAILED: "✗ failed", STATUS_RUNNING: "⏳ running"}


def state_label(marker: Marker) -> str:
    """``✓ done task_8_3fa2b8c1 2026-11-24T10:30:12``, ``pending``, ..."""
    label = _LABEL.get(marker.status, "pending")
    extra = " ".join(x for x in (marker.task_id, marker.timestamp) if x)
    return f"{label} {extra}".rstrip()


def status_lines(spec_path: Path) -> list[str]:
    """The table ``pytest-dotasks status`` prints.

    Raises DotasksError for a plan that does not parse, and SpecError for a file
    with no step at all (never a silent "0 steps"): what a step line looks like.
    """
    from pytest_dotasks.plan.specmd import parse_file
    from pytest_dotasks.run import background as bg

    spec = parse_file(spec_path)
    if not spec.steps:
        raise _no_steps(spec_path)
    width = max(len(s.ident) for s in spec.steps)
    lines = [f"{spec_path}: {_counts(spec.steps)}"]
    for step in spec.steps:
        lines.append(f"  STEP {step.ident:<{width}}  {state_label(step.marker):<48}  {step.title}")
    running = []
    for task in bg.tasks_for(spec_path):
        state, _code = bg.status(task)
        if state == bg.RUNNING:
            running.append(f"  STEP {_ident(spec.steps, task.step)}: pid {task.pid}, output {task.output}"
                           + (f", monitor {task.monitor}" if task.monitor else ""))
    if running:
        lines.append("running in the background:")
        lines.extend(running)
    return lines


def _counts(steps: tuple[Step, ...]) -> str:
    n = {k: sum(1 for s in steps if s.marker.status == k) for k in (STATUS_DONE, STATUS_FAILED, STATUS_RUNNING)}
    pending = len(steps) - sum(n.values())
    return (f"{len(steps)} steps: {n[STATUS_DONE]} done, {n[STATUS_FAILED]} failed, "
            f"{n[STATUS_RUNNING]} running, {pending} pending")


def _ident(steps: tuple[Step, ...], number: object) -> object:
    """A background task's step as users name it (its id), from the number it was saved under."""
    return next((s.ident for s in steps if s.number == number), number)


def _no_steps(spec_path: Path) -> SpecError:
    """A file with no step at all: the same line a pytest run gives (diagnose.no_step_at_all)."""
    from pytest_dotasks.plan.formats.detect import detect
    from pytest_dotasks.plan.formats.diagnose import no_step_at_all
    from pytest_dotasks.plan.specmd import read_text

    text = read_text(spec_path)
    return no_step_at_all(text, spec_path, detect(text, spec_path))
