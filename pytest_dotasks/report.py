"""The closing summary: steps done, failed, running, each step's time, cost and grep line, tokens and cost."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import DotasksError
from pytest_dotasks.plan.model import ident_of, number_of
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
    left_behind: dict[Path, list[int]] = dataclasses.field(default_factory=dict)  # --steps continue: pending before

UNVERIFIED = "unverified: no checks, the agent's word only"
_SYMBOL = {"passed": "✓", "failed": "✗", "error": "✗", "skipped": "-", "running": "⏳"}


def write_summary(tr: Any, run: SummaryInput) -> None:
    tr.write_sep("=", "dotasks summary")
    by_spec: dict[str, list[Record]] = {}
    lines = {spec: header_lines_of(Path(spec)) for spec in {r.spec for r in run.records}}

    def in_file_order(r: Record) -> tuple[str, int, int]:  # not by the internal number: 2A between 1 and 5
        return r.spec, lines[r.spec].get(r.step, 1 << 62), r.step

    for rec in sorted(run.records, key=in_file_order):
        by_spec.setdefault(rec.spec, []).append(rec)
    for spec, recs in by_spec.items():
        _write_plan(tr, run, spec, recs)


def header_lines_of(spec: Path) -> dict[int, int]:
    """Step number -> line of its header in the plan as it is now ({} if it cannot be read)."""
    from pytest_dotasks.plan.specmd import header_lines, read_text

    try:
        return header_lines(read_text(spec))
    except DotasksError:
        return {}


def _already_done(r: Record) -> bool:
    return r.outcome == "skipped" and "already done" in (r.message or "")


def _write_plan(tr: Any, run: SummaryInput, spec: str, recs: list[Record]) -> None:
    for r in recs:
        if r.outcome == "running":
            _settle_view(r)
    already = [r.step for r in recs if _already_done(r)]
    count = {k: sum(1 for r in recs if r.outcome == k) for k in ("passed", "failed", "error", "running", "skipped")}
    parts = [f"{count['passed']} done", f"{count['failed'] + count['error']} failed"]
    if count["running"]:
        parts.append(f"{count['running']} running in the background")
    if already:
        parts.append(f"{len(already)} already done")
    if count["skipped"] - len(already):
        parts.append(f"{count['skipped'] - len(already)} skipped")
    tr.write_line(f"{_shown(spec, run)}: " + ", ".join(parts))
    if already:
        tr.write_line(f"  - already done: STEP {ranges(already)} (--redo runs them again)")
    log = _shown(str(run.log_path(Path(spec))), run)
    for r in recs:
        if r.step not in already:
            _write_step(tr, r, log)
    _write_cost(tr, recs, run)
    unverified = [r.step for r in recs if r.outcome == "passed" and r.properties.get("verified") == "false"]
    if unverified:
        tr.write_line(f"  unverified (no post-validation; --require-checks refuses them): STEP {ranges(unverified)}")
    left = run.left_behind.get(Path(spec), [])
    if left:
        one = len(left) == 1
        tr.write_line(f"  STEP {ranges(left)} {'is' if one else 'are'} not done either: "
                      f"--steps all runs {'it' if one else 'them'}")
    if run.settings.verify:
        tr.write_line("  --verify: post-validation of done steps only"
                      + ("" if run.settings.verify_mark else "; nothing was marked"))
    if run.settings.dry_run:
        tr.write_line("  dry run: no body ran, nothing was marked")
    elif run.settings.no_mark:
        tr.write_line("  --no-mark: SPEC.md was not changed")


def _write_step(tr: Any, r: Record, log: str) -> None:
    ran = bool(r.task_id) and r.outcome != "skipped"
    line = f"  {_SYMBOL.get(r.outcome, '?')} STEP {ident_of(r.step)}: {r.title}"
    if ran:
        line += f"  {r.task_id}  {_duration(r.seconds)}"
        cost = float(r.properties.get("cost_usd", 0.0) or 0.0)
        if cost or "cost_usd" in r.properties:
            line += f"  ${cost:.4f}"
    if r.outcome in ("failed", "error") and r.phase:
        line += f"  (failed in {r.phase})"
    elif r.outcome in ("skipped", "failed") and r.message:  # failed without a phase: its worker crashed
        line += f"  ({r.message})"
    elif r.outcome == "passed" and r.properties.get("verified") == "false":
        line += f"  ({UNVERIFIED})"
    tr.write_line(line)
    if r.outcome == "running":
        p = r.properties
        tr.write_line(f"      pid {p.get('bg_pid')}, output {p.get('bg_output')}")
        if p.get("bg_monitor"):
            from pytest_dotasks.run.background import tail_file

            for ln in tail_file(Path(r.spec).parent / str(p["bg_monitor"]), 2).splitlines():
                tr.write_line(f"      {p['bg_monitor']}: {ln}")
    if ran:
        tr.write_line(f"      grep {r.task_id} {log}")


def _write_cost(tr: Any, recs: list[Record], run: SummaryInput) -> None:
    def total(key: str) -> int:
        return sum(int(r.properties.get(key, 0) or 0) for r in recs)

    tokens_in, tokens_out = total("input_tokens"), total("output_tokens")
    cache_read, cache_write = total("cache_read_tokens"), total("cache_write_tokens")
    if not (tokens_in or tokens_out or cache_read or cache_write):
        return
    cost = sum(float(r.properties.get("cost_usd", 0.0) or 0.0) for r in recs)
    tr.write_line(f"  agent tokens: {tokens_in} in + {cache_read} cache read + {cache_write} cache write, "
                  f"{tokens_out} out; estimated cost ${cost:.4f}")
    names = [n for n in ("max_run_cost", "max_cost") if run.settings.values.get(n) is not None]
    if names:  # the run's spend (every plan, every worker) against the spending limits
        from pytest_dotasks.agent.spending import money

        limits = [f"--{n.replace('_', '-')} {money(run.settings.values[n])}" + (" per step" if n == "max_cost" else "")
                  for n in names]
        spent = sum(float(r.properties.get("cost_usd", 0.0) or 0.0) for r in run.records)
        tr.write_line(f"  spent ${spent:.4f} of {', '.join(limits)}")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _shown(path: str, run: SummaryInput) -> str:
    rel = os.path.relpath(path, run.invocation_dir)
    return path if rel.startswith("..") else rel


_IDS = number_of("0")  # past every plain step number


def ranges(numbers: Iterable[int]) -> str:
    """Step numbers in the order given (plan order) -> "1-3, 5, 2A": consecutive plain numbers make
    a range; ids that are no plain number (2A, T001, 1.1) are shown one by one, as the plan writes them."""
    out: list[str] = []
    run: list[int] = []  # the plain numbers of the range being built

    def close() -> None:
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run.clear()

    for n in dict.fromkeys(numbers):
        if n < _IDS and run and n == run[-1] + 1:
            run.append(n)
            continue
        close()
        if n < _IDS:
            run.append(n)
        else:
            out.append(ident_of(n))
    close()
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
