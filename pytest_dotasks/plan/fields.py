"""Field values, typed and validated: what a step's bullets mean.

A malformed value is a ``SpecError`` naming the file, the field's line and
the fix, raised while the plan is parsed, before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import re

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.durations import parse_duration
from pytest_dotasks.plan.header import MAX_STEP_DIGITS, step_ident
from pytest_dotasks.plan.model import KINDS, Field, Spec, Step, ident_of, number_of, split_list

ADVISORY = "(advisory)"
CRITICAL = "(critical)"
_THRESHOLD = re.compile(r"^(?P<name>[A-Za-z_][\w.\-/]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>-?\d+(?:\.\d+)?)$")
_LOOKS_LIKE_THRESHOLD = re.compile(r"^[A-Za-z_][\w.\-/]*\s*(>=|<=|==|!=|=>|=<|>|<|=)")
_MIN_RECORDS = re.compile(r"^(?P<glob>.+?)\s*>=\s*(?P<n>\d+)(?:\s*records?)?$")
_MONITOR = re.compile(r"^(?P<path>\S+)(?:\s+every\s+(?P<every>\S+))?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# A 'needs:' entry: "3", "step 3", "2A", "T001", "T-001", "1.2", "T320-2".
_NEED = re.compile(r"(?:step\s*)?(\d+[A-Za-z]?|T-?\d+(?:-\d+)?|\d+(?:\.\d+)+(?:-\d+)?)", re.IGNORECASE)
_NUMBERED = re.compile(r"\d+[A-Za-z]?")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_YES = {"yes", "true", "on", "1"}
_NO = {"no", "false", "off", "0"}

# Every number a plan gives has a range; outside it the plan is an error naming the
# range (DESIGN.md section 1). Chosen so each stays far from what breaks the machinery
# (setitimer overflows past ~68 years; a retry loop must end) and near what plans need.
TIMEOUT_RANGE = (1.0, 30 * 86400.0)  # 1s .. 30d: a whole-step limit (pytest-timeout's timer)
MONITOR_EVERY_RANGE = (0.1, 86400.0)  # 0.1s .. 1d between two reads of a monitored file
MAX_RETRIES = 20
MAX_RECORDS = 10**12  # "outputs: data.jsonl >= N records"


def severity_of(value: str) -> tuple[str, str]:
    """Strip a trailing ``(advisory)``/``(critical)``: (value, severity)."""
    v = value.rstrip()
    low = v.lower()
    if low.endswith(ADVISORY):
        return v[: -len(ADVISORY)].rstrip(), "advisory"
    if low.endswith(CRITICAL):
        return v[: -len(CRITICAL)].rstrip(), "critical"
    return v, "critical"


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    pattern: str
    min_records: int | None
    severity: str
    line: int


@dataclasses.dataclass(frozen=True)
class Threshold:
    name: str
    op: str
    value: float
    severity: str
    line: int

    def holds(self, actual: float) -> bool:
        return {
            ">=": actual >= self.value, "<=": actual <= self.value, ">": actual > self.value,
            "<": actual < self.value, "==": actual == self.value, "!=": actual != self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value:g}"


@dataclasses.dataclass(frozen=True)
class Command:
    command: str
    severity: str
    line: int


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Everything a step's fields say, typed. Built once per step at collection."""

    needs: tuple[int, ...]
    requires: tuple[str, ...]
    env: tuple[str, ...]
    inputs: tuple[str, ...]
    checks: tuple[Command, ...]
    run: str | None
    agent: str | None
    skills: tuple[str, ...]
    model: str | None
    retries: int
    background: bool
    monitor: str | None
    monitor_every: float
    alert: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]
    validate: tuple[Command, ...]
    metric_sources: tuple[Command, ...]
    thresholds: tuple[Threshold, ...]
    timeout: float | None
    kind: str | None


DEFAULT_ALERTS = ("nan", "error", "failed", "Traceback")


def _err(step: Step, f: Field, message: str, fix: str) -> SpecError:
    return SpecError(f"STEP {step.ident} field '{f.key}': {message}", path=step.path, line=f.line, fix=fix)


