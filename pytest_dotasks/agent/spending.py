"""Spending limits: ``--max-cost USD`` per step, ``--max-run-cost USD`` per run.

Spend is the cost of the replies received so far, estimated from the token
usage the API reports with each reply and the price table (``pricing``; the
claude-code backend's own cost figure when the CLI reports one).

What "would go over" means, exactly: before each request to the model (the
first one of a step included), the spend so far is compared with each limit;
when it has *reached* a limit (spend >= limit) the request is not sent, the
step stops and fails with a message naming the limit. A request is never
refused for what it might cost, since that is known only once it returns:
so the request that crosses a limit is the last one, and the final spend may
exceed the limit by up to one request's cost (for the run limit, by up to one
request per step running at that moment, in each xdist worker).

- Per step (``--max-cost``): every attempt of the step (``retries:``) and its
  ``Task`` sub-agents together.
- Per run (``--max-run-cost``): every agent step of this pytest run, in every
  xdist worker. The processes share a ledger, ``.dotasks/spend/RUN_ID.jsonl``
  under the rootdir: one JSON line ``{"task_id", "cost_usd"}`` appended per
  reply with a single ``O_APPEND`` write (atomic for lines this short on a
  local file system, so no lock is needed), summed when read. ``RUN_ID`` is
  what the pytest face puts in ``ctx.extra["run_id"]``; without it, xdist's
  ``PYTEST_XDIST_TESTRUNUID`` (shared by a run's workers), else one id per
  process. Ledgers older than a week are removed when a new one is started.

The ``command`` backend reports no usage: the limits do not apply to it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from pytest_dotasks.agent.session import one_line
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import StepContext

LEDGER_DIR = Path(".dotasks") / "spend"
LEDGER_MAX_AGE = 7 * 24 * 3600.0
_PROCESS_RUN_ID = uuid.uuid4().hex


def run_id(ctx: StepContext) -> str:
    """The id shared by every process of this run (see the module doc)."""
    given = ctx.extra.get("run_id")
    if given:
        return str(given)
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or _PROCESS_RUN_ID


class RunLedger:
    """The run's spend, shared by its processes: append-only JSON lines, summed on read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_run(cls, rootdir: Path, run: str) -> RunLedger:
        return cls(rootdir / LEDGER_DIR / f"{run}.jsonl")

    def add(self, task_id: str, cost_usd: float) -> None:
        if not cost_usd:
            return
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._prune()
        line = json.dumps({"task_id": task_id, "cost_usd": round(cost_usd, 8)}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def total(self) -> float:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0.0
        spent = 0.0
        for line in text.splitlines():
            try:
                spent += float(json.loads(line)["cost_usd"])
            except (ValueError, KeyError, TypeError):
                continue  # a line being written right now
        return spent

    def _prune(self) -> None:
        cutoff = time.time() - LEDGER_MAX_AGE
        for old in self.path.parent.glob("*.jsonl"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass


def money(usd: float) -> str:
    """``$5.00``, ``$1.50``, ``$0.012``: cents, or the digits a smaller limit needs."""
    return f"${usd:.2f}" if abs(usd - round(usd, 2)) < 1e-9 else f"${usd:.4g}"


def _limit_name(ctx: StepContext, name: str) -> str:
    """How the user set the limit: ``--max-cost`` or the ini's ``dotasks_max_cost``."""
    source = str(ctx.settings.sources.get(name, ""))
    return f"dotasks_{name}" if source.startswith("ini") else "--" + name.replace("_", "-")


class SpendLimits:
    """The step's and the run's limits, as one session checks them."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        values = ctx.settings.values
        self.max_cost: float | None = values.get("max_cost")
        self.max_run_cost: float | None = values.get("max_run_cost")
        self.ledger = (RunLedger.for_run(ctx.settings.rootdir, run_id(ctx))
                       if self.max_run_cost is not None else None)

    @property
    def active(self) -> bool:
        return self.max_cost is not None or self.max_run_cost is not None

    def record(self, cost_usd: float) -> None:
        """A reply's cost, counted against the run's limit."""
        if self.ledger is not None:
            self.ledger.add(self.ctx.task_id, cost_usd)

    def reached(self, step_spent: float) -> str | None:
        """Why no further request may be sent (a limit is reached), or None."""
        if self.max_cost is not None and step_spent >= self.max_cost:
            return (f"the step has spent ${step_spent:.4f}, reaching its limit "
                    f"{_limit_name(self.ctx, 'max_cost')} {money(self.max_cost)}")
        if self.ledger is not None and self.max_run_cost is not None:
            run_spent = self.ledger.total()
            if run_spent >= self.max_run_cost:
                return (f"the run has spent ${run_spent:.4f} (all steps and workers), reaching its limit "
                        f"{_limit_name(self.ctx, 'max_run_cost')} {money(self.max_run_cost)}")
        return None

    def remaining(self, step_spent: float) -> float | None:
        """What may still be spent before a limit is reached (None: no limit)."""
        left = []
        if self.max_cost is not None:
            left.append(self.max_cost - step_spent)
        if self.ledger is not None and self.max_run_cost is not None:
            left.append(self.max_run_cost - self.ledger.total())
        return min(left) if left else None

    def failure(self, reason: str, last_words: str = "", detail: str | None = None) -> BodyFailed:
        """The step's failure once a limit stopped it (``last_words``: the agent's last text, if any)."""
        ctx = self.ctx
        which = "--max-run-cost" if "run has spent" in reason else "--max-cost"
        words = f"; last words: {one_line(last_words)}" if last_words.strip() else ""
        return BodyFailed(f"STEP {ctx.step.ident}: stopped before its next request to the model: {reason}{words} "
                          f"[{ctx.task_id}]", detail=detail,
                          fix=f"raise {which} (or dotasks_{which[2:].replace('-', '_')} in the ini), "
                              "or choose a cheaper model with --agent-model")
