"""Whether a step may start now: done already, blocked by a dependency, waiting for a background one.

Decided at setup time, never at collection (xdist's workers must all collect the same items
while other workers rewrite the checkboxes). Functions of the item (a ``StepItem``), kept out
of ``items.py`` so the item stays small; skips point at the step's line in the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

from pytest_dotasks.errors import PreflightFailed
from pytest_dotasks.plan.marking import read_marker
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_RUNNING, ident_of
from pytest_dotasks.run.context import new_task_id


def skip_here(reason: str) -> NoReturn:
    """Skip pointing at the step's line in the plan (``-rs``), as pytest does for skip markers."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def require_done(item: Any) -> None:
    """--verify re-checks finished steps only."""
    marker = read_marker(item.spec_path, item.step.number) or item.step.marker
    if marker.status != STATUS_DONE:
        skip_here(f"STEP {item.step.ident} is not done: nothing to re-check (--verify)")


def may_start(item: Any, run: Any) -> None:
    """Skip a step that is done or running elsewhere; wait for a background dependency; skip or fail
    one whose dependency did not succeed."""
    marker = read_marker(item.spec_path, item.step.number) or item.step.marker
    if marker.status == STATUS_RUNNING:
        # Never start a second copy of a training run that is still going (even if its state was lost).
        reason = run.background.still_running(item.spec_path, item.step.number, marker.task_id)
        if reason:
            skip_here(reason)
        marker = read_marker(item.spec_path, item.step.number) or marker
    if marker.status == STATUS_DONE and not run.settings.redo:
        tid = f" [task_id: {marker.task_id}]" if marker.task_id else ""
        run.outcomes[(item.spec_path, item.step.number)] = "skipped"
        skip_here(f"STEP {item.step.ident} already done{tid}; --redo runs it again")
    for dep in item.cfg.needs:
        outcome = run.outcomes.get((item.spec_path, dep))
        elsewhere: str | None = None  # a background dependency's task id, from another worker
        if outcome is None:
            outcome, elsewhere = _from_other_worker(item, run, dep)
        if run.settings.dry_run and outcome is not None:
            continue  # a dry run checks every step's pre-flight, whatever its dependencies did
        if outcome in ("failed", "error"):
            blocked(item, run, f"STEP {ident_of(dep)} failed in this run; STEP {item.step.ident} needs it")
        if outcome == "blocked":
            blocked(item, run, f"STEP {ident_of(dep)} did not run; STEP {item.step.ident} needs it")
        if outcome in ("passed", "dry"):
            continue
        if outcome == "skipped":
            dep_marker = read_marker(item.spec_path, dep)
            if dep_marker is None or dep_marker.status != STATUS_DONE:
                blocked(item, run, f"STEP {ident_of(dep)} did not run; STEP {item.step.ident} needs it")
            continue
        dep_marker = read_marker(item.spec_path, dep)
        # A background dependency: started by this run (its memory; SPEC.md may be unmarked under
        # --no-mark), or marked running by an earlier one.
        running = (run.started_bg.get((item.spec_path, dep)) or elsewhere) if outcome == "running" else None
        if running is None and dep_marker is not None and dep_marker.status == STATUS_RUNNING:
            running = dep_marker.task_id or ""
        if running is not None and not run.settings.dry_run:
            with run.live.heartbeat(f"STEP {item.step.ident} waiting for STEP {ident_of(dep)}", run.settings.heartbeat):
                final = run.background.wait(item.spec_path, dep, running or None, item.cfg.timeout)
            if final == STATUS_RUNNING:
                fail_preflight(item, run, f"STEP {ident_of(dep)} is still running in the background after "
                                     f"{item.cfg.timeout:g}s (this step's timeout)",
                                     "raise this step's timeout: or run it later", needs=dep)
            if final != STATUS_DONE:
                blocked(item, run, f"STEP {ident_of(dep)} failed in the background; STEP {item.step.ident} needs it")
            continue
        if dep_marker is not None and dep_marker.status in (STATUS_DONE, STATUS_RUNNING):
            continue
        if run.is_selected(item.spec_path, dep) and run.settings.dry_run:
            continue
        fail_preflight(item, run, f"STEP {item.step.ident} needs STEP {ident_of(dep)}, which is not done and not selected",
                             f"run it first (--steps {ident_of(dep)},{item.step.ident}) or add it to the selection",
                             needs=dep)


