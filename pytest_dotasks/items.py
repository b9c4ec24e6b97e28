"""The pytest side of a plan: a collector for the file and an item per step."""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dotasks.errors import DotasksError, PreflightFailed, SpecError, StepFailure
from pytest_dotasks.gate import may_start, require_done, skip_here
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.model import Step
from pytest_dotasks.run.context import StepContext, new_task_id
from pytest_dotasks.run.phases import StepHooks, StepRunner
from pytest_dotasks.session import DotasksRun
from pytest_dotasks.stash import RUN_KEY


class DotasksWarning(pytest.PytestWarning):
    """A plan-file problem that is not an error (a misspelt field)."""


def exact_keyword(name: str | int) -> str:
    # pytest -k matches substrings, so "step1" would also pick step10-19 (and T001 T0010).
    # plugin.py rewrites a bare step name in -k to this bracketed form, which
    # only that step carries and no other step name contains.
    return f"[step{name}]" if isinstance(name, int) else f"[{name.lower()}]"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class SpecFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from pytest_dotasks.plan.marking import seed_cache
        from pytest_dotasks.plan.specmd import parse_with_configs, read_text

        run: DotasksRun = self.config.stash[RUN_KEY]
        try:
            text = read_text(self.path)
            spec, cfgs = parse_with_configs(text, self.path)  # fields and the needs graph validated
        except SpecError as exc:
            raise self.CollectError(exc.one_line()) from None
        if not spec.steps:  # a named plan: a file with no step (or an empty one) is said, never "no tests ran"
            from pytest_dotasks.plan.formats.diagnose import no_step_at_all

            raise self.CollectError(no_step_at_all(text, self.path, spec.fmt).one_line())
        # The marker needs the header lines of this very text: no second parse.
        seed_cache(text, spec.header_lines())
        # Under -n every worker collects the plan: one of them says what is wrong with it.
        says = getattr(self.config, "workerinput", {}).get("workerid", "gw0") == "gw0"
        for w in spec.warnings if says else ():
            where = w.partition(": ")[0]
            file, _, line = where.rpartition(":")
            warnings.warn_explicit(DotasksWarning(w), DotasksWarning, file or str(self.path),
                                   int(line) if line.isdigit() else 0)
        if says and any(c.run is None for c in cfgs.values()):  # agent steps: their definitions, once per file
            from pytest_dotasks.agent.definitions import definition_warnings

            for problem in definition_warnings(self.path.parent):
                warnings.warn_explicit(DotasksWarning(problem.show(self.path.parent)), DotasksWarning,
                                       str(problem.path), problem.line)
        run.add_spec(spec, cfgs)
        timeout_plugin = self.config.pluginmanager.hasplugin("timeout")
        kinds: dict[str, pytest.MarkDecorator] = {}  # one decorator per kind (and one strict-markers check)
        phases: dict[str, str] = {}
        for step in spec.steps:
            cfg = cfgs[step.number]
            item = StepItem.from_parent(self, name=step.name, step=step, cfg=cfg)
            if cfg.kind:
                mark = kinds.get(cfg.kind)
                if mark is None:
                    mark = kinds[cfg.kind] = getattr(pytest.mark, cfg.kind)
                item.add_marker(mark)
            if cfg.timeout and timeout_plugin:
                item.add_marker(pytest.mark.timeout(cfg.timeout))
            item.extra_keyword_matches.add(exact_keyword(step.name))
            for label in step.labels:  # Spec Kit's [US1], [P]: keyword and (registered) marker
                self.config.addinivalue_line("markers", f"{label}: Spec Kit task label [{label}]")
                item.add_marker(label)
                item.extra_keyword_matches.add(label)
            if step.phase:
                slug = phases.get(step.phase)
                if slug is None:
                    slug = phases[step.phase] = _slug(step.phase)
                item.extra_keyword_matches.add(slug)
                item.extra_keyword_matches.add(step.phase)
            yield item


