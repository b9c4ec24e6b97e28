"""The state of one pytest run over one or more plans, and its report hooks.

Registered as a plugin in ``pytest_configure`` only when a plan is being
run, so plain ``pytest`` never pays for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_dotasks.errors import DotasksError, LogError, MarkError
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, Spec
from pytest_dotasks.run.tasklog import TaskLog, now_iso, secret_values
from pytest_dotasks.settings import Settings

if TYPE_CHECKING:
    from pytest_dotasks.items import StepItem


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
        self.monitor: Any = None
        self.bg_finished: list[tuple[Any, bool, str]] = []
        self._pending: list[str] = []
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
        from pytest_dotasks.items import StepItem

        final: dict[Path, set[int]] = {}
        for it in session.items:
            if isinstance(it, StepItem):
                final.setdefault(it.spec_path, set()).add(it.step.number)
        for path in self.parsed:
            self.selected[path] = final.get(path, set())

    # ------------------------------------------------------------ background steps

    def _monitor(self) -> Any:
        if self.monitor is None:
            from pytest_dotasks.run.background import Monitor

            self.monitor = Monitor(self._bg_lines, self._bg_finish)
        return self.monitor

    def start_background(self, item: StepItem, env: dict[str, str]) -> Any:
        from pytest_dotasks.run.background import launch

        cfg = item.cfg
        assert cfg.run is not None and item.task_id is not None
        task = launch(item.task_id, item.step.number, item.spec_path, cfg.run, item.spec_path.parent, env,
                      cfg.monitor, cfg.monitor_every, cfg.alert, timeout=cfg.timeout)
        self.log_for(item.spec_path).event(
            task.task_id, f"Started in the background (pid {task.pid})", step=task.step, phase="background",
            event="started", pid=task.pid, command=cfg.run, output=str(task.output), monitor=cfg.monitor)
        self.emit(f"[BACKGROUND] STEP {task.step} started (pid {task.pid}), output: {task.output}")
        self._monitor().watch(task)
        return task

    def _bg_lines(self, task: Any, lines: list[str]) -> None:
        from pytest_dotasks.run.background import alert_in

        log = self.log_for(task.spec)
        for line in lines:
            log.event(task.task_id, line, step=task.step, phase="background", event="monitor",
                      file=task.monitor)
            hit = alert_in(line, task.alerts)
            if hit:
                log.event(task.task_id, f"ALERT '{hit}' in {task.monitor}: {line}", step=task.step,
                          phase="background", event="alert", pattern=hit, line=line)
                self.emit(f"⚠ ALERT STEP {task.step} [{task.task_id}]: '{hit}' in {task.monitor}: {line}", force=True)
            else:
                self.emit(f"[MONITOR] STEP {task.step}: {line}")

    def _bg_finish(self, task: Any, state: str, code: int | None) -> None:
        self.settle(task, state, code)

    def settle(self, task: Any, state: str, code: int | None) -> str | None:
        """Write the final marker of a finished background step (exactly once across processes)."""
        from pytest_dotasks.run.background import claim

        if not claim(task):
            return None
        try:
            return self._settle_claimed(task, state, code)
        finally:
            from pytest_dotasks.run.background import mark_settled

            mark_settled(task)

    def _settle_claimed(self, task: Any, state: str, code: int | None) -> str | None:
        from pytest_dotasks.plan.marking import read_marker
        from pytest_dotasks.run.background import EXITED

        log = self.log_for(task.spec)
        marker = read_marker(task.spec, task.step)
        if marker is None or marker.task_id != task.task_id or marker.status != STATUS_RUNNING:
            log.event(task.task_id, "background step finished; its marker was changed meanwhile, left as it is",
                      step=task.step, phase="background", event="finished", state=state, exit_code=code)
            return None
        if state != EXITED:
            from pytest_dotasks.run.background import kill_orphan

            kill_orphan(task)
        ok = state == EXITED and code == 0
        detail = ""
        if ok:
            ok, detail = self._bg_post(task)
        timed_out = _timed_out(task)
        note = "" if ok else (f"(timed out after {timed_out:g}s)" if timed_out else
                             f"(exit {code})" if state == EXITED and code else
                             "(process vanished)" if state != EXITED else "(post-validation failed)")
        status = STATUS_DONE if ok else STATUS_FAILED
        from pytest_dotasks.plan.marking import mark
        from pytest_dotasks.run.tasklog import now_iso

        try:
            if not (self.settings.no_mark or self.settings.dry_run):
                mark(task.spec, task.step, status, task.task_id, now_iso(), note)
        except MarkError as exc:
            log.event(task.task_id, exc.one_line(), step=task.step, phase="mark", event="mark_failed")
        message = (f"STEP {task.step} finished in the background: exit {code}" if state == EXITED
                   else f"STEP {task.step}: background process vanished (killed?)")
        log.event(task.task_id, message + ("" if ok else " - FAILED"), step=task.step, phase="background",
                  event="finished", state=state, exit_code=code, ok=ok, detail=detail)
        self.bg_finished.append((task, ok, message + (f"; {detail}" if detail else "")))
        step = self.plan_step(task.spec, task.step)[0]
        if step is not None:
            self.config.hook.pytest_dotasks_step_finished(
                step=step, task_id=task.task_id, outcome="passed" if ok else "failed", phase="background",
                properties={"exit_code": code, "state": state, "detail": detail}, config=self.config)
        if ok:
            self.emit(f"[BACKGROUND] ✓ {message} [{task.task_id}]", force=True)
        else:
            why = f": {detail}" if detail else ""
            self.emit(f"[BACKGROUND] ✗ {message}{why} [{task.task_id}]; output: {task.output}", force=True)
        return status

    def _bg_post(self, task: Any) -> tuple[bool, str]:
        """Post-validation of a background step once its body has ended."""
        from pytest_dotasks.run import builtin_checks as bc
        from pytest_dotasks.run.checks import run_checks
        from pytest_dotasks.run.context import dotasks_env
        from pytest_dotasks.run.phases import _hook_checks

        step, cfg = self.plan_step(task.spec, task.step)
        if step is None or cfg is None:
            return True, ""
        checks = bc.post_checks_for(cfg)[0]
        checks += _hook_checks("pytest_dotasks_post_checks",
                               self.config.hook.pytest_dotasks_post_checks(step=step, config=self.config))
        if not checks:
            return True, ""
        env = dotasks_env(task.task_id, task.step, task.spec, task.spec.parent)
        results = run_checks(checks, root=task.spec.parent, timeout=self.settings.post_timeout,
                             workers=self.settings.check_workers, env=env)
        log = self.log_for(task.spec)
        for r in results:
            log.event(task.task_id, f"{r.name}: {'ok' if r.ok else 'FAILED'}", step=task.step, phase="post",
                      event="check", check=r.name, ok=r.ok, seconds=round(r.seconds, 3), severity=r.severity,
                      detail=r.detail[-2000:])
        failed = [r for r in results if r.blocking]
        return (not failed), "; ".join(f"{r.name}: {r.detail.splitlines()[0] if r.detail else 'failed'}"
                                      for r in failed)

    def reconcile(self) -> None:
        """Settle background steps of earlier runs that ended (or vanished) since."""
        from pytest_dotasks.run.background import RUNNING, claimed, status, tasks_for

        for spec in self.specs:
            for task in tasks_for(spec):
                if claimed(task):
                    continue
                state, code = status(task)
                if state == RUNNING:
                    self._monitor().watch(task)
                else:
                    self.settle(task, state, code)

    def wait_for_background(self, spec: Path, dep: int, task_id: str | None, limit: float | None) -> str:
        """Block until STEP ``dep``'s background body ends; returns its final status."""
        import time as _time

        from pytest_dotasks.plan.marking import read_marker
        from pytest_dotasks.run.background import RUNNING, find, settled, status

        task = find(spec, task_id)
        if task is None:
            return STATUS_FAILED
        start = _time.monotonic()
        announced = False
        while True:
            state, code = status(task)
            if state != RUNNING:
                if self.monitor is not None:
                    self.monitor.drain(task.task_id)  # its last lines before its verdict
                self.settle(task, state, code)
                deadline = _time.monotonic() + 10
                while not settled(task) and _time.monotonic() < deadline:
                    _time.sleep(0.05)
                marker = read_marker(spec, dep)
                return marker.status if marker is not None else STATUS_FAILED
            if limit is not None and _time.monotonic() - start > limit:
                return STATUS_RUNNING
            if not announced:
                self.emit(f"[WAIT] STEP {dep} is still running in the background (pid {task.pid}); waiting...")
                announced = True
            _time.sleep(0.2)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.is_worker:
            self.reconcile()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor.poll_once()
        self.flush_pending()

    # ------------------------------------------------------------ terminal

    def emit(self, line: str, force: bool = False) -> None:
        """A live line under ``-v`` (``force``: always); controller only, workers have no terminal."""
        if self.is_worker or (self.config.get_verbosity() < 1 and not force):
            return
        import threading

        if threading.current_thread() is not threading.main_thread():
            # The monitor thread must not toggle capturing under a running test:
            # its lines wait for the main thread (next emit or report).
            self._pending.append(line)
            return
        self.flush_pending()
        self._write(line)

    def flush_pending(self) -> None:
        while self._pending:
            self._write(self._pending.pop(0))

    def _write(self, line: str) -> None:
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
        from pytest_dotasks.plan.marking import mark

        stamp = now_iso()
        mark(item.spec_path, item.step.number, status, task_id, stamp, note)
        self.log_for(item.spec_path).event(
            task_id, f"Marked STEP {item.step.number} {status}", step=item.step.number, phase="mark",
            event="marked", status=status, spec=str(item.spec_path),
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        from pytest_dotasks.items import StepItem

        if not isinstance(item, StepItem):
            return report
        from pytest_dotasks.items import _is_timeout

        if (report.when != "call" and report.failed and call.excinfo is not None
                and (isinstance(call.excinfo.value, DotasksError) or _is_timeout(call.excinfo.value))):
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
        log_failed = call.excinfo is not None and isinstance(call.excinfo.value, LogError)
        try:
            self.mark(item, status)
        except DotasksError as exc:  # MarkError, or LogError from the "marked" event
            if not isinstance(exc, LogError):
                try:
                    self.log_for(item.spec_path).event(
                        item.task_id, exc.one_line(), step=item.step.number, phase="mark", event="mark_failed")
                except LogError as log_exc:
                    exc = log_exc
            log_failed = log_failed or isinstance(exc, LogError)
            report.outcome = "failed"
            report.longrepr = exc.render()
        if log_failed:
            # Nothing more may run unlogged: stop after this step.
            item.session.shouldstop = "the task log cannot be written; see the error above"
        item.config.hook.pytest_dotasks_step_finished(
            step=item.step, task_id=item.task_id, outcome=outcome, phase=item.failed_phase or "main",
            properties=dict(item.user_properties), config=item.config,
        )
        return report

    # ------------------------------------------------------------ summary (controller)

    def pytest_runtest_logfinish(self) -> None:
        self.flush_pending()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "dotasks_step" not in props:
            return
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
                phase=cast("str | None", props.get("failed_phase")), message=message, seconds=report.duration,
                properties=props,
            ))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.records:
            return
        from pytest_dotasks.report import write_summary

        write_summary(terminalreporter, self)


def _timed_out(task: Any) -> float | None:
    import json

    try:
        data = json.loads((task.state / "exit.json").read_text())
    except (OSError, ValueError):
        return None
    return float(data["timeout"]) if data.get("timed_out") else None


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
