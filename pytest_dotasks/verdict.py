"""From a pytest report to a step's verdict: the marker in SPEC.md, the log, the hook.

``pytest_runtest_makereport`` is where a step's outcome becomes final, so this
is where the marker is written (after each step, not at session end: users
watch the plan fill in, and a kill loses nothing).
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_dotasks.errors import DotasksError, LogError
from pytest_dotasks.items import StepItem, is_timeout
from pytest_dotasks.plan.marking import mark
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING
from pytest_dotasks.run.tasklog import now_iso


def mark_item(item: StepItem, status: str, note: str = "") -> None:
    """Write the marker unless --no-mark / --dry-run; raise MarkError on failure."""
    run = item.run
    task_id = item.task_id
    settings = run.settings
    if task_id is None or settings.no_mark or settings.dry_run or (settings.verify and not settings.verify_mark):
        return
    if settings.verify and status == STATUS_DONE:
        return  # a re-check that passed keeps the marker: its task id still names the run that made the work
    mark(item.spec_path, item.step.number, status, task_id, now_iso(), note)
    run.log_for(item.spec_path).event(
        task_id, f"Marked STEP {item.step.ident} {status}", step=item.step.log_step, phase="mark",
        event="marked", status=status, spec=str(item.spec_path),
    )
    if status == STATUS_DONE and item.step.group is not None:  # Kiro: the last sub-task ticks its group
        from pytest_dotasks.plan.formats.kiro import groups_to_tick
        from pytest_dotasks.plan.model import number_of
        from pytest_dotasks.plan.specmd import parse_file

        for group in groups_to_tick(parse_file(item.spec_path), item.step.ident):
            mark(item.spec_path, number_of(group), STATUS_DONE, task_id, now_iso())


def _status(item: StepItem, report: pytest.TestReport) -> tuple[str | None, str]:
    """(marker status or None, outcome) of a setup or call report."""
    if report.when == "setup" and report.failed:
        return STATUS_FAILED, "failed"
    if report.when == "call":
        if report.passed:
            return (STATUS_RUNNING, "running") if item.background_started else (STATUS_DONE, "passed")
        if report.failed:
            return STATUS_FAILED, "failed"
        return None, "skipped"
    return None, ""


def _settle_unstarted(item: StepItem, report: pytest.TestReport) -> None:
    """Under ``-n N``, a step that ends before it has a task id (a skip mark, an error in its
    set-up) still gets an outcome on the run's board: a step on another worker may wait for it."""
    key = (item.spec_path, item.step.number)
    if key in item.run.outcomes or item.run.workers.board_for(item.spec_path) is None:
        return
    if report.failed:
        item.run.outcomes[key] = "failed"
    elif report.when == "teardown" or report.skipped:
        item.run.outcomes[key] = "skipped"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not isinstance(item, StepItem):
        return report
    if (report.when != "call" and report.failed and call.excinfo is not None
            and (isinstance(call.excinfo.value, DotasksError) or is_timeout(call.excinfo.value))):
        # pytest renders setup errors without repr_failure; ours are a few plain lines.
        report.longrepr = item.repr_failure(call.excinfo)
    if item.task_id is None:
        _settle_unstarted(item, report)
        return report
    status, outcome = _status(item, report)
    if status is None:
        return report
    run = item.run
    run.outcomes[(item.spec_path, item.step.number)] = outcome
    log_failed = call.excinfo is not None and isinstance(call.excinfo.value, LogError)
    try:
        mark_item(item, status)
    except DotasksError as exc:  # MarkError, or LogError from the "marked" event
        if not isinstance(exc, LogError):
            try:
                run.log_for(item.spec_path).event(
                    item.task_id, exc.one_line(), step=item.step.log_step, phase="mark", event="mark_failed")
            except LogError as log_exc:
                exc = log_exc
        log_failed = log_failed or isinstance(exc, LogError)
        report.outcome = "failed"
        report.longrepr = exc.render()
    if log_failed:
        # Nothing more may run unlogged: stop after this step.
        item.session.shouldstop = "the task log cannot be written; see the error above"
    item.config.hook.pytest_dotasks_step_finished(
        step=item.step, task_id=item.task_id, outcome=outcome, phase=item.failed_phase or "main",
        properties=dict(item.user_properties), config=item.config,
    )
    return report
