"""The built-in checks a step's fields ask for (the seed's check_dependencies,
validate_inputs, test_environment, verify_outputs, test_functionality and
collect_metrics)."""

from __future__ import annotations

import glob as _glob
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checks import ADVISORY, CRITICAL, Check, CheckContext, CheckResult
from .fields import Command, OutputSpec, StepConfig, Threshold
from .process import run_shell, tail


def _matches(root: Path, pattern: str) -> list[Path]:
    base = pattern if os.path.isabs(pattern) else str(root / pattern)
    return sorted(Path(p) for p in _glob.glob(base, recursive=True))


# ---------------------------------------------------------------- pre-flight


def requires_check(module: str) -> Check:
    def fn(ctx: CheckContext) -> CheckResult:
        # A fresh interpreter: a broken install (ImportError inside the
        # package) is caught, and nothing heavy is imported into pytest.
        try:
            proc = subprocess.run(
                [sys.executable, "-c", f"import {module}"], cwd=ctx.root, capture_output=True,
                text=True, timeout=ctx.remaining(), env=ctx.env, start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return CheckResult(f"import {module}", False, f"import {module} did not finish within {ctx.timeout:g}s")
        if proc.returncode == 0:
            return CheckResult(f"import {module}", True, f"{module} imports")
        err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return CheckResult(f"import {module}", False, f"cannot import {module}: {err}")

    return Check(f"import {module}", fn)


def env_check(name: str, environ: Mapping[str, str] | None = None) -> Check:
    def fn(ctx: CheckContext) -> CheckResult:
        env = ctx.env if ctx.env is not None else (environ if environ is not None else os.environ)
        if env.get(name, "").strip():
            return CheckResult(f"${name}", True, f"{name} is set")  # never the value
        return CheckResult(f"${name}", False, f"{name} is not set; export {name}=... before running")

    return Check(f"${name}", fn)


def input_check(pattern: str, producer: int | None = None, planned: bool = False) -> Check:
    """``pattern`` must match an existing file or folder.

    ``producer``: the dependency step whose output this is. ``planned``: the
    producer is selected in this run but not executed (``--dry-run``), so a
    missing file is expected and passes with a note.
    """
    label = f"{pattern} exists"

    def fn(ctx: CheckContext) -> CheckResult:
        found = _matches(ctx.root, pattern)
        if found:
            return CheckResult(label, True, f"{len(found)} match(es)" if len(found) > 1 else str(found[0].name))
        if planned and producer is not None:
            return CheckResult(label, True, f"will be made by STEP {producer}")
        who = f" (an output of STEP {producer})" if producer is not None else ""
        return CheckResult(label, False, f"{pattern}{who} not found in {ctx.root}")

    return Check(label, fn)


def shell_check(cmd: Command, phase: str) -> Check:
    def fn(ctx: CheckContext) -> CheckResult:
        res = run_shell(cmd.command, ctx.root, timeout=ctx.remaining(), env=ctx.env)
        if res.timed_out:
            return CheckResult(cmd.command, False, f"timed out after {ctx.timeout:g}s\n{tail(res.output)}".rstrip(),
                               timed_out=True)
        if res.ok:
            return CheckResult(cmd.command, True, tail(res.output, 1))
        return CheckResult(cmd.command, False, f"exit {res.returncode}\n{tail(res.output)}".rstrip())

    return Check(cmd.command, fn, severity=cmd.severity)


def probe_check(name: str, severity: str = CRITICAL) -> Check:
    def fn(ctx: CheckContext) -> CheckResult:
        from .probes import NAMED_PROBES

        result = NAMED_PROBES[name](ctx.remaining(), ctx.env if ctx.env is not None else os.environ)
        return CheckResult(f"{name} reachable", bool(result.ok), result.reason)

    return Check(f"{name} reachable", fn, severity=severity)


def named_probe_names() -> frozenset[str]:
    try:
        from .probes import NAMED_PROBES
    except ImportError:
        return frozenset()
    return frozenset(NAMED_PROBES)


# ---------------------------------------------------------------- post


def _count_records(path: Path) -> tuple[int, str | None]:
    """Records in a JSON or JSON Lines file, or an error naming the bad line."""
    if path.suffix == ".jsonl" or path.suffix == ".ndjson":
        n = 0
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as exc:
                    return n, f"{path.name}:{lineno}: invalid JSON ({exc.msg})"
                n += 1
        return n, None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        return 0, f"{path.name}:{exc.lineno}: invalid JSON ({exc.msg})"
    return (len(data) if isinstance(data, list) else 1), None


def output_check(out: OutputSpec) -> Check:
    label = f"{out.pattern} created" + (f" (>= {out.min_records} records)" if out.min_records else "")

    def fn(ctx: CheckContext) -> CheckResult:
        found = _matches(ctx.root, out.pattern)
        if not found:
            return CheckResult(label, False, f"{out.pattern} was not created")
        total = 0
        for p in found:
            if p.is_file() and p.stat().st_size == 0:
                return CheckResult(label, False, f"{p.relative_to(ctx.root) if p.is_relative_to(ctx.root) else p} is empty")
            if p.is_dir() and not any(p.iterdir()):
                return CheckResult(label, False, f"{p.name}/ is empty")
            if p.is_file() and p.suffix in (".json", ".jsonl", ".ndjson"):
                n, err = _count_records(p)
                if err:
                    return CheckResult(label, False, err)
                total += n
        if out.min_records is not None and total < out.min_records:
            return CheckResult(label, False, f"{total} records, fewer than the {out.min_records} required",
                               data={"records": total})
        detail = f"{total} records" if total else ", ".join(p.name for p in found[:3])
        return CheckResult(label, True, detail, data={"records": total} if total else {})

    return Check(label, fn, severity=out.severity)


def _flatten(data: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(data, bool):
        pass
    elif isinstance(data, (int, float)):
        out[prefix.rstrip(".")] = float(data)
    return out


class MetricsCollector:
    """Reads every ``metrics:`` source once per step, shared by its threshold checks."""

    def __init__(self, sources: tuple[Command, ...]) -> None:
        self.sources = sources
        self.values: dict[str, float] = {}
        self.error: str | None = None
        self._done = False
        self._lock = threading.Lock()

    def collect(self, ctx: CheckContext) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            for src in self.sources:
                text = src.command
                path = ctx.root / text
                try:
                    if " " not in text.strip() and (path.suffix == ".json" or path.is_file()):
                        if not path.exists():
                            self.error = f"metrics file {text} not found"
                            return
                        data = json.loads(path.read_text(encoding="utf-8"))
                    else:
                        res = run_shell(text, ctx.root, timeout=ctx.remaining(), env=ctx.env)
                        if not res.ok:
                            self.error = f"metrics command failed (exit {res.returncode}): {tail(res.output, 3)}"
                            return
                        data = json.loads(res.output.strip().splitlines()[-1] if res.output.strip() else "{}")
                except (json.JSONDecodeError, IndexError) as exc:
                    self.error = f"metrics from {text} are not JSON: {exc}"
                    return
                self.values.update(_flatten(data))


def metrics_checks(cfg: StepConfig) -> tuple[list[Check], MetricsCollector]:
    collector = MetricsCollector(cfg.metric_sources)
    checks: list[Check] = []

    def threshold_check(t: Threshold) -> Check:
        def fn(ctx: CheckContext) -> CheckResult:
            collector.collect(ctx)
            if collector.error:
                return CheckResult(str(t), False, collector.error)
            if t.name not in collector.values:
                known = ", ".join(sorted(collector.values)) or "none"
                return CheckResult(str(t), False, f"no metric named {t.name} (found: {known})")
            actual = collector.values[t.name]
            ok = t.holds(actual)
            return CheckResult(str(t), ok, f"{t.name} = {actual:g}" + ("" if ok else f", needs {t.op} {t.value:g}"),
                               data={t.name: actual})

        return Check(str(t), fn, severity=t.severity)

    for t in cfg.thresholds:
        checks.append(threshold_check(t))
    if cfg.metric_sources and not cfg.thresholds:
        sev = ADVISORY if all(s.severity == ADVISORY for s in cfg.metric_sources) else CRITICAL

        def collect_only(ctx: CheckContext) -> CheckResult:
            collector.collect(ctx)
            if collector.error:
                return CheckResult("metrics", False, collector.error)
            shown = ", ".join(f"{k}={v:g}" for k, v in list(collector.values.items())[:6])
            return CheckResult("metrics", True, shown or "no numbers")

        checks.append(Check("metrics", collect_only, severity=sev))
    return checks, collector


def describe_command(cmd: str) -> str:
    return cmd if len(cmd) <= 60 else cmd[:57] + "..."


def quote(s: str) -> str:
    return shlex.quote(s)
