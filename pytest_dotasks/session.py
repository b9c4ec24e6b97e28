"""The state of one pytest run over one or more plans, and its report hooks.

Registered as a plugin in ``pytest_configure`` only when a plan is being
run, so plain ``pytest`` never pays for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import DotasksError, MarkError
from .fields import StepConfig
from .model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, Spec
from .settings import Settings
from .tasklog import TaskLog, now_iso, secret_values

if TYPE_CHECKING:
    from .items import StepItem


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


class DotasksRun:
    def __init__(self, config: pytest.Config, settings: Settings, specs: list[Path]) -> None:
        self.config = config
        self.settings = settings
        self.specs = specs
        self.parsed: dict[Path, Spec] = {}
        self.configs: dict[Path, dict[int, StepConfig]] = {}
        self.selected: dict[Path, set[int]] = {}
        self.outcomes: dict[tuple[Path, int], str] = {}  # this process: passed/failed/skipped/dry
        self.records: list[Record] = []
        self._logs: dict[Path, TaskLog] = {}
        self.is_worker = hasattr(config, "workerinput")

    # ------------------------------------------------------------ plans

    def add_spec(self, spec: Spec, cfgs: dict[int, StepConfig]) -> None:
        self.parsed[spec.path] = spec
        self.configs[spec.path] = cfgs
        names: set[str] = set()
        for cfg in cfgs.values():
            names.update(cfg.env)
        self.log_for(spec.path).add_secrets(secret_values(names))

    def config_of(self, spec_path: Path, number: int) -> StepConfig | None:
        return self.configs.get(spec_path, {}).get(number)

    def producers(self, spec_path: Path, before: int) -> dict[str, int]:
        """Output pattern -> the step (earlier in the file) that makes it."""
        out: dict[str, int] = {}
        spec = self.parsed.get(spec_path)
        if spec is None:
            return out
        for step in spec.steps:
            if step.number == before:
                break
            for o in self.configs[spec_path][step.number].outputs:
                out[o.pattern] = step.number
        return out

    def is_selected(self, spec_path: Path, number: int) -> bool:
        return number in self.selected.get(spec_path, set())

    def log_for(self, spec_path: Path) -> TaskLog:
        if spec_path not in self._logs:
            if self.settings.task_log:
                path = Path(self.settings.task_log)
                if not path.is_absolute():
                    path = Path(self.config.invocation_params.dir) / path
            else:
                path = spec_path.parent / ".task_execution.log"
            self._logs[spec_path] = TaskLog(path, secret_values())
        return self._logs[spec_path]

    def state_dir(self, spec_path: Path) -> Path:
        return spec_path.parent / ".dotasks"

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The final selection (after -k, -m, --steps): what "selected" means for needs."""
        from .items import StepItem

        final: dict[Path, set[int]] = {}
        for it in session.items:
            if isinstance(it, StepItem):
                final.setdefault(it.spec_path, set()).add(it.step.number)
        for path in self.parsed:
            self.selected[path] = final.get(path, set())

    # ------------------------------------------------------------ terminal

    def emit(self, line: str) -> None:
        """A live line under ``-v`` (controller only; workers have no terminal)."""
        if self.is_worker or self.config.get_verbosity() < 1:
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with ctx:
            tr.write_line(line)

    # ------------------------------------------------------------ marking

    def mark(self, item: StepItem, status: str, note: str = "") -> None:
        """Write the marker unless --no-mark / --dry-run; raise MarkError on failure."""
        task_id = item.task_id
        if task_id is None or self.settings.no_mark or self.settings.dry_run:
            return
        from .marking import mark

        stamp = now_iso()
        mark(item.spec_path, item.step.number, status, task_id, stamp, note)
        self.log_for(item.spec_path).event(
            task_id, f"Marked STEP {item.step.number} {status}", step=item.step.number, phase="mark",
            event="marked", status=status, spec=str(item.spec_path),
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
        report = yield
        from .items import StepItem

        if not isinstance(item, StepItem):
            return report
        if (report.when != "call" and report.failed and call.excinfo is not None
                and isinstance(call.excinfo.value, DotasksError)):
            # pytest renders setup errors without repr_failure; ours are a few plain lines.
            report.longrepr = item.repr_failure(call.excinfo)
        if item.task_id is None:
            return report
        status = None
        if report.when == "setup" and report.failed:
            status, outcome = STATUS_FAILED, "failed"
        elif report.when == "call":
            if report.passed:
                status, outcome = (STATUS_RUNNING, "running") if item.background_started else (STATUS_DONE, "passed")
            elif report.failed:
                status, outcome = STATUS_FAILED, "failed"
            else:
                outcome = "skipped"
        if status is None:
            return report
        self.outcomes[(item.spec_path, item.step.number)] = outcome
        try:
            self.mark(item, status)
        except MarkError as exc:
            self.log_for(item.spec_path).event(
                item.task_id, exc.one_line(), step=item.step.number, phase="mark", event="mark_failed")
            report.outcome = "failed"
            report.longrepr = exc.render()
        item.config.hook.pytest_dotasks_step_finished(
            step=item.step, task_id=item.task_id, outcome=outcome, phase=item.failed_phase or "main",
            properties=dict(item.user_properties), config=item.config,
        )
        return report

    # ------------------------------------------------------------ summary (controller)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "dotasks_step" not in props:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = report.outcome
            if report.when == "setup" and report.failed:
                outcome = "error"
            if props.get("background") == "started" and report.passed:
                outcome = "running"
            message = None
            if report.skipped and isinstance(report.longrepr, tuple):
                message = str(report.longrepr[2]).removeprefix("Skipped: ")
            elif report.failed:
                text = str(report.longrepr) if report.longrepr is not None else ""
                message = text.splitlines()[0] if text else None
            self.records.append(Record(
                spec=str(props.get("dotasks_spec")), step=int(props["dotasks_step"]),
                title=str(props.get("title", "")), outcome=outcome, task_id=props.get("task_id"),
                phase=props.get("failed_phase"), message=message, seconds=report.duration, properties=props,
            ))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.records:
            return
        from .report import write_summary

        write_summary(terminalreporter, self)


def spec_paths_from(config: pytest.Config, settings: Settings) -> list[Path]:
    """Plans named by --spec, the ini, or ``.md`` files given as arguments."""
    out: list[Path] = []
    if settings.spec:
        source = settings.sources.get("spec", "")
        base = Path(config.invocation_params.dir)
        if source.startswith("ini") and config.inipath is not None:
            base = config.inipath.parent
        path = Path(settings.spec)
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise DotasksError(
                f"spec file {settings.spec} not found (from {source})" if path.exists() is False
                else f"spec path {settings.spec} is not a file (from {source})",
                path=path, fix="check the path given to --spec or dotasks_spec",
            )
        out.append(Path(os.path.abspath(path)))
    for arg in config.args:
        name = arg.split("::", 1)[0]
        if name.endswith(".md"):
            p = Path(name)
            p = p if p.is_absolute() else Path(config.invocation_params.dir) / p
            if p.is_file() and Path(os.path.abspath(p)) not in out:
                out.append(Path(os.path.abspath(p)))
    return out
