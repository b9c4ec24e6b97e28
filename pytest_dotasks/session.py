"""The state of one pytest run over one or more plans, and its report hooks.

Registered as a plugin in ``pytest_configure`` only when a plan is being
run, so plain ``pytest`` never pays for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_dotasks.errors import DotasksError
from pytest_dotasks.late import LATE, LateVerdicts
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.marking import restore_lost_markers
from pytest_dotasks.plan.model import STATUS_FAILED, STATUS_TODO, Spec, Step
from pytest_dotasks.report import Record, SummaryInput, write_summary
from pytest_dotasks.run.builtin_checks import is_metrics_file
from pytest_dotasks.run.settle import BackgroundSteps, RunPorts
from pytest_dotasks.run.tasklog import TaskLog, secret_values
from pytest_dotasks.settings import Settings
from pytest_dotasks.terminal import LiveOutput
from pytest_dotasks.workers import Outcomes, Workers


class DotasksRun:
    def __init__(self, config: pytest.Config, settings: Settings, specs: list[Path]) -> None:
        self.config = config
        self.settings = settings
        self.specs = specs
        self.parsed: dict[Path, Spec] = {}
        self.configs: dict[Path, dict[int, StepConfig]] = {}
        self.selected: dict[Path, set[int]] = {}
        self.records: list[Record] = []
        self._logs: dict[Path, TaskLog] = {}
        self.is_worker = hasattr(config, "workerinput")
        self._setup_seconds: dict[str, float] = {}
        self.started_bg: dict[tuple[Path, int], str] = {}  # (plan, step) -> task id of a background body this process started
        self.workers = Workers(config, specs, self.parsed, self.state_dir)  # steps on other xdist workers (workers.py)
        # passed/failed/skipped/blocked/dry/running in this process, and on the run's board
        self.outcomes: dict[tuple[Path, int], str] = Outcomes(self.workers, self.started_bg)
        self.readiness_checked = False
        self.readiness_problems: str | None = None  # --dry-run: reported, not raised
        self.live = LiveOutput(config)
        self.emit = self.live.emit
        self.background = BackgroundSteps(self._ports())
        self.late = LateVerdicts(self.background, settings, lambda rep: config.hook.pytest_runtest_logreport(report=rep),
                                 self.live.emit, is_worker=self.is_worker)

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

    def plan_step(self, spec_path: Path, number: int) -> tuple[Any, StepConfig | None]:
        """(Step, config) of a plan's step, parsing the plan if this run has not collected it
        (background steps are settled at session start, before collection)."""
        if spec_path not in self.parsed:
            from pytest_dotasks.plan.specmd import parse_with_configs, read_text

            try:
                spec, cfgs = parse_with_configs(read_text(spec_path), spec_path)
            except DotasksError:
                return None, None
            self.parsed[spec_path], self.configs[spec_path] = spec, cfgs
        return self.parsed[spec_path].by_number().get(number), self.config_of(spec_path, number)

    def producers(self, spec_path: Path, before: int) -> dict[str, int]:
        """Output pattern -> the step (earlier in the file) that makes it: its ``outputs:``, and
        the JSON files its ``metrics:`` reads (a step that is measured from a file writes it)."""
        out: dict[str, int] = {}
        spec = self.parsed.get(spec_path)
        if spec is None:
            return out
        for step in spec.steps:
            if step.number == before:
                break
            cfg = self.configs[spec_path][step.number]
            for o in cfg.outputs:
                out[o.pattern] = step.number
            for src in cfg.metric_sources:
                if is_metrics_file(spec_path.parent, src.command):
                    out.setdefault(src.command, step.number)
        return out

    def is_selected(self, spec_path: Path, number: int) -> bool:
        return number in self.selected.get(spec_path, set())

    def log_for(self, spec_path: Path) -> TaskLog:
        """The plan's task log. A relative ``--task-log`` is relative to where pytest was run (as
        pytest's own paths); a relative ``dotasks_task_log`` to the ini file's folder (as
        ``dotasks_spec`` and ``dotasks_cassettes``), so it does not move with the current directory."""
        if spec_path not in self._logs:
            if self.settings.task_log:
                path = Path(self.settings.task_log)
                if not path.is_absolute():
                    base = Path(self.config.invocation_params.dir)
                    if self.settings.sources.get("task_log", "").startswith("ini") and self.config.inipath:
                        base = self.config.inipath.parent
                    path = base / path
            else:
                path = spec_path.parent / ".task_execution.log"
            self._logs[spec_path] = TaskLog(path, secret_values())
        return self._logs[spec_path]

    def state_dir(self, spec_path: Path) -> Path:
        return spec_path.parent / ".dotasks"

    # ------------------------------------------------------------ background steps

    def _ports(self) -> RunPorts:
        hook = self.config.hook

        def step_finished(step: Step, task_id: str, ok: bool, properties: dict[str, Any]) -> None:
            hook.pytest_dotasks_step_finished(step=step, task_id=task_id, outcome="passed" if ok else "failed",
                                              phase="background", properties=properties, config=self.config)

        return RunPorts(
            settings=self.settings, log_for=self.log_for, plan_step=self.plan_step, emit=self.live.emit,
            post_hook_checks=lambda step: hook.pytest_dotasks_post_checks(step=step, config=self.config),
            step_finished=step_finished,
        )

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        self._restore_markers()  # a stale editor buffer saved over our markers since the last run
        self.background.reconcile(self.specs)

    def _restore_markers(self) -> None:
        if self.is_worker or self.settings.no_mark or self.settings.dry_run:
            return
        for spec in self.specs:
            for message in restore_lost_markers(spec):
                self.live.emit(f"[RESTORED] {message}", force=True)
                self.log_for(spec).event(None, message, phase="mark", event="marker_restored")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.background.stop()
        self.live.flush()
        self.live.close()
        if self.readiness_problems and not self.is_worker:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR  # a dry run found what would stop a real run

    # ------------------------------------------------------------ summary (controller)

    def pytest_runtest_logfinish(self) -> None:
        self.live.flush()
        self.late.deliver_settled()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        result = yield
        # The controller tells every background outcome not yet told (workers leave theirs on disk).
        if not self.is_worker:
            self.late.finish()
        return result

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "dotasks_step" not in props:
            crashed = self.workers.crashed(report)  # an xdist worker died under a step
            if crashed is not None:
                self.records.append(crashed)
            return
        self.late.observe(report)
        if props.get(LATE):
            for rec in self.records:  # the background step's real outcome replaces "running"
                if rec.task_id == props.get("task_id"):
                    rec.outcome = "passed" if report.passed else "failed"
                    rec.phase = None if report.passed else "background"
                    rec.properties = props
            return
        if report.when == "setup" and report.passed:
            self._setup_seconds[report.nodeid] = report.duration  # a step's time is setup + call
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome: str = report.outcome  # widened: the summary adds "error" and "running"
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
            # user_properties values are typed ``object``; StepItem sets these three
            # (dotasks_step an int, task_id and failed_phase a str).
            self.records.append(Record(
                spec=str(props.get("dotasks_spec")), step=int(cast(int, props["dotasks_step"])),
                title=str(props.get("title", "")), outcome=outcome, task_id=cast("str | None", props.get("task_id")),
                phase=cast("str | None", props.get("failed_phase")), message=message,
                seconds=report.duration + self._setup_seconds.pop(report.nodeid, 0.0),
                properties=props,
            ))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        if self.readiness_problems:
            terminalreporter.write_sep("=", "dotasks: problems", red=True)
            terminalreporter.write_line(self.readiness_problems)
        if not self.records:
            return
        write_summary(terminalreporter, SummaryInput(
            records=self.records, settings=self.settings, log_path=lambda spec: self.log_for(spec).path,
            invocation_dir=Path(self.config.invocation_params.dir), left_behind=self._left_behind()))

    def _left_behind(self) -> dict[Path, list[int]]:
        """``--steps continue``: pending steps before the continue point (in file order), which it does not run."""
        if self.settings.steps != "continue":
            return {}
        out: dict[Path, list[int]] = {}
        for path, spec in self.parsed.items():
            chosen = self.selected.get(path, set())
            first = next((i for i, s in enumerate(spec.steps) if s.number in chosen), len(spec.steps))
            out[path] = [s.number for s in spec.steps[:first]
                         if s.marker.status in (STATUS_TODO, STATUS_FAILED) and s.number not in chosen]
        return out


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
