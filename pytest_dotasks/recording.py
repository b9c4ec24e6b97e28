"""``--record`` and ``--replay``: the pytest side of the cassette room.

Registered by ``plugin.py`` when either option is given, in every process
(xdist workers each run their own proxy for their own steps). For each step
that talks to the Messages API (an agent step, or a step with ``check:
anthropic``) the item asks ``open_step`` for its tape: the step's environment
then points ANTHROPIC_BASE_URL at the proxy, and JUnit shows ``replayed=true``
(or ``recorded=true``) and the cassette's path. A replay whose cassette is
missing or damaged fails in pre-flight (a ``cassette`` check); a replayed
request that differs from the recording fails the step with the first
difference (``--replay=lenient``: a warning); a missing cassette folder is a
usage error before anything runs. The proxy stops when pytest ends.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_dotasks import __version__
from pytest_dotasks.cassette.deck import Deck, StepTape
from pytest_dotasks.cassette.store import Header
from pytest_dotasks.cassette.tape import RECORD, REPLAY
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.items import DotasksWarning, StepItem
from pytest_dotasks.plan.fields import StepConfig
from pytest_dotasks.plan.model import Spec, Step
from pytest_dotasks.readiness import will_run
from pytest_dotasks.run.checks import Check, CheckContext, CheckResult
from pytest_dotasks.run.context import StepContext
from pytest_dotasks.run.tasklog import now_iso
from pytest_dotasks.session import DotasksRun

PROBED = "anthropic"  # a step with `check: anthropic` calls the API in pre-flight: it gets a tape too
RERECORD = "record it again with --record, or replay with --replay=lenient"


def register(config: pytest.Config, run: DotasksRun) -> None:
    """Check the options' combination and register the plugin (``plugin.pytest_configure``)."""
    s = run.settings
    if s.record and s.replay:
        raise pytest.UsageError("--record and --replay exclude each other: record where the API key is "
                                "(--record), replay where it is not (--replay)")
    if s.record_missing and not s.replay:
        raise pytest.UsageError("--record-missing works with --replay (replay what is recorded, record the rest)")
    config.pluginmanager.register(Recording(config, run), "dotasks-recording")


