"""Checks and the parallel pool that runs one phase of them.

A check is a named callable. The pool runs at most ``workers`` at a time,
each bounded by its own timeout counted from when it starts. A check that
overruns is reported as timed out and abandoned: its thread is a daemon (it
can never keep the interpreter alive) and shell checks kill their process
group themselves when their deadline passes.

A check function receives a ``CheckContext`` and returns a ``CheckResult``,
``(ok, detail)``, a bool, or ``None`` (passed); raising (an ``assert``
included) is a failure reported in one line.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CRITICAL = "critical"
ADVISORY = "advisory"


@dataclasses.dataclass
class CheckContext:
    """What a check function receives."""

    root: Path
    timeout: float  # seconds this check may take
    deadline: float  # time.monotonic() value it must finish by
    env: dict[str, str] | None = None  # environment for subprocesses

    def remaining(self) -> float:
        return max(0.05, self.deadline - time.monotonic())

    @property
    def task_id(self) -> str | None:
        """The task id of the step execution these checks belong to (``DOTASKS_TASK_ID``)."""
        return (self.env or {}).get("DOTASKS_TASK_ID")


@dataclasses.dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    timed_out: bool = False
    severity: str = CRITICAL
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        return not self.ok and self.severity == CRITICAL


# A check function returns a CheckResult, or (ok, detail), or raises.
CheckFn = Callable[[CheckContext], "CheckResult | tuple[bool, str]"]


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    fn: CheckFn
    severity: str = CRITICAL
    timeout: float | None = None  # None: the phase's timeout


def _where(exc: BaseException) -> str:
    """``file.py:12`` of the innermost frame: where a check's own code gave up."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({os.path.basename(last.filename)}:{last.lineno})"


def _exception_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ("assertion failed" if isinstance(exc, AssertionError) else "")
    return f"{type(exc).__name__}: {first}{_where(exc)}" if first else f"{type(exc).__name__}{_where(exc)}"


def _as_result(check: Check, res: Any) -> CheckResult:
    if isinstance(res, CheckResult):
        return res
    if res is None:  # a check that asserts and returns nothing passed
        return CheckResult(check.name, True)
    if isinstance(res, bool):
        return CheckResult(check.name, res)
    if isinstance(res, tuple) and len(res) == 2:
        ok, detail = res
        return CheckResult(check.name, bool(ok), "" if detail is None else str(detail))
    return CheckResult(check.name, False, f"the check returned {type(res).__name__} {res!r:.60}; "
                                          "return a CheckResult, (ok, detail), a bool or None")


def _call(check: Check, ctx: CheckContext) -> CheckResult:
    start = time.monotonic()
    try:
        res = _as_result(check, check.fn(ctx))
    except BaseException as exc:  # noqa: BLE001 - a check's own bug is its failure, reported in one line
        res = CheckResult(check.name, False, _exception_line(exc))
    res.name = res.name or check.name
    res.severity = check.severity
    res.seconds = time.monotonic() - start
    return res


def _grace(limit: float) -> float:
    # A shell check kills its own group at the deadline and reports its
    # output, which says more than our "timed out": give it a moment (a
    # tenth of the limit, 0.2 s to 1 s) before the pool gives up on it.
    return min(1.0, max(0.2, limit * 0.1))


def run_checks(
    checks: Sequence[Check],
    *,
    root: Path,
    timeout: float,
    workers: int = 3,
    env: dict[str, str] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run ``checks`` concurrently; results in the order given.

    ``on_result`` is called (from a worker thread, under the pool's lock) as
    each result arrives, timed-out ones included; if it raises, the pool
    still finishes and the first such exception is raised here.
    """
    n = len(checks)
    if n == 0:
        return []
    workers = max(1, int(workers))
    results: list[CheckResult | None] = [None] * n
    started: dict[int, float] = {}
    cond = threading.Condition()
    running = 0
    next_index = 0
    callback_error: list[BaseException] = []

    def worker(i: int, ctx: CheckContext) -> None:
        nonlocal running
        res = _call(checks[i], ctx)
        with cond:
            if results[i] is None:  # not already declared timed out
                results[i] = res
                running -= 1
                if on_result is not None:
                    try:
                        on_result(res)
                    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller's thread
                        callback_error.append(exc)
            cond.notify_all()

    try:
        with cond:
            while True:
                while running < workers and next_index < n:
                    i = next_index
                    next_index += 1
                    limit = checks[i].timeout or timeout
                    now = time.monotonic()
                    started[i] = now
                    ctx = CheckContext(root=root, timeout=limit, deadline=now + limit, env=env)
                    running += 1
                    threading.Thread(target=worker, args=(i, ctx), daemon=True,
                                     name=f"dotasks-check-{checks[i].name}").start()
                if all(r is not None for r in results):
                    break
                now = time.monotonic()
                wake = None
                for i, t0 in started.items():
                    if results[i] is not None:
                        continue
                    limit = checks[i].timeout or timeout
                    end = t0 + limit + _grace(limit)
                    if now >= end:
                        res = CheckResult(checks[i].name, False, f"timed out after {limit:g}s (abandoned)",
                                          seconds=now - t0, timed_out=True, severity=checks[i].severity)
                        results[i] = res
                        running -= 1
                        if on_result is not None:
                            on_result(res)
                    else:
                        wake = end if wake is None else min(wake, end)
                if all(r is not None for r in results):
                    break
                if running < workers and next_index < n:
                    continue
                cond.wait(timeout=None if wake is None else max(0.01, wake - time.monotonic()))
    except BaseException:
        # Ctrl-C or pytest-timeout while checks run: their commands die with us.
        from pytest_dotasks.run.process import kill_live

        kill_live("dotasks-check-")
        raise
    if callback_error:
        raise callback_error[0]
    return [r for r in results if r is not None]
