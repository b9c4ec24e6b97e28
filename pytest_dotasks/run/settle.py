"""Background steps seen from a run: start, monitor, settle, wait, reconcile.

A background body runs under its detached supervisor (``run.supervisor``) and
outlives pytest. While a run lives, a monitor thread tails its ``monitor:``
file into the task log and raises alerts; when the body ends, its step is
*settled*: post-validation runs, the marker becomes ``✓`` or ``✗ Failed``, and
the end is reported. Exactly one process settles a task (an ``O_EXCL`` claim
under ``.dotasks/``). Knows nothing of pytest: the face hands in callables.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import DotasksError, MarkError
from pytest_dotasks.plan.durations import format_elapsed
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.marking import mark, read_marker
from pytest_dotasks.plan.model import STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, Step, ident_of
from pytest_dotasks.plan.specmd import parse_file
from pytest_dotasks.run import background as bg
from pytest_dotasks.run import builtin_checks as bc
from pytest_dotasks.run.checks import run_checks
from pytest_dotasks.run.context import dotasks_env
from pytest_dotasks.run.monitor import Monitor
from pytest_dotasks.run.phases import hook_checks
from pytest_dotasks.run.tasklog import TaskLog, now_iso
from pytest_dotasks.run.verdicts import Finished, status_of, verdict_of, write_verdict
from pytest_dotasks.settings import Settings


def log_step_of(number: int) -> int | str:
    """The task log's ``step`` field for a step known by number (as ``Step.log_step``)."""
    ident = ident_of(number)
    return number if ident == str(number) else ident


@dataclasses.dataclass
class RunPorts:
    """What settling needs from the run around it."""

    settings: Settings
    log_for: Callable[[Path], TaskLog]
    plan_step: Callable[[Path, int], tuple[Step | None, StepConfig | None]]
    emit: Callable[..., None]  # emit(line, force=False)
    post_hook_checks: Callable[[Step], list[Any]]  # what pytest_dotasks_post_checks returned
    step_finished: Callable[[Step, str, bool, dict[str, Any]], None]  # step, task id, ok, properties