def _from_other_worker(item: Any, run: Any, dep: int) -> tuple[str | None, str | None]:
    """Under ``-n N``: (outcome, task id) of a dependency that another worker runs in this run,
    waited for if it has not finished yet (run/board.py); (None, None) when there is no board."""
    board = run.workers.board_for(item.spec_path)
    if board is None:
        return None, None
    found = board.get(dep)
    if found is None and run.is_selected(item.spec_path, dep) and run.workers.comes_before(item.spec_path, dep,
                                                                                    item.step.number):
        from pytest_dotasks.run.board import Stuck

        def check() -> None:  # another need failed meanwhile: blocked now, not after this one
            if not run.settings.dry_run:
                _blocked_by_a_failed_need(item, run, board)

        label = f"STEP {item.step.ident} waiting for STEP {ident_of(dep)} (another worker runs it)"
        try:
            check()
            with run.live.heartbeat(label, run.settings.heartbeat), _timer_paused(item):
                found = board.wait(dep, check=check)
        except Stuck:
            # The run stopped short (-x, --maxfail, too many crashed workers): this step did not
            # fail, it did not run (no marker), as the steps one process never reaches.
            blocked(item, run, f"STEP {item.step.ident} needs STEP {ident_of(dep)}, which no worker of this run "
                               "will run now (the run is stopping); run the plan again for both")
    return found if found is not None else (None, None)


def _blocked_by_a_failed_need(item: Any, run: Any, board: Any) -> None:
    """Skip (blocked) when any need has failed or was blocked, here or on another worker."""
    for dep in item.cfg.needs:
        outcome = run.outcomes.get((item.spec_path, dep))
        if outcome is None:
            found = board.get(dep)
            outcome = found[0] if found is not None else None
        if outcome in ("failed", "error"):
            blocked(item, run, f"STEP {ident_of(dep)} failed in this run; STEP {item.step.ident} needs it")
        if outcome == "blocked":
            blocked(item, run, f"STEP {ident_of(dep)} did not run; STEP {item.step.ident} needs it")


@contextmanager
def _timer_paused(item: Any) -> Iterator[None]:
    """pytest-timeout's limit is the step's own: the time it waits for another worker's step
    (time one process spends running that step, before this one starts) does not count. The
    timer starts again, whole, when the wait ends."""
    settings = None
    if getattr(item, "cancel_timeout", None) is not None:
        try:
            from pytest_timeout import _get_item_settings  # type: ignore[import-untyped, unused-ignore]

            settings = _get_item_settings(item)
        except (ImportError, AttributeError, TypeError, ValueError):  # another pytest-timeout: its timer runs on
            settings = None
    if settings is None or settings.func_only or not settings.timeout:
        yield
        return
    item.config.hook.pytest_timeout_cancel_timer(item=item)
    try:
        yield
    finally:
        item.config.hook.pytest_timeout_set_timer(item=item, settings=settings)


def blocked(item: Any, run: Any, reason: str) -> NoReturn:
    """Skip because a dependency did not succeed; this step's dependents skip in turn."""
    run.outcomes[(item.spec_path, item.step.number)] = "blocked"
    skip_here(reason)


def fail_preflight(item: Any, run: Any, message: str, fix: str, **data: Any) -> NoReturn:
    """A dependency problem found at setup: a pre-flight error with a task id of its own."""
    item.task_id = new_task_id(item.step.ident)
    item._prop("task_id", item.task_id)
    item.failed_phase = "preflight"
    item._prop("failed_phase", "preflight")
    run.log_for(item.spec_path).event(item.task_id, message, step=item.step.log_step, phase="preflight",
                                      event="dependency", **data)
    raise PreflightFailed(f"{message} [{item.task_id}]", fix=fix)

