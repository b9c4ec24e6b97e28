"""The built-in checks a step's fields ask for (the seed's check_dependencies,
validate_inputs, test_environment, verify_outputs, test_functionality and
collect_metrics)."""

from __future__ import annotations

import glob as _glob
import json
import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_dotasks.plan.fields import Command, OutputSpec, StepConfig, Threshold
from pytest_dotasks.plan.model import ident_of
from pytest_dotasks.run.checks import ADVISORY, CRITICAL, Check, CheckContext, CheckResult
from pytest_dotasks.run.process import run_shell, tail


def _matches(root: Path, pattern: str) -> list[Path]:
    base = pattern if os.path.isabs(pattern) else str(root / pattern)
    return sorted(Path(p) for p in _glob.glob(base, recursive=True))


# ---------------------------------------------------------------- pre-flight


_NOT_FOUND = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_IMPORT_SCRIPT = "import {m} as _m; print('\\n__dotasks_version__=' + str(getattr(_m, '__version__', '') or ''))"
_VERSION = re.compile(r"^__dotasks_version__=(.*)$", re.MULTILINE)


def requires_check(module: str, severity: str = CRITICAL) -> Check:
    """``module`` imports in a fresh interpreter (the one running pytest).

    A fresh interpreter catches a broken install (an error raised inside the
    package, a missing dependency of it), not just a missing one, and keeps
    heavy SDKs out of pytest's own process. It runs in the project root, as
    a ``run:`` command would, with the step's environment (``PYTHONPATH``
    included); a hanging import is killed with its process group.
    """
    label = f"import {module}"

    def fn(ctx: CheckContext) -> CheckResult:
        cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(_IMPORT_SCRIPT.format(m=module))}"
        res = run_shell(cmd, ctx.root, timeout=ctx.remaining(), env=ctx.env)
        if res.timed_out:
            return CheckResult(label, False, f"import {module} did not finish within {ctx.timeout:g}s",
                               timed_out=True)
        if res.ok:
            found = _VERSION.search(res.output)  # a package may print a banner on import
            version = found.group(1).strip() if found else ""
            return CheckResult(label, True, f"{module} {version}".rstrip())
        lines = res.output.strip().splitlines() or [f"exit {res.returncode}"]
        last = lines[-1]
        missing = _NOT_FOUND.search(last)
        if missing and (module == missing.group(1) or module.startswith(missing.group(1) + ".")):
            top = missing.group(1).split(".")[0]
            return CheckResult(label, False, f"cannot import {module}: {module} is not installed "
                                             f"(pip install {top}, or fix PYTHONPATH)")
        # Installed but broken: say so, with the end of the traceback.
        detail = f"cannot import {module}: installed but its import fails: {last}"
        context = [ln for ln in lines[:-1] if ln.strip() and not ln.startswith("Traceback")][-6:]
        return CheckResult(label, False, "\n".join([detail, *context]))

    return Check(label, fn, severity=severity)


def env_check(name: str, environ: Mapping[str, str] | None = None, severity: str = CRITICAL) -> Check:
    def fn(ctx: CheckContext) -> CheckResult:
        env = ctx.env if ctx.env is not None else (environ if environ is not None else os.environ)
        if env.get(name, "").strip():
            return CheckResult(f"${name}", True, f"{name} is set")  # never the value
        return CheckResult(f"${name}", False, f"{name} is not set; export {name}=... before running")

    return Check(f"${name}", fn, severity=severity)


def input_check(pattern: str, producer: int | None = None, planned: bool = False,
                severity: str = CRITICAL) -> Check:
    """``pattern`` must match an existing file or folder.

    ``producer``: the dependency step whose output this is. ``planned``: the
    producer is selected in this run but not executed (``--dry-run``), so a
    missing file is expected and passes with a note.
    """
    label = f"{pattern} exists"
    # The producer as users name it: STEP 2A, T001, never a lettered id's internal number.
    shown = ident_of(producer) if producer is not None else None
    logged = producer if shown == str(producer) else shown  # the log's step fields: a number for STEP N

    def fn(ctx: CheckContext) -> CheckResult:
        found = _matches(ctx.root, pattern)
        if found:
            return CheckResult(label, True, f"{len(found)} match(es)" if len(found) > 1 else str(found[0].name))
        if planned and producer is not None:  # data: shown in the terminal too, not only the log
            return CheckResult(label, True, f"will be made by STEP {shown}", data={"made_by_step": logged})
        who = f" (an output of STEP {shown})" if producer is not None else ""
        return CheckResult(label, False, f"{pattern}{who} not found in {ctx.root}")

    return Check(label, fn, severity=severity)


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
        from pytest_dotasks.run.probes import NAMED_PROBES

        result = NAMED_PROBES[name](ctx.remaining(), ctx.env if ctx.env is not None else os.environ)
        return CheckResult(f"{name} reachable", bool(result.ok), result.reason)

    return Check(f"{name} reachable", fn, severity=severity)


def named_probe_names() -> frozenset[str]:
    try:
        from pytest_dotasks.run.probes import NAMED_PROBES
    except ImportError:
        return frozenset()
    return frozenset(NAMED_PROBES)


# ---------------------------------------------------------------- post


_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def _json_error(exc: json.JSONDecodeError) -> str:
    msg = exc.msg if exc.msg.endswith(" at") else exc.msg + " at"
    return f"invalid JSON ({msg} column {exc.colno})"


def _snippet(line: str, width: int = 60) -> str:
    line = line.strip()
    return line if len(line) <= width else line[: width - 3] + "..."


