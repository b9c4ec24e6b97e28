"""Checks and the parallel pool that runs one phase of them.

A check is a named callable. The pool runs at most ``workers`` at a time,
each bounded by its own timeout counted from when it starts. A check that
overruns is reported as timed out and abandoned: its thread is a daemon (it
can never keep the interpreter alive) and shell checks kill their process
group themselves when their deadline passes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
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


def _call(check: Check, ctx: CheckContext) -> CheckResult:
    start = time.monotonic()
    try:
        res = check.fn(ctx)
    except Exception as exc:  # a check's own bug is its failure, reported in one line
        res = CheckResult(check.name, False, f"{type(exc).__name__}: {exc}")
    if not isinstance(res, CheckResult):
        ok, detail = res
        res = CheckResult(check.name, bool(ok), detail)
    res.name = res.name or check.name
    res.severity = check.severity
    res.seconds = time.monotonic() - start
    return res


def run_checks(
    checks: Sequence[Check],
    *,
    root: Path,
    timeout: float,
    workers: int = 3,
    env: dict[str, str] | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run ``checks`` concurrently; results in the order given."""
    n = len(checks)
    results: list[CheckResult | None] = [None] * n
    started: dict[int, float] = {}
    cond = threading.Condition()
    running = 0
    next_index = 0

    def worker(i: int, ctx: CheckContext) -> None:
        nonlocal running
        res = _call(checks[i], ctx)
        with cond:
            if results[i] is None:  # not already declared timed out
                results[i] = res
                running -= 1
                if on_result is not None:
                    on_result(res)
            cond.notify_all()

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
                # Grace of a second: a shell check kills its own group at the
                # deadline and reports its output, which says more than ours.
                end = t0 + limit + 1.0
                if now >= end:
                    res = CheckResult(checks[i].name, False, f"timed out after {limit:g}s",
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
    return [r for r in results if r is not None]