class Recording:
    def __init__(self, config: pytest.Config, run: DotasksRun) -> None:
        self.config = config
        self.settings = run.settings
        mode = RECORD if self.settings.record else REPLAY
        self.deck = Deck(mode, lenient=self.settings.replay == "lenient",
                         record_missing=bool(self.settings.record_missing),
                         upstream=os.environ.get("ANTHROPIC_BASE_URL") or None, save=not self.settings.dry_run)
        self.tapes: dict[str, StepTape] = {}  # item node id -> its tape
        self.by_step: dict[tuple[Path, int], StepTape] = {}
        self.ran: set[str] = set()  # node ids whose body ran (a recording is kept only then)

    # ------------------------------------------------------------ where cassettes live

    def folder(self, spec_path: Path) -> Path:
        """``cassettes/SPEC`` beside the plan, or ``DIR/SPEC`` for ``--cassettes DIR``."""
        value = self.settings.cassettes
        if not value:
            return spec_path.parent / "cassettes" / spec_path.stem
        base = Path(value).expanduser()
        if not base.is_absolute():
            source = self.settings.sources.get("cassettes", "")
            inipath = self.config.inipath
            anchor = inipath.parent if source.startswith("ini") and inipath is not None \
                else Path(self.config.invocation_params.dir)
            base = anchor / base
        return Path(os.path.abspath(base)) / spec_path.stem

    def shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(path)

    def taped(self, cfg: StepConfig) -> bool:
        if self.settings.verify:
            return False
        probed = any(c.command.strip() == PROBED for c in cfg.checks)
        return cfg.run is None or (probed and not cfg.background)

    # ------------------------------------------------------------ a step

    def open_step(self, item: StepItem, ctx: StepContext) -> dict[str, str]:
        """The step's tape: its environment goes into ``ctx.env``; returns its JUnit properties."""
        if not self.taped(item.cfg):
            return {}
        step = item.step
        path = self.folder(item.spec_path) / f"{step.name}.jsonl"
        shown = self.shown(path)
        backend = self.settings.agent_backend if item.cfg.run is None else "run"
        header = Header(plan=item.spec_path.name, step=step.ident, title=step.title, backend=backend,
                        recorded=now_iso(), by=f"pytest-dotasks {__version__}")
        st = self.deck.open(path, header, root=ctx.root, task_id=ctx.task_id, scrub=ctx.log.scrub, shown=shown)
        ctx.env.update(st.env)
        self.tapes[item.nodeid] = st
        self.by_step[(item.spec_path, step.number)] = st
        what = "replaying" if st.mode == REPLAY else "recording"
        ctx.log_event("preflight", "cassette", f"{what} {shown}", cassette=shown, mode=st.mode)
        return {"replayed" if st.mode == REPLAY else "recorded": "true", "cassette": shown}

    @pytest.hookimpl
    def pytest_dotasks_preflight_checks(self, step: Step, config: pytest.Config) -> list[Check] | None:
        st = self.by_step.get((step.path, step.number))
        if st is None or st.mode != REPLAY:
            return None
        problem, tape = st.problem, st.tape

        def cassette(ctx: CheckContext) -> CheckResult:
            if problem is not None:
                return CheckResult("cassette", False, problem.one_line())
            count = len(tape.cassette.exchanges) if tape.cassette else 0
            return CheckResult("cassette", True, f"{tape.shown}: {count} recorded exchange{'s' * (count != 1)}",
                               data={"exchanges": count})

        return [Check("cassette", cassette)]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        st = self.tapes.get(item.nodeid)
        if st is None or not isinstance(item, StepItem):
            return (yield)
        self.ran.add(item.nodeid)
        try:
            result = yield
        except Exception:
            self._after(item, st)  # a mismatch explains the failure better than the API error it caused
            raise
        self._after(item, st)
        return result

    def _after(self, item: StepItem, st: StepTape) -> None:
        ctx = item.runner.ctx if item.runner is not None else None
        if st.mode == RECORD and ctx is not None:
            count = len(st.tape.recorded)
            ctx.emit(f"[CASSETTE] {count} exchange{'s' * (count != 1)} recorded for {st.tape.shown}")
        warnings = st.tape.warnings
        if warnings:  # one warning a step; the task log has each
            more = f" (and {len(warnings) - 1} later request{'s' * (len(warnings) > 2)})" if len(warnings) > 1 else ""
            item.warn(DotasksWarning(f"STEP {item.step.ident} replay (lenient): {warnings[0]}{more}"))
        for warning in warnings:
            if ctx is not None:
                ctx.log_event("main", "replay_mismatch", warning, lenient=True)
        if not st.tape.mismatches:  # lenient mode keeps only "no reply left" here: there is nothing to go on with
            return
        first = st.tape.mismatches[0]
        if ctx is not None:
            ctx.log_event("main", "replay_mismatch", first, lenient=st.tape.lenient)
        item.failed_phase = "main"
        item._prop("failed_phase", "main")
        raise BodyFailed(f"STEP {item.step.ident} replay: {first} [{item.task_id}]", fix=RERECORD) from None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        st = self.tapes.pop(item.nodeid, None)
        if st is None or not isinstance(item, StepItem):
            return
        self.by_step.pop((item.spec_path, item.step.number), None)
        ran = item.nodeid in self.ran
        self.ran.discard(item.nodeid)
        written = self.deck.close(st, keep=ran)  # a recording stopped in pre-flight keeps no cassette
        log = item.run.log_for(item.spec_path)
        if written is not None:
            log.event(item.task_id, f"cassette written: {st.tape.shown}", step=item.step.log_step, phase="main",
                      event="cassette_written", cassette=st.tape.shown, exchanges=len(st.tape.recorded))
        unused = st.tape.unused() if ran and st.mode == REPLAY and not st.tape.mismatches else []
        if unused:
            note = f"{len(unused)} recorded request{'s' * (len(unused) != 1)} never asked for: {', '.join(unused)[:200]}"
            log.event(item.task_id, f"replay: {note}", step=item.step.log_step, phase="main", event="replay_unused",
                      cassette=st.tape.shown)
            item.warn(DotasksWarning(f"STEP {item.step.ident} replay: {note} ({st.tape.shown})"))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.deck.stop()

    # ------------------------------------------------------------ before anything runs

    def readiness_problems(self, spec: Spec, cfgs: dict[int, StepConfig], selected: set[int]) -> list[str]:
        """A replay whose plan has no cassette folder at all: one usage error, nothing run or marked."""
        if not self.settings.replay or self.settings.record_missing:
            return []
        taped = [s.number for s in spec.steps if s.number in selected and will_run(s, self.settings)
                 and self.taped(cfgs[s.number])]
        folder = self.folder(spec.path)
        if not taped or folder.is_dir():
            return []
        plural = "s" if len(taped) > 1 else ""
        problem = (f"--replay: the cassette folder {self.shown(folder)} does not exist "
                   f"(step{plural} {', '.join(map(str, taped))} would replay from it)")
        fix = (f"  fix: record first (pytest --spec {spec.path.name} --record), point --cassettes at the "
               "folder, or add --record-missing")
        return [problem, fix]