class BackgroundSteps:
    def __init__(self, ports: RunPorts) -> None:
        self.ports = ports
        self.monitor: Monitor | None = None
        self.finished: list[Finished] = []

    def _monitor(self) -> Monitor:
        if self.monitor is None:
            self.monitor = Monitor(self._lines, self._ended, on_warning=self._refused)
        return self.monitor

    def start(self, step: Step, cfg: StepConfig, task_id: str, env: dict[str, str]) -> bg.BgTask:
        assert cfg.run is not None
        task = bg.launch(task_id, step.number, step.path, cfg.run, step.path.parent, env,
                         cfg.monitor, cfg.monitor_every, cfg.alert, timeout=cfg.timeout)
        self.ports.log_for(step.path).event(
            task.task_id, f"Started in the background (pid {task.pid})", step=log_step_of(task.step), phase="background",
            event="started", pid=task.pid, command=cfg.run, output=str(task.output), monitor=cfg.monitor)
        self.ports.emit(f"[BACKGROUND] STEP {ident_of(task.step)} started (pid {task.pid}), output: {task.output}")
        self._monitor().watch(task)
        return task

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor.poll_once()

    def _refused(self, task: bg.BgTask, why: str) -> None:
        message = f"monitor: {why}; it is not tailed (a monitor: file must be a regular file)"
        self.ports.log_for(task.spec).event(task.task_id, message, step=log_step_of(task.step), phase="background",
                                            event="monitor_refused", file=task.monitor)
        self.ports.emit(f"⚠ STEP {ident_of(task.step)} [{task.task_id}]: {message}", force=True)

    def _lines(self, task: bg.BgTask, lines: list[str]) -> None:
        log = self.ports.log_for(task.spec)
        for line in lines:
            log.event(task.task_id, line, step=log_step_of(task.step), phase="background", event="monitor", file=task.monitor)
            hit = bg.alert_in(line, task.alerts)
            if hit:
                log.event(task.task_id, f"ALERT '{hit}' in {task.monitor}: {line}", step=log_step_of(task.step),
                          phase="background", event="alert", pattern=hit, line=line)
                self.ports.emit(f"⚠ ALERT STEP {ident_of(task.step)} [{task.task_id}]: '{hit}' in {task.monitor}: {line}",
                                force=True)
            else:
                self.ports.emit(f"[MONITOR] STEP {ident_of(task.step)}: {line}")

    # ------------------------------------------------------------ settling

    def _ended(self, task: bg.BgTask, state: str, code: int | None) -> None:
        self.settle(task, state, code)

    def settle(self, task: bg.BgTask, state: str, code: int | None) -> str | None:
        """Write the final marker of a finished background step (exactly once across processes)."""
        if not bg.claim(task):
            return None
        try:
            return self._settle_claimed(task, state, code)
        finally:
            bg.mark_settled(task)

    def _settle_claimed(self, task: bg.BgTask, state: str, code: int | None) -> str | None:
        log = self.ports.log_for(task.spec)
        marker = read_marker(task.spec, task.step)
        unmarked = self.ports.settings.no_mark  # --no-mark: the run's memory, not SPEC.md, says it is ours
        if not unmarked and (marker is None or marker.task_id != task.task_id or marker.status != STATUS_RUNNING):
            log.event(task.task_id, "background step finished; its marker was changed meanwhile, left as it is",
                      step=log_step_of(task.step), phase="background", event="finished", state=state, exit_code=code)
            return None
        if state != bg.EXITED:
            bg.kill_orphan(task)
        ok = state == bg.EXITED and code == 0
        detail = ""
        props: dict[str, Any] = {"exit_code": code}
        if ok:
            ok, detail = self._post(task, props)
        status = STATUS_DONE if ok else STATUS_FAILED
        settings = self.ports.settings
        try:
            if not (settings.no_mark or settings.dry_run):
                mark(task.spec, task.step, status, task.task_id, now_iso(), "" if ok else _note(task, state, code))
        except MarkError as exc:
            log.event(task.task_id, exc.one_line(), step=log_step_of(task.step), phase="mark", event="mark_failed")
        message = (f"STEP {ident_of(task.step)} finished in the background: exit {code}" if state == bg.EXITED
                   else f"STEP {ident_of(task.step)}: background process vanished (killed?)")
        log.event(task.task_id, message + ("" if ok else " - FAILED"), step=log_step_of(task.step), phase="background",
                  event="finished", state=state, exit_code=code, ok=ok, detail=detail)
        done = Finished(task, ok, message + (f"; {detail}" if detail else ""), props)
        self.finished.append(done)
        write_verdict(task, ok, done.message, props)
        step = self.ports.plan_step(task.spec, task.step)[0]
        if step is not None:
            self.ports.step_finished(step, task.task_id, ok, {"exit_code": code, "state": state, "detail": detail})
        if ok:
            self.ports.emit(f"[BACKGROUND] ✓ {message} [{task.task_id}]", force=True)
        else:
            why = f": {detail}" if detail else ""
            self.ports.emit(f"[BACKGROUND] ✗ {message}{why} [{task.task_id}]; output: {task.output}", force=True)
        return status

    def _post(self, task: bg.BgTask, props: dict[str, Any]) -> tuple[bool, str]:
        """Post-validation of a background step once its body has ended; its metrics and checks go to ``props``."""
        step, cfg = self.ports.plan_step(task.spec, task.step)
        if step is None or cfg is None:
            return True, ""
        checks, collector = bc.post_checks_for(cfg)
        checks += hook_checks("pytest_dotasks_post_checks", self.ports.post_hook_checks(step))
        if not checks:
            return True, ""
        settings = self.ports.settings
        env = dotasks_env(task.task_id, ident_of(task.step), task.spec, task.spec.parent)
        results = run_checks(checks, root=task.spec.parent, timeout=settings.post_timeout,
                             workers=settings.check_workers, env=env)
        log = self.ports.log_for(task.spec)
        for r in results:
            log.event(task.task_id, f"{r.name}: {'ok' if r.ok else 'FAILED'}", step=log_step_of(task.step), phase="post",
                      event="check", check=r.name, ok=r.ok, seconds=round(r.seconds, 3), severity=r.severity,
                      detail=r.detail[-2000:])
            props[f"check.{r.name}"] = "ok" if r.ok else "failed"
        if collector.values:
            log.event(task.task_id, "metrics: " + ", ".join(f"{k}={v:g}" for k, v in collector.values.items()),
                      step=log_step_of(task.step), phase="post", event="metrics", metrics=dict(collector.values))
        props.update({f"metric.{k}": v for k, v in collector.values.items()})
        failed = [r for r in results if r.blocking]
        return (not failed), "; ".join(f"{r.name}: {r.detail.splitlines()[0] if r.detail else 'failed'}"
                                      for r in failed)

    def reconcile(self, specs: list[Path]) -> None:
        """Settle background steps of earlier runs that ended (or vanished) since, and those
        marked ``⏳ Running`` whose state under ``.dotasks/`` is gone (``lost``)."""
        for spec in specs:
            for task in bg.tasks_for(spec):
                if bg.claimed(task):
                    continue
                state, code = bg.status(task)
                if state == bg.RUNNING:
                    self._monitor().watch(task)
                else:
                    self.settle(task, state, code)
            for number, task_id in _running_markers(spec):
                if bg.find(spec, task_id) is None:
                    self.lost(spec, number, task_id)

    def still_running(self, spec: Path, number: int, task_id: str | None) -> str | None:
        """Why STEP ``number``, marked ``⏳ Running``, must not start again; None if it may.

        With its state: running while its supervisor lives. Without (``.dotasks`` was
        deleted): running while a process carrying its task id lives (``lost``).
        """
        task = bg.find(spec, task_id)
        if task is not None:
            if bg.status(task)[0] == bg.RUNNING:
                return f"STEP {ident_of(number)} is still running in the background (pid {task.pid}) [task_id: {task_id}]"
            return None
        alive = self.lost(spec, number, task_id) if task_id else None
        if alive is not None:
            return (f"STEP {ident_of(number)} is still running in the background (pid {alive.pid}); its state under "
                    f".dotasks/ was lost [task_id: {task_id}]")
        return None

    def lost(self, spec: Path, number: int, task_id: str) -> bg.Carrier | None:
        """A background execution whose state folder is gone: its live supervisor, if any (``_lost``)."""
        return _lost(self.ports, self.finished, spec, number, task_id)
    def wait(self, spec: Path, dep: int, task_id: str | None, limit: float | None,
             heartbeat: float | None = None) -> str:
        """Block until STEP ``dep``'s background body ends; returns its final status.

        ``heartbeat``: every so many seconds, an always-shown line saying it still waits.
        """
        started = time.monotonic()
        task = bg.find(spec, task_id)
        while task is None:  # its state is gone: wait while a process carrying its task id runs
            alive = self.lost(spec, dep, task_id) if task_id else None
            if alive is None:
                task = bg.find(spec, task_id)  # written back by its supervisor as it ended?
                if task is None:
                    marker = read_marker(spec, dep)
                    return marker.status if marker is not None else STATUS_FAILED
                break
            if limit is not None and time.monotonic() - started > limit:
                return STATUS_RUNNING
            self.ports.emit(f"[WAIT] STEP {ident_of(dep)} is still running in the background (pid {alive.pid}), its state "
                            "lost; waiting...")
            time.sleep(1.0)
            task = bg.find(spec, task_id)
        self._monitor().watch(task)  # its lines keep reaching the log while we wait (xdist's controller too)
        start = last_beat = time.monotonic()
        announced = False
        while True:
            state, code = bg.status(task)
            if state != bg.RUNNING:
                if self.monitor is not None:
                    self.monitor.drain(task.task_id)  # its last lines before its verdict
                self.settle(task, state, code)
                deadline = time.monotonic() + 10
                while not bg.settled(task) and time.monotonic() < deadline:
                    time.sleep(0.05)
                return status_of(verdict_of(self.finished, spec, task.task_id), spec, dep, task.task_id)
            if limit is not None and time.monotonic() - start > limit:
                return STATUS_RUNNING
            if not announced:
                self.ports.emit(f"[WAIT] STEP {ident_of(dep)} is still running in the background (pid {task.pid}); waiting...")
                announced = True
            now = time.monotonic()
            if heartbeat is not None and now - last_beat >= heartbeat:
                last_beat = now
                self.ports.emit(f"[WAIT] STEP {ident_of(dep)} still running in the background (pid {task.pid}), "
                                f"{format_elapsed(now - start)} so far [{task.task_id}]", force=True)
            time.sleep(0.2)