def _count_records(path: Path) -> tuple[int, str | None]:
    """Records in a JSON or JSON Lines file, or an error naming the bad line.

    JSON Lines: one record per non-blank line. JSON: the length of a
    top-level array, else 1. Any other file: its non-blank lines.
    """
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            n = 0
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as exc:
                        return n, f"{path.name}:{lineno}: {_json_error(exc)}: {_snippet(line)}"
                    n += 1
            return n, None
        if path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                bad = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
                return 0, f"{path.name}:{exc.lineno}: {_json_error(exc)}: {_snippet(bad)}"
            return (len(data) if isinstance(data, list) else 1), None
        with open(path, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip()), None
    except UnicodeDecodeError as exc:
        return 0, f"{path.name}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return 0, f"{path.name}: cannot read ({exc.strerror})"


def output_check(out: OutputSpec) -> Check:
    """``out.pattern`` matched something, nothing matched is empty, JSON parses,
    and there are at least ``out.min_records`` records in all matches together."""
    label = f"{out.pattern} created" + (f" (>= {out.min_records} records)" if out.min_records else "")

    def fn(ctx: CheckContext) -> CheckResult:
        found = _matches(ctx.root, out.pattern)
        if not found:
            return CheckResult(label, False, f"{out.pattern} was not created")
        total = 0
        counted = False
        for p in found:
            shown = p.relative_to(ctx.root) if p.is_relative_to(ctx.root) else p
            if p.is_file() and p.stat().st_size == 0:
                return CheckResult(label, False, f"{shown} is empty")
            if p.is_dir() and not any(p.iterdir()):
                return CheckResult(label, False, f"{shown}/ is empty")
            if p.is_file() and (p.suffix in _JSON_SUFFIXES or out.min_records is not None):
                n, err = _count_records(p)
                if err:
                    return CheckResult(label, False, err)
                total += n
                counted = True
        records = f"{total} record" + ("" if total == 1 else "s")
        if out.min_records is not None and total < out.min_records:
            return CheckResult(label, False, f"{records}, fewer than the {out.min_records} required",
                               data={"records": total})
        detail = records if counted else ", ".join(p.name for p in found[:3])
        return CheckResult(label, True, detail, data={"records": total} if counted else {})

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


def _json_from_output(output: str) -> Any:
    """The JSON a command printed: all of it, else the last JSON value that
    ends the output (log lines and warnings before it are ignored)."""
    text = output.strip()
    if not text:
        raise ValueError("the command printed nothing")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    raise ValueError(f"no JSON object in its output (last line: {_snippet(lines[-1])})")


def is_metrics_file(root: Path, text: str) -> bool:
    """A single word naming a ``.json`` file, or an existing file that is not a program."""
    if not text or any(c.isspace() for c in text):
        return False
    path = Path(text) if os.path.isabs(text) else root / text
    if path.suffix == ".json":
        return True
    return path.is_file() and not os.access(path, os.X_OK)


class MetricsCollector:
    """Reads every ``metrics:`` source once per step, shared by its threshold checks.

    A source is a JSON file (``metrics: results/metrics.json``) or a command
    printing JSON (``metrics: python eval.py --json``). Nested objects are
    flattened with dots: ``{"eval": {"acc": 0.9}}`` gives ``eval.acc``.
    """

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
                self.error = self._read(src.command.strip(), ctx)
                if self.error:
                    return

    def _read(self, text: str, ctx: CheckContext) -> str | None:
        if is_metrics_file(ctx.root, text):
            path = Path(text) if os.path.isabs(text) else ctx.root / text
            if not path.is_file():
                return f"metrics file {text} not found"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                return f"metrics file {text} is not JSON: line {exc.lineno}: {exc.msg}"
            except (OSError, UnicodeDecodeError) as exc:
                return f"metrics file {text} cannot be read: {exc}"
            where = f"metrics file {text}"
        else:
            res = run_shell(text, ctx.root, timeout=ctx.remaining(), env=ctx.env)
            if res.timed_out:
                return f"metrics command `{text}` timed out after {ctx.timeout:g}s"
            if not res.ok:
                return f"metrics command `{text}` failed (exit {res.returncode}): {tail(res.output, 3)}".rstrip()
            try:
                data = _json_from_output(res.output)
            except ValueError as exc:
                return f"metrics command `{text}` printed no JSON: {exc}"
            where = f"metrics command `{text}`"
        if not isinstance(data, dict):
            return f"{where} gave a JSON {type(data).__name__}, not an object of named numbers"
        self.values.update(_flatten(data))
        return None


def metrics_checks(cfg: StepConfig) -> tuple[list[Check], MetricsCollector]:
    collector = MetricsCollector(cfg.metric_sources)
    checks: list[Check] = []

    def threshold_check(t: Threshold) -> Check:
        def fn(ctx: CheckContext) -> CheckResult:
            collector.collect(ctx)
            if collector.error:
                return CheckResult(str(t), False, collector.error)
            if not collector.sources:
                return CheckResult(str(t), False, f"no metrics source for {t.name}: add a 'metrics:' bullet "
                                                  "naming a JSON file or a command printing JSON")
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


def post_checks_for(cfg: StepConfig) -> tuple[list[Check], MetricsCollector]:
    """The built-in post-validation of a step: outputs, validate commands, metrics."""
    checks: list[Check] = [output_check(o) for o in cfg.outputs]
    checks += [shell_check(c, "post") for c in cfg.validate]
    mchecks, collector = metrics_checks(cfg)
    return checks + mchecks, collector
