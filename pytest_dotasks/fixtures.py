"""Fixtures a step's own fixtures and custom checks can request."""

from __future__ import annotations

from typing import Any

import pytest


def _step_item(request: pytest.FixtureRequest) -> Any:
    from pytest_dotasks.items import StepItem

    node = request.node
    if not isinstance(node, StepItem):
        raise pytest.UsageError(f"{request.fixturename} is only available to pytest-dotasks steps, not {node.nodeid}")
    return node


@pytest.fixture
def dotasks_step(request: pytest.FixtureRequest) -> Any:
    """The ``Step`` being executed (number, title, description, fields)."""
    return _step_item(request).step


@pytest.fixture
def dotasks_task_id(request: pytest.FixtureRequest) -> str:
    """This execution's task id (``task_8_3fa2b8c1``)."""
    return str(_step_item(request).task_id)


@pytest.fixture
def dotasks_log(request: pytest.FixtureRequest) -> Any:
    """A function ``log(message, **data)`` appending to the task log under this task id."""
    item = _step_item(request)
    log = item.run.log_for(item.spec_path)

    def write(message: str, phase: str = "preflight", event: str = "custom", **data: Any) -> None:
        log.event(item.task_id, message, step=item.step.log_step, phase=phase, event=event, **data)

    return write