def _lost(ports: RunPorts, finished: list[Finished], spec: Path, number: int, task_id: str) -> bg.Carrier | None:
    """A background execution whose state folder is gone: its live supervisor, if any.

    Found by the task id its processes carry. If its supervisor lives, it is
    still running (and writes its state back when it ends). If not, the step
    is settled once as ``✗ Failed (state lost)``; an orphaned body (its
    supervisor was killed) is stopped first: nobody would ever record its end.
    """
    found = bg.carriers(task_id)
    for c in found:
        if c.supervisor:
            return c
    if bg.find(spec, task_id) is not None:
        return None  # its supervisor ended just now and wrote its state back: settled as usual
    shell = bg.BgTask(task_id=task_id, step=number, spec=spec, state=bg.background_root(spec) / task_id,
                      command="", pid=0, starttime=None)
    settings = ports.settings
    marking = not (settings.no_mark or settings.dry_run)  # else nothing is recorded: a later run looks again
    if marking and not bg.claim(shell):
        deadline = time.monotonic() + 10  # another process settles it: its marker first, then we go on
        while not bg.settled(shell) and time.monotonic() < deadline:
            time.sleep(0.05)
        return None
    try:
        done = _settle_lost(ports, shell, found)
        if done is not None:
            finished.append(done)
    finally:
        if marking:
            bg.mark_settled(shell)
    return None