class StepItem(pytest.Item):
    def __init__(self, *, step: Step, cfg: StepConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.cfg = cfg
        self.task_id: str | None = None
        self.runner: StepRunner | None = None
        self.failed_phase: str | None = None
        self.background_started = False
        self.effective_timeout: float | None = None  # set by pytest-timeout's hook (timeouts.py)
        # Fixture support for a non-Python item, as pytest-markdown-docs does:
        # autouse and usefixtures fixtures (and dotasks_step & co.) work for steps.
        self.funcargs: dict[str, Any] = {}
        self._fixtureinfo = _fixture_info(self)
        self.fixturenames = self._fixtureinfo.names_closure

    @property
    def spec_path(self) -> Path:
        return self.step.path

    @property
    def run(self) -> DotasksRun:
        return self.config.stash[RUN_KEY]

    def __repr__(self) -> str:
        # What --collect-only prints: the step's title, not just its name.
        from pytest_dotasks.status import state_label

        kind = f" [{self.cfg.kind}]" if self.cfg.kind else ""
        return f"<StepItem {self.name}: {self.step.title}{kind} ({state_label(self.step.marker)})>"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.step.line - 1, f"STEP {self.step.ident}: {self.step.title}"

    # ------------------------------------------------------------ phases

    def _prop(self, name: str, value: Any) -> None:
        self.user_properties = [(k, v) for k, v in self.user_properties if k != name]
        self.user_properties.append((name, value))

    def setup(self) -> None:
        run = self.run
        self._prop("dotasks_step", self.step.number)  # the internal int key (N for STEP N)
        self._prop("dotasks_spec", str(self.spec_path))
        self._prop("title", self.step.title)
        self._prop("step", self.step.log_step)
        self._prop("kind", self.cfg.kind or "quick")
        task_id = claim_step(self, run)  # this process executes the step now: a concurrent run skips it
        if run.settings.verify:
            require_done(self)
        else:
            may_start(self, run)
        self.task_id = task_id
        self._prop("task_id", self.task_id)
        if not self.cfg.run:
            self._prop("agent", self.cfg.agent or run.settings.agent)
        log = run.log_for(self.spec_path)
        ctx = StepContext(
            step=self.step, task_id=self.task_id, root=self.spec_path.parent, spec_path=self.spec_path,
            log=log, settings=run.settings, state_dir=run.state_dir(self.spec_path), ini_path=self.config.inipath,
            emit=lambda line: run.emit(log.scrub(line)),
        )
        ctx.extra["model_aliases"] = self.config.getini("dotasks_model_aliases")

        def adjust(prompt: str) -> str:
            new = self.config.hook.pytest_dotasks_adjust_prompt(ctx=ctx, prompt=prompt)
            return prompt if new is None else str(new)

        ctx.extra["adjust_prompt"] = adjust
        recording = self.config.pluginmanager.get_plugin("dotasks-recording")
        for k, v in (recording.open_step(self, ctx) if recording is not None else {}).items():
            self._prop(k, v)  # --record/--replay: the step's tape (replayed=true, cassette=PATH)
        self.runner = StepRunner(run, self._hooks(), ctx, self.cfg)
        from _pytest.fixtures import TopRequest

        self._request = TopRequest(self, _ispytest=True)  # type: ignore[arg-type]
        self._request._fillfixtures()
        self._check_verifiable(run)
        run.emit("")
        run.emit(f"[TASK ID: {self.task_id}] STEP {self.step.ident}: {self.step.title}{self._timeout_note()}")
        log.event(self.task_id, f"Starting Step {self.step.ident}: {self.step.title}", step=self.step.log_step,
                  phase="preflight", event="start", title=self.step.title, kind=self.cfg.kind,
                  spec=str(self.spec_path), worker=getattr(self.config, "workerinput", {}).get("workerid"))
        if run.settings.verify:
            return  # a re-check runs post-validation only
        try:
            self.runner.preflight()
        except StepFailure:
            self.failed_phase = "preflight"
            self._prop("failed_phase", "preflight")
            raise
        finally:
            self._prop("seconds_preflight", round(self.runner.seconds.get("preflight", 0.0), 3))

    def _timeout_note(self) -> str:
        """The limit pytest-timeout applies to this step, and where it comes from (marker > option > ini)."""
        if self.effective_timeout is None:
            return ""
        source = "its timeout: field, which wins over --timeout" if self.cfg.timeout else "--timeout or the ini"
        return f" (timeout {self.effective_timeout:g}s from {source})"

    def _check_verifiable(self, run: DotasksRun) -> None:
        """An agent step with no post-validation passes on the agent's word alone: say so, or refuse it."""
        assert self.runner is not None
        has_checks = self.runner.has_post_checks()
        verified = bool(self.cfg.run) or has_checks  # a command is judged by its exit status
        self._prop("verified", "true" if verified else "false")
        if run.settings.verify and not has_checks:
            skip_here(f"STEP {self.step.ident} has no post-validation: nothing to re-check (--verify)")
        if verified:
            return
        if run.settings.require_checks:
            self.task_id = None  # refused before it started: nothing is marked
            self.failed_phase = "preflight"
            self._prop("failed_phase", "preflight")
            raise PreflightFailed(
                f"STEP {self.step.ident} is unverified: no outputs, validate, metrics or hook check, "
                "and --require-checks refuses a pass on the agent's word alone",
                path=self.spec_path, line=self.step.line,
                fix=f"add '- outputs: FILE' or '- validate: COMMAND' under STEP {self.step.ident}, "
                    "or run without --require-checks")

    def _hooks(self) -> StepHooks:
        hook, config = self.config.hook, self.config

        def extra_checks(name: str, step: Step) -> list[Any]:
            result: list[Any] = getattr(hook, name)(step=step, config=config)
            return result

        def describe_agent(ctx: StepContext) -> str:
            from pytest_dotasks.agent.launch import render_prompt

            return render_prompt(ctx)

        return StepHooks(
            run_checks=hook.pytest_dotasks_run_checks, extra_checks=extra_checks,
            open_agent=lambda ctx: hook.pytest_dotasks_agent_session(ctx=ctx),
            describe_agent=describe_agent, verbose=config.get_verbosity() > 0,
            live_stdout=config.getoption("capture", "fd") == "no",
        )

    def runtest(self) -> None:
        assert self.runner is not None
        run = self.run
        verify = run.settings.verify  # a re-check: post-validation only
        if run.settings.dry_run and not verify:
            text = self.runner.describe_body()
            for line in text.splitlines():
                run.emit(f"  {line}")
            print(text)
            run.outcomes[(self.spec_path, self.step.number)] = "dry"
            self.runner.ctx.log_event("main", "dry_run", "dry run: body not run")
            skip_here("dry run: pre-flight passed, body not run")
        if self.cfg.background and self.cfg.run and not verify:
            from pytest_dotasks.run.context import step_env

            task = run.background.start(self.step, self.cfg, self.runner.ctx.task_id, step_env(self.runner.ctx))
            self.background_started = True
            run.started_bg[(self.spec_path, self.step.number)] = task.task_id
            self._prop("background", "started")
            self._prop("bg_pid", task.pid)
            self._prop("bg_output", str(task.output))
            if task.monitor:
                self._prop("bg_monitor", task.monitor)
            return
        if self.cfg.background and not verify:
            self.runner.ctx.log_event("main", "foreground", "background: yes needs a run: command; "
                                      "the agent runs in the foreground")
        t0 = time.monotonic()
        try:
            with run.live.heartbeat(f"STEP {self.step.ident}", run.settings.heartbeat):
                if verify:
                    self.runner.post()
                else:
                    self.runner.main_and_post()
            self.runner.ctx.log_event("main", "passed", f"STEP {self.step.ident} passed"
                                      + (" its re-check (--verify)" if verify else ""),
                                      seconds=round(time.monotonic() - t0, 3))
            for adv in self.runner.advisories:
                self.warn(DotasksWarning(
                    f"STEP {self.step.ident} advisory check failed: {adv.name}: {adv.detail.splitlines()[0] if adv.detail else ''}"))
        except StepFailure as exc:
            self.failed_phase = exc.phase
            self._prop("failed_phase", exc.phase)
            self.runner.ctx.log_event(exc.phase, "failed", exc.one_line(), detail=self.runner.ctx.log.scrub(exc.detail or ""))
            raise
        finally:
            self.runner.close()
            for phase in ("main", "post"):
                if phase in self.runner.seconds:
                    self._prop(f"seconds_{phase}", round(self.runner.seconds[phase], 3))
            for k, v in self.runner.ctx.properties.items():
                self._prop(k, v)
            for k, v in self.runner.metrics.items():
                self._prop(f"metric.{k}", v)
            log_path = run.log_for(self.spec_path).path
            print(f"[[ATTACHMENT|{log_path}]]")
            for key in ("output_file", "transcript"):
                if key in self.runner.ctx.properties:
                    print(f"[[ATTACHMENT|{self.runner.ctx.properties[key]}]]")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        text = self._short_failure(excinfo)
        if text is None:
            return super().repr_failure(excinfo, style=style)
        # Reports reach the terminal and JUnit: no secret in them.
        return self.run.log_for(self.spec_path).scrub(text)

    def _short_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
        exc = excinfo.value
        if self.run.settings.full_trace:
            return None
        grep = (f"\nlog: grep {self.task_id} {self.run.log_for(self.spec_path).path}" if self.task_id else "")
        if is_timeout(exc):
            phase = self.failed_phase or "main"
            tid = f" [{self.task_id}]" if self.task_id else ""
            return f"STEP {self.step.ident} timed out in {phase}: {str(exc).strip()}{tid}{grep}"
        if isinstance(exc, DotasksError):
            return exc.render() + grep
        return None


def _fixture_info(item: StepItem) -> Any:
    """The item's fixture closure, worked out once per plan file.

    A step item has no function, no parametrization and, when it is made, no marker
    of its own (kind and label markers are added after), so what pytest finds for it
    (autouse fixtures, usefixtures marks, their closure) depends on its file's node
    chain only: the same for every step of the file. Each item gets its own copies.
    """
    parent = item.parent
    shared = getattr(parent, "_dotasks_fixtureinfo", None)
    if shared is None or item.own_markers:
        info = item.session._fixturemanager.getfixtureinfo(node=item, func=None, cls=None)
        if parent is not None and not item.own_markers:
            parent._dotasks_fixtureinfo = info  # type: ignore[attr-defined]
        shared = info
    return dataclasses.replace(shared, names_closure=list(shared.names_closure),
                               name2fixturedefs=dict(shared.name2fixturedefs))


def claim_step(item: StepItem, run: DotasksRun) -> str:
    """Claim ``item``'s step for this process until its teardown (``run.claims.for_step``); its new task id."""
    from pytest_dotasks.run.claims import for_step

    task_id = new_task_id(item.step.ident)
    claim, skip = for_step(item.spec_path, item.step.number, task_id, item.step.marker, run.settings.redo)
    if claim is not None:
        item.addfinalizer(claim.release)
    if skip:
        run.outcomes[(item.spec_path, item.step.number)] = "skipped"
        pytest.skip(skip)
    return task_id


def is_timeout(exc: BaseException) -> bool:
    """pytest-timeout's signal method fails the test with "Timeout (>Ns) from pytest-timeout"."""
    return isinstance(exc, pytest.fail.Exception) and "Timeout" in str(exc)

