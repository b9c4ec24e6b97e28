"""The closing summary: steps done, failed, running, tokens and cost, the grep line."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_dotasks.settings import Settings


@dataclasses.dataclass
class Record:
    """What the closing summary says of one step (built from reports)."""

    spec: str
    step: int
    title: str
    outcome: str
    task_id: str | None = None
    phase: str | None = None
    message: str | None = None
    seconds: float = 0.0
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SummaryInput:
    """What the summary reads of the run."""

    records: list[Record]
    settings: Settings
    log_path: Callable[[Path], Path]  # plan -> its task log
    invocation_dir: Path  # where pytest was run: paths are shown relative to it

_SYMBOL = {"passed": "✓", "failed": "✗", "error": "✗", "skipped": "-", "running": "⏳"}


def write_summary(tr: Any, run: SummaryInput) -> None:
    tr.write_sep("=", "dotasks summary")
    by_spec: dict[str, list[Any]] = {}
    for rec in sorted(run.records, key=lambda r: (r.spec, r.step)):
        by_spec.setdefault(rec.spec, []).append(rec)
    for spec, recs in by_spec.items():
        for r in recs:
            if r.outcome == "running":
                _settle_view(r)
        counts = {k: sum(1 for r in recs if r.outcome == k) for k in ("passed", "failed", "error", "running", "skipped")}
        done = counts["passed"]
        failed = counts["failed"] + counts["error"]
        parts = [f"{done} done", f"{failed} failed"]
        if counts["running"]:
            parts.append(f"{counts['running']} running in the background")
        if counts["skipped"]:
            parts.append(f"{counts['skipped']} skipped")
        tr.write_line(f"{_shown(spec, run)}: " + ", ".join(parts))
        tokens_in = tokens_out = 0
        cost = 0.0
        already = [r.step for r in recs if r.outcome == "skipped" and (r.message or "").find("already done") > 0]
        if already:
            tr.write_line(f"  - already done, skipped: {_ranges(already)} (--redo runs them again)")
        for r in recs:
            if r.step in already:
                continue
            sym = _SYMBOL.get(r.outcome, "?")
            tid = f"  {r.task_id}" if r.task_id and r.outcome != "skipped" else ""
            line = f"  {sym} STEP {r.step}: {r.title}{tid}"
            if r.outcome in ("failed", "error") and r.phase:
                line += f"  (failed in {r.phase})"
            elif r.outcome == "skipped" and r.message:
                line += f"  ({r.message})"
            tr.write_line(line)
            if r.outcome == "running":
                p = r.properties
                tr.write_line(f"      pid {p.get('bg_pid')}, output {p.get('bg_output')}")
                if p.get("bg_monitor"):
                    from pytest_dotasks.run.background import tail_file

                    last = tail_file(Path(r.spec).parent / str(p["bg_monitor"]), 2)
                    for ln in last.splitlines():
                        tr.write_line(f"      {p['bg_monitor']}: {ln}")
            p = r.properties
            tokens_in += int(p.get("input_tokens", 0) or 0)
            tokens_out += int(p.get("output_tokens", 0) or 0)
            cost += float(p.get("cost_usd", 0.0) or 0.0)
        if tokens_in or tokens_out:
            tr.write_line(f"  agent tokens: {tokens_in} in, {tokens_out} out; estimated cost ${cost:.4f}")
            names = [n for n in ("max_run_cost", "max_cost") if run.settings.values.get(n) is not None]
            if names:  # the run's spend (every plan, every worker) against the spending limits
                from pytest_dotasks.agent.spending import money

                limits = [f"--{n.replace('_', '-')} {money(run.settings.values[n])}"
                          + (" per step" if n == "max_cost" else "") for n in names]
                spent = sum(float(r.properties.get("cost_usd", 0.0) or 0.0) for r in run.records)
                tr.write_line(f"  spent ${spent:.4f} of {', '.join(limits)}")
        log_path = run.log_path(Path(spec))
        shown = [r for r in recs if r.task_id and r.outcome in ("failed", "error")] or \
                [r for r in recs if r.task_id and r.outcome != "skipped"]
        if shown:
            tr.write_line(f"  log: grep {shown[0].task_id} {_shown(str(log_path), run)}")
        if run.settings.dry_run:
            tr.write_line("  dry run: no body ran, nothing was marked")
        elif run.settings.no_mark:
            tr.write_line("  --no-mark: SPEC.md was not changed")


def _shown(path: str, run: SummaryInput) -> str:
    rel = os.path.relpath(path, run.invocation_dir)
    return path if rel.startswith("..") else rel


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    out: list[str] = []
    nums = sorted(numbers)
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if n is not None:
            start = prev = n
    return ", ".join(out)


def _settle_view(r: Any) -> None:
    """A background step that ended during the run shows its final state."""
    from pytest_dotasks.plan.marking import read_marker
    from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED

    m = read_marker(Path(r.spec), r.step)
    if m is not None and m.task_id == r.task_id:
        if m.status == STATUS_DONE:
            r.outcome = "passed"
        elif m.status == STATUS_FAILED:
            r.outcome, r.phase = "failed", "background"