def _settle_lost(ports: RunPorts, task: bg.BgTask, orphans: list[bg.Carrier]) -> Finished | None:
    """Mark a background step whose state was lost ``✗ Failed (state lost)``, stopping its orphans."""
    marker = read_marker(task.spec, task.step)
    if marker is None or marker.task_id != task.task_id or marker.status != STATUS_RUNNING:
        return None
    settings = ports.settings
    pids = ", ".join(str(c.pid) for c in orphans)
    if not orphans:
        what = "no process of it is running"
    elif settings.dry_run:
        what = f"its body (pid {pids}) runs unsupervised (a dry run leaves it)"
    else:
        bg.kill_carriers(orphans)
        what = f"its supervisor is gone and its body (pid {pids}) ran unsupervised: stopped it"
    verdict = ("marked failed (state lost); it runs afresh when next selected"
               if not (settings.no_mark or settings.dry_run) else "not marked (--no-mark / --dry-run)")
    message = (f"STEP {ident_of(task.step)}: its background state {task.state} was deleted (rm -rf .dotasks? "
               f"git clean -X?) and {what}; {verdict}")
    log = ports.log_for(task.spec)
    try:
        if not (settings.no_mark or settings.dry_run):
            mark(task.spec, task.step, STATUS_FAILED, task.task_id, now_iso(), "(state lost)")
    except MarkError as exc:
        log.event(task.task_id, exc.one_line(), step=log_step_of(task.step), phase="mark", event="mark_failed")
    log.event(task.task_id, message, step=log_step_of(task.step), phase="background", event="state_lost", ok=False,
              orphans=[c.pid for c in orphans])
    step = ports.plan_step(task.spec, task.step)[0]
    if step is not None:
        ports.step_finished(step, task.task_id, False, {"state": "lost"})
    ports.emit(f"[BACKGROUND] ✗ {message} [{task.task_id}]", force=True)
    return Finished(task, False, message)


def _running_markers(spec: Path) -> list[tuple[int, str]]:
    """(step, task id) of each step marked ``⏳ Running`` in the plan file now."""
    try:
        if "⏳".encode() not in spec.read_bytes():
            return []  # the common case, without parsing
        parsed = parse_file(spec)
    except (OSError, DotasksError):
        return []
    return [(st.number, st.marker.task_id) for st in parsed.steps
            if st.marker.status == STATUS_RUNNING and st.marker.task_id]



def _note(task: bg.BgTask, state: str, code: int | None) -> str:
    """Why a background step failed, for its marker."""
    timed_out = _timed_out(task)
    if timed_out:
        return f"(timed out after {timed_out:g}s)"
    if state == bg.EXITED:
        return f"(exit {code})" if code else "(post-validation failed)"
    return "(process vanished)"


def _timed_out(task: bg.BgTask) -> float | None:
    try:
        data = json.loads((task.state / "exit.json").read_text())
    except (OSError, ValueError):
        return None
    return float(data["timeout"]) if data.get("timed_out") else None
