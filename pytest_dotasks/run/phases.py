"""A step's phases: pre-flight, main (body) and post-validation.

Each phase raises a ``StepFailure`` that names the phase, the check and the
relevant output; the pytest item turns it into a setup error or a failure.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pytest_dotasks.errors import BodyFailed, PostFailed, PreflightFailed, StepFailure
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.model import Step
from pytest_dotasks.run import builtin_checks as bc
from pytest_dotasks.run.checks import ADVISORY, Check, CheckResult
from pytest_dotasks.run.context import AgentSession, BodyResult, StepContext, step_env
from pytest_dotasks.run.process import CAPTURED_CAP, LiveLines, Tail, captured_text, run_shell, tail


class PlanView(Protocol):
    """What a step needs to know of the rest of its plan in this run."""

    def producers(self, spec_path: Path, before: int) -> dict[str, int]: ...

    def is_selected(self, spec_path: Path, number: int) -> bool: ...

    def config_of(self, spec_path: Path, number: int) -> StepConfig | None: ...


@dataclasses.dataclass
class StepHooks:
    """What the pytest face hands a step's phases: its hooks, the agent, the terminal.

    ``extra_checks(hook_name, step)`` returns what the implementations of a
    check hook returned (``pytest_dotasks_preflight_checks`` / ``_post_checks``);
    ``run_checks`` is the ``pytest_dotasks_run_checks`` hook; ``open_agent`` and
    ``describe_agent`` open an agent session and render its prompt.
    """

    run_checks: Callable[..., list[CheckResult]]
    extra_checks: Callable[[str, Step], list[Any]]
    open_agent: Callable[[StepContext], AgentSession]
    describe_agent: Callable[[StepContext], str]
    verbose: bool = False
    live_stdout: bool = False  # pytest does not capture (-s): a command's output goes straight through


def _unique(checks: list[Check]) -> list[Check]:
    """Drop repeats by name (an input that is also a dependency's output)."""
    seen: set[str] = set()
    out = []
    for c in checks:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


def _symbol(res: CheckResult) -> str:
    return "✓" if res.ok else "✗"


def hook_checks(hook_name: str, returned: list[Any]) -> list[Check]:
    """Flatten what the implementations of a check hook returned.

    Each may return None, a ``Check`` or a list of them; a bare function is
    taken as a check named after it. Anything else becomes a failing check
    that says which hook returned what, instead of a plugin traceback.
    """
    out: list[Check] = []
    for value in returned:
        if value is None:
            continue
        items: list[Any] = [value]
        if not (isinstance(value, (Check, str, bytes)) or callable(value)):
            try:
                items = list(value)
            except TypeError:
                pass
        for obj in items:
            if isinstance(obj, Check):
                out.append(obj)
            elif callable(obj):
                out.append(Check(getattr(obj, "__name__", repr(obj)), obj))
            else:
                out.append(Check(f"{hook_name} result", _failing(
                    f"{hook_name} returned {type(obj).__name__} {obj!r:.60}, not a Check")))
    return out


def _failing(message: str) -> Any:
    def fn(ctx: Any) -> tuple[bool, str]:
        return False, message

    return fn


class StepRunner:
    """Runs one execution of one step (one task id)."""

    def __init__(self, plan: PlanView, hooks: StepHooks, ctx: StepContext, cfg: StepConfig) -> None:
        self.plan = plan
        self.hooks = hooks
        self.ctx = ctx
        self.cfg = cfg
        self.seconds: dict[str, float] = {}
        self.results: dict[str, list[CheckResult]] = {}
        self.metrics: dict[str, float] = {}
        self.session: AgentSession | None = None
        self._hook_post: list[Check] | None = None

    @property
    def advisories(self) -> list[CheckResult]:
        """Failed advisory checks of the latest run of each phase (a retried post counts once)."""
        return [r for phase in ("preflight", "post") for r in self.results.get(phase, [])
                if not r.ok and r.severity == ADVISORY]

    # ------------------------------------------------------------ checks

    def _run_phase(self, phase: str, checks: list[Check], timeout: float) -> list[CheckResult]:
        if not checks:
            return []
        label = {"preflight": "PRE-FLIGHT", "post": "POST"}[phase]
        self.ctx.emit(f"[{label}] Parallel checks ({len(checks)})...")
        results = self.hooks.run_checks(checks=checks, phase=phase, ctx=self.ctx, timeout=timeout,
                                        workers=self.ctx.settings.check_workers)
        for res in results:
            advisory = not res.ok and res.severity == ADVISORY
            # A failure says why; a success only when it measured something
            # (the seed's "✓ Character consistency: 97%", record counts).
            first = res.detail.splitlines()[0] if res.detail and (not res.ok or res.data) else ""
            self.ctx.emit(f"  {_symbol(res)} {res.name}" + (" (advisory)" if advisory else "")
                          + (f": {first}" if first else "") + f" [{res.seconds:.1f}s]")
            status = "ok" if res.ok else ("FAILED (advisory)" if advisory else "FAILED")
            extra: dict[str, Any] = {"data": res.data} if res.data else {}
            self.ctx.log_event(phase, "check", f"{res.name}: {status}", check=res.name,
                               ok=res.ok, seconds=round(res.seconds, 3), severity=res.severity,
                               timed_out=res.timed_out, detail=res.detail[-2000:], **extra)
        self.results[phase] = results
        return results

    def _raise_blocking(self, results: list[CheckResult], error: type[StepFailure], phase: str) -> None:
        """Raise ``error`` naming the blocking failures among ``results``, if there are any."""
        failed = [r for r in results if r.blocking]
        if failed:
            names = ", ".join(r.name for r in failed)
            raise error(f"STEP {self.ctx.step.ident} {phase} failed: {names} [{self.ctx.task_id}]",
                        detail=self._failure_text(failed))

    @staticmethod
    def _failure_text(failed: list[CheckResult]) -> str:
        out = []
        for r in failed:
            first, *rest = (r.detail or "failed").splitlines() or ["failed"]
            out.append(f"  ✗ {r.name}: {first}")
            out.extend(f"      {ln}" for ln in rest[-15:])
        return "\n".join(out)

    def preflight_checks(self) -> list[Check]:
        cfg, step = self.cfg, self.ctx.step
        checks: list[Check] = [bc.requires_check(m) for m in cfg.requires]
        checks += [bc.env_check(n) for n in cfg.env]
        dry = self.ctx.settings.dry_run
        producers = self.plan.producers(self.ctx.spec_path, step.number)
        for pattern in cfg.inputs:
            producer = producers.get(pattern)
            planned = dry and producer is not None and self.plan.is_selected(self.ctx.spec_path, producer)
            checks.append(bc.input_check(pattern, producer=producer, planned=planned))
        for dep in cfg.needs:
            dep_cfg = self.plan.config_of(self.ctx.spec_path, dep)
            if dep_cfg is None:
                continue
            planned = dry and self.plan.is_selected(self.ctx.spec_path, dep)
            checks += [bc.input_check(o.pattern, producer=dep, planned=planned) for o in dep_cfg.outputs]
        checks = _unique(checks)  # an input that is also a dependency's output is checked once
        probes = bc.named_probe_names()
        for cmd in cfg.checks:
            if cmd.command.strip() in probes:
                checks.append(bc.probe_check(cmd.command.strip(), cmd.severity))
            else:
                checks.append(bc.shell_check(cmd, "preflight"))
        checks += hook_checks("pytest_dotasks_preflight_checks",
                              self.hooks.extra_checks("pytest_dotasks_preflight_checks", step))
        return checks

    def post_checks(self) -> list[Check]:
        """The step's post-validation; the hook is asked once per step (its checks serve every attempt)."""
        checks, self._collector = bc.post_checks_for(self.cfg)
        if self._hook_post is None:
            self._hook_post = hook_checks("pytest_dotasks_post_checks",
                                          self.hooks.extra_checks("pytest_dotasks_post_checks", self.ctx.step))
        return checks + self._hook_post

    def has_post_checks(self) -> bool:
        """Whether anything but the body's own word decides this step (outputs, validate, metrics, hooks)."""
        return bool(self.post_checks())

    def preflight(self) -> None:
        t0 = time.monotonic()
        try:
            results = self._run_phase("preflight", self.preflight_checks(), self.ctx.settings.preflight_timeout)
        finally:
            self.seconds["preflight"] = time.monotonic() - t0
        self._raise_blocking(results, PreflightFailed, "pre-flight")

    def post(self) -> None:
        t0 = time.monotonic()
        try:
            checks = self.post_checks()
            if not checks and not self.cfg.run:
                self.ctx.emit("[POST] unverified: no checks, the agent's word only")
                self.ctx.log_event("post", "unverified", "unverified: no checks, the agent's word only")
            results = self._run_phase("post", checks, self.ctx.settings.post_timeout)
        finally:
            self.seconds["post"] = self.seconds.get("post", 0.0) + time.monotonic() - t0
        collector = getattr(self, "_collector", None)
        found: dict[str, float] = dict(collector.values) if collector is not None else {}
        for r in results:
            # A custom check's numbers (CheckResult.data) are metrics too.
            for k, v in r.data.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "records":
                    found.setdefault(k, float(v))
        if found:
            self.metrics.update(found)
            self.ctx.log_event("post", "metrics", "metrics: " + ", ".join(f"{k}={v:g}" for k, v in found.items()),
                               metrics=found)
        self._raise_blocking(results, PostFailed, "post-validation")

    # ------------------------------------------------------------ body

    def describe_body(self) -> str:
        if self.cfg.run:
            return f"$ {self.cfg.run}"
        return self.hooks.describe_agent(self.ctx)

    def body(self, feedback: str | None = None) -> BodyResult:
        t0 = time.monotonic()
        try:
            if self.cfg.run:
                return self._run_command()
            return self._run_agent(feedback)
        finally:
            self.seconds["main"] = self.seconds.get("main", 0.0) + time.monotonic() - t0

    def _run_command(self) -> BodyResult:
        cmd = self.cfg.run
        assert cmd is not None
        self.ctx.emit(f"[MAIN] $ {cmd}")
        self.ctx.log_event("main", "command_start", f"running: {cmd}", command=cmd)
        out_dir = self.ctx.state_dir / "output"
        out_file: Path | None = out_dir / f"{self.ctx.task_id}.log"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.ctx.log_event("main", "output_file", f"output not kept in a file: cannot create {out_dir}: "
                               f"{exc.strerror}")
            out_file = None
        live = LiveLines(self.ctx.emit) if self.hooks.verbose else None
        shown = Tail(CAPTURED_CAP)  # the tail pytest captures; ours even if the command is interrupted

        def on_output(text: str) -> None:
            if self.hooks.live_stdout:
                sys.stdout.write(text)  # -s: straight to the terminal, as it comes
                sys.stdout.flush()
            if live is not None:
                live.add(text)

        # Only what is needed per block: no callback without a live view, no decoding without a secret.
        watch = on_output if live is not None or self.hooks.live_stdout else None
        redact = self.ctx.log.scrub if self.ctx.log.secrets else None
        try:
            res = run_shell(cmd, self.ctx.root, timeout=self.cfg.timeout, env=step_env(self.ctx),
                            on_output=watch, tee=out_file, redact=redact, kept=shown)
        finally:
            if live is not None:
                live.close(out_file)
            if not self.hooks.live_stdout:
                print(captured_text(shown, out_file), end="")  # pytest's captured output: a bounded tail
        self.ctx.log_event("main", "command_end", f"exit {res.returncode}", command=cmd,
                           exit_code=res.returncode, seconds=round(res.seconds, 3), timed_out=res.timed_out,
                           output_tail=tail(res.output, 10), output_file=str(out_file or ""))
        if out_file is not None:
            self.ctx.properties["output_file"] = str(out_file)
        if res.timed_out:
            return BodyResult(False, f"`{cmd}` timed out after {self.cfg.timeout:g}s", res.output)
        if res.returncode != 0:
            return BodyResult(False, f"`{cmd}` exited {res.returncode}", res.output)
        return BodyResult(True, f"`{cmd}` exited 0", res.output)

    def _run_agent(self, feedback: str | None) -> BodyResult:
        """The agent's attempt. The live line names the agent that actually runs: the session's
        optional ``agent_name`` and ``note`` (the built-in agent standing in for a missing one), else
        the one asked for (a session from a ``pytest_dotasks_agent_session`` hook may lack them)."""
        if self.session is None:
            self.session = self.hooks.open_agent(self.ctx)
        name = getattr(self.session, "agent_name", None) or self.ctx.step.value("agent") or self.ctx.settings.agent
        note = getattr(self.session, "note", "")
        self.ctx.emit(f"[MAIN] Executing with {name} agent{f' ({note})' if note else ''}..." if feedback is None
                      else f"[MAIN] Sending the failure back to {name}...")
        result: BodyResult = self.session.run(feedback)
        return result

    def close(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            finally:
                self.session = None

    def main_and_post(self) -> BodyResult:
        """Body then post-validation, retried ``retries:`` times; raises on failure."""
        attempts = 1 + self.cfg.retries
        feedback: str | None = None
        result = BodyResult(False, "not run")
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.ctx.log_event("main", "retry", f"attempt {attempt} of {attempts}", attempt=attempt,
                                   feedback=self.ctx.log.scrub((feedback or "")[-2000:]))
            result = self.body(feedback)
            self.ctx.properties.update(result.properties)
            if not result.ok:
                failure: Exception = BodyFailed(
                    f"STEP {self.ctx.step.ident} failed in main: {result.summary} [{self.ctx.task_id}]",
                    detail=tail(result.output, 20),
                )
                feedback = f"The step failed: {result.summary}\n{tail(result.output, 40)}"
            else:
                try:
                    self.post()
                    return result
                except PostFailed as exc:
                    failure = exc
                    feedback = f"The work finished but post-validation failed:\n{exc.render()}"
            if attempt == attempts:
                raise failure
        return result