def _clip(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _needs_of(step: Step, f: Field) -> list[int]:
    if f.value.strip().lower() in ("none", "-", ""):
        return []
    out: list[int] = []
    for part in split_list(f.value):
        m = _NEED.fullmatch(part.strip())
        digits = m.group(1).rstrip(_LETTERS) if m else ""
        if not m or len(digits) > MAX_STEP_DIGITS:
            raise _err(step, f, f"'{_clip(part)}' is not a step number",
                       "write step ids like 'needs: 3, 7', 'needs: 2A', 'needs: T001' or 'none'")
        raw = m.group(1)
        out.append(number_of(step_ident(raw) if _NUMBERED.fullmatch(raw) else raw))
    return out


def _needs(step: Step, previous: int | None) -> tuple[int, ...]:
    # Every 'needs:' bullet counts (checklist and detail section alike), as for the
    # other list fields; dropping all but the last would silently lose a dependency.
    bullets = [f for f in step.fields if f.key == "needs"]
    if not bullets and step.default_needs is not None:
        return tuple(number_of(i) for i in step.default_needs)
    if not bullets:
        return (previous,) if previous is not None else ()
    out: list[int] = []
    for f in bullets:
        out.extend(n for n in _needs_of(step, f) if n not in out)
    return tuple(out)


def _needs_line(step: Step, dep: int) -> int:
    """Line of the 'needs:' bullet naming ``dep`` (the header for the default)."""
    for f in step.fields:
        if f.key == "needs" and dep in _needs_of(step, f):
            return f.line
    return step.line


# Fields that take one value: a second bullet is an error, not a silent override.
SINGLE_FIELDS = ("run", "agent", "model", "retries", "background", "monitor", "timeout", "kind")


def config_of(step: Step, previous: int | None = None) -> StepConfig:
    """Typed view of a step's fields; raises SpecError on a malformed value."""
    seen: dict[str, Field] = {}
    f: Field | None
    for f in step.fields:
        if "\x00" in f.value:
            raise _err(step, f, "contains a NUL character (U+0000)",
                       "remove it: no command, path or name can hold one")
        if not f.value and f.key not in ("needs",):
            raise _err(step, f, "has no value", f"write '{f.key}: <value>' or remove the bullet")
        if f.key in SINGLE_FIELDS:
            if f.key in seen:
                fix = ("join the commands in one 'run:' (with &&) or move checks to 'validate:'" if f.key == "run"
                       else f"keep one '{f.key}:' bullet")
                raise _err(step, f, f"given twice (lines {seen[f.key].line} and {f.line})", fix)
            seen[f.key] = f

    def one(key: str) -> Field | None:
        return step.field(key)

    requires = tuple(step.items("requires"))
    for f in step.fields:
        if f.key == "requires":
            for mod in split_list(f.value):
                if not _MODULE.match(mod):
                    raise _err(step, f, f"'{mod}' is not a module name", "list importable modules: 'requires: anthropic, yaml'")
        if f.key == "env":
            for name in split_list(f.value):
                if not _NAME.match(name):
                    raise _err(step, f, f"'{name}' is not a variable name", "list variable names: 'env: ANTHROPIC_API_KEY'")

    retries = 0
    f = one("retries")
    if f is not None:
        value = f.value.strip()
        if not re.fullmatch(r"\d+", value):
            raise _err(step, f, f"'{_clip(f.value)}' is not a whole number", "write e.g. 'retries: 2'")
        if len(value) > 3 or int(value) > MAX_RETRIES:
            raise _err(step, f, f"{_clip(value)} is more than {MAX_RETRIES}",
                       f"write a number from 0 to {MAX_RETRIES}, e.g. 'retries: 2'")
        retries = int(value)

    kind = None
    f = one("kind")
    if f is not None:
        kind = f.value.strip().lower()
        if kind not in KINDS:
            raise _err(step, f, f"unknown kind '{f.value}'", f"use one of {', '.join(KINDS)}")

    background = kind == "training"
    f = one("background")
    if f is not None:
        v = f.value.strip().lower()
        if v not in _YES | _NO:
            raise _err(step, f, f"'{f.value}' is not yes or no", "write 'background: yes' or 'background: no'")
        background = v in _YES

    timeout = None
    f = one("timeout")
    if f is not None:
        try:
            timeout = parse_duration(f.value, lo=TIMEOUT_RANGE[0], hi=TIMEOUT_RANGE[1])
        except ValueError as exc:
            raise _err(step, f, str(exc), "write a duration from 1s to 30d, e.g. 'timeout: 90s', '15m' or '2h'") from None

    monitor, every = None, 60.0
    f = one("monitor")
    if f is not None:
        m = _MONITOR.match(f.value.strip())
        if not m:
            raise _err(step, f, f"cannot read '{f.value}'", "write 'monitor: logs/loss.txt every 60s'")
        monitor = m.group("path")
        if m.group("every"):
            try:
                every = parse_duration(m.group("every"), lo=MONITOR_EVERY_RANGE[0], hi=MONITOR_EVERY_RANGE[1])
            except ValueError as exc:
                raise _err(step, f, str(exc),
                           "write 'monitor: logs/loss.txt every 60s' (from 0.1s to 1d)") from None

    outputs: list[OutputSpec] = []
    for f in step.fields:
        if f.key != "outputs":
            continue
        value, sev = severity_of(f.value)
        for part in split_list(value):
            m = _MIN_RECORDS.match(part)
            if m:
                n = m.group("n")
                if len(n) > 13 or int(n) > MAX_RECORDS:
                    raise _err(step, f, f"{_clip(n)} records is more than {MAX_RECORDS:,}",
                               "write a smaller minimum, e.g. 'outputs: data/train.jsonl >= 5000'")
                outputs.append(OutputSpec(m.group("glob").strip(), int(n), sev, f.line))
            elif ">=" in part or "<" in part:
                raise _err(step, f, f"cannot read '{part}'", "write 'outputs: data/train.jsonl >= 5000' for a minimum record count")
            else:
                outputs.append(OutputSpec(part, None, sev, f.line))

    validate = tuple(Command(*severity_of(f.value), f.line) for f in step.fields if f.key == "validate")
    checks = tuple(Command(*severity_of(f.value), f.line) for f in step.fields if f.key == "check")

    sources: list[Command] = []
    thresholds: list[Threshold] = []
    for f in step.fields:
        if f.key != "metrics":
            continue
        value, sev = severity_of(f.value)
        parts = split_list(value)
        if parts and all(_THRESHOLD.match(p) for p in parts):
            for p in parts:
                m = _THRESHOLD.match(p)
                assert m is not None
                if not math.isfinite(float(m.group("num"))):
                    raise _err(step, f, f"the threshold of '{m.group('name')}' is too large a number",
                               "write a number a metric can reach, e.g. 'metrics: accuracy >= 0.9'")
                thresholds.append(Threshold(m.group("name"), m.group("op"), float(m.group("num")), sev, f.line))
        elif len(parts) > 1 and any(_THRESHOLD.match(p) for p in parts):
            raise _err(step, f, "mixes a metrics source and thresholds on one bullet",
                       "write the source and the thresholds on two bullets: "
                       "'metrics: eval/metrics.json' and 'metrics: acc >= 0.9'")
        elif _LOOKS_LIKE_THRESHOLD.match(value.strip()):
            raise _err(step, f, f"cannot read threshold '{value}'", "write 'metrics: consistency >= 0.9' (name, operator, number)")
        else:
            sources.append(Command(value, sev, f.line))

    return StepConfig(
        needs=_needs(step, previous),
        requires=requires,
        env=tuple(step.items("env")),
        inputs=tuple(step.items("inputs")),
        checks=checks,
        run=step.value("run"),
        agent=step.value("agent"),
        skills=tuple(step.items("skills")),
        model=step.value("model"),
        retries=retries,
        background=background,
        monitor=monitor,
        monitor_every=every,
        alert=tuple(step.items("alert")) or DEFAULT_ALERTS,
        outputs=tuple(outputs),
        validate=validate,
        metric_sources=tuple(sources),
        thresholds=tuple(thresholds),
        timeout=timeout,
        kind=kind,
    )


def configs(spec: Spec) -> dict[int, StepConfig]:
    """Config of every step, with default ``needs`` = the previous step in file order."""
    out: dict[int, StepConfig] = {}
    previous: int | None = None
    for step in spec.steps:
        out[step.number] = config_of(step, previous)
        previous = step.number
    return out


def validate_spec(spec: Spec) -> dict[int, StepConfig]:
    """Check every field and the dependency graph (unknown steps, cycles)."""
    cfgs = configs(spec)
    by_number = spec.by_number()
    for step in spec.steps:
        for dep in cfgs[step.number].needs:
            if dep not in by_number:
                raise SpecError(
                    f"STEP {step.ident} needs STEP {ident_of(dep)}, which is not in the plan",
                    path=spec.path, line=_needs_line(step, dep), fix="fix the step id in 'needs:'",
                )
            if dep == step.number:
                raise SpecError(f"STEP {step.ident} needs itself", path=spec.path,
                                line=_needs_line(step, dep), fix="remove it from 'needs:'")
    _check_cycles(spec, cfgs)
    return cfgs


def _check_cycles(spec: Spec, cfgs: dict[int, StepConfig]) -> None:
    WHITE, GREY, BLACK = 0, 1, 2
    color = {n: WHITE for n in cfgs}
    by_number = spec.by_number()
    for root in cfgs:
        if color[root] != WHITE:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = GREY
                path.append(node)
            deps = cfgs[node].needs
            if i < len(deps):
                stack.append((node, i + 1))
                nxt = deps[i]
                if color[nxt] == GREY:
                    cyc = path[path.index(nxt):] + [nxt]
                    lines = ", ".join(f"STEP {ident_of(n)} (line {by_number[n].line})" for n in cyc[:-1])
                    # Point at the 'needs:' that closes the cycle (the step's header
                    # when that edge is the default "previous step").
                    raise SpecError(
                        "dependency cycle: " + " -> ".join(f"STEP {ident_of(n)}" for n in cyc) + f"; steps: {lines}",
                        path=spec.path, line=_needs_line(by_number[node], nxt),
                        fix="remove one of these 'needs:' entries",
                    )
                if color[nxt] == WHITE:
                    stack.append((nxt, 0))
            else:
                color[node] = BLACK
                path.pop()
