"""Hooks pytest-dotasks publishes. Implement them in a ``conftest.py``.

Their docstrings are the extension manual (README, "Extending").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_dotasks.plan.model import Step
    from pytest_dotasks.run.checks import Check, CheckResult
    from pytest_dotasks.run.context import StepContext


def pytest_dotasks_preflight_checks(step: Step, config: pytest.Config) -> list[Check] | None:
    """Return extra pre-flight checks for ``step`` (or None / [] for none).

    They run with the built-in ones, in the same parallel pool, each bounded
    by ``--preflight-timeout`` unless the ``Check`` sets its own timeout. A
    failed critical check makes the step an error in setup.

    Example (the seed's "Teacher model accessible")::

        from pytest_dotasks import Check, CheckResult

        def pytest_dotasks_preflight_checks(step, config):
            if step.number in (6, 8):
                return [Check("Teacher model accessible", teacher_ok)]
    """


def pytest_dotasks_post_checks(step: Step, config: pytest.Config) -> list[Check] | None:
    """Return extra post-validation checks for ``step``.

    ``Check(..., severity="advisory")`` reports a failure as a warning and
    lets the step pass; the default, ``"critical"``, fails it.
    """


@pytest.hookspec(firstresult=True)
def pytest_dotasks_run_checks(
    checks: list[Check], phase: str, ctx: StepContext, timeout: float, workers: int
) -> list[CheckResult] | None:
    """Run one phase's checks and return their results in order.

    The plugin's own implementation (``trylast``) runs them concurrently on
    ``workers`` threads; return a list to replace it.
    """


@pytest.hookspec(firstresult=True)
def pytest_dotasks_agent_session(ctx: StepContext) -> Any:
    """Return the agent session that executes a step without ``run:``.

    The object needs ``run(feedback: str | None) -> BodyResult`` (``feedback``
    is the failure of the previous attempt when ``retries:`` asks for
    another) and ``close()``. The plugin's default (``trylast``) opens the
    backend chosen by ``--agent-backend``.
    """


@pytest.hookspec(firstresult=True)
def pytest_dotasks_adjust_prompt(ctx: StepContext, prompt: str) -> str | None:
    """Return a new prompt for an agent step (or None to keep ``prompt``).

    ``prompt`` is the step prompt the agent receives (number, title,
    description, inputs, outputs, validations and the test-first rule); the
    agent's system prompt is its definition file plus skills.
    """


def pytest_dotasks_step_finished(
    step: Step, task_id: str, outcome: str, phase: str, properties: dict[str, Any], config: pytest.Config
) -> None:
    """Called after a step's outcome is known and its marker written.

    ``outcome`` is ``passed``, ``failed``, ``running`` (background) or
    ``skipped``; ``phase`` the phase that decided it. A background step is
    reported twice: ``running`` when it starts, then ``passed``/``failed``
    with phase ``background`` when it ends (possibly from the monitor thread).
    """
