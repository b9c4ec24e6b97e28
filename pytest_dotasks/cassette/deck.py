"""The deck: every tape of one pytest process, and the proxy that plays them.

The pytest face asks the deck for a step's tape when the step starts
(``open``) and gives it back when the step ends (``close``). The deck starts
the proxy the first time a step needs it (a millisecond) and stops it with
the run. A step's tape comes with the environment its agent and checks need
(``StepTape.env``): the proxy's base URL for the step, and when replaying a
placeholder key, since no key is needed and the SDKs will not start without
one. A replay whose cassette is missing or damaged still gets a tape (an
empty one), so nothing the step runs can reach the network; the problem is
kept for the pre-flight check that reports it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from pytest_dotasks.cassette import store
from pytest_dotasks.cassette.proxy import Proxy
from pytest_dotasks.cassette.store import CassetteError, Header
from pytest_dotasks.cassette.tape import RECORD, REPLAY, Tape
from pytest_dotasks.plan.model import ident_of

DEFAULT_UPSTREAM = "https://api.anthropic.com"
PLACEHOLDER_KEY = "sk-ant-dotasks-replay-needs-no-key"  # never sent anywhere: the proxy answers replays itself
LOOPBACK = "127.0.0.1"
_NO_PROXY = ("NO_PROXY", "no_proxy")
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclasses.dataclass
class StepTape:
    """A step's tape, the environment it needs, and (replaying) why it cannot replay."""

    tape: Tape
    env: dict[str, str]
    problem: CassetteError | None = None

    @property
    def mode(self) -> str:
        return self.tape.mode


def header_problem(recorded: Header, wanted: Header) -> str | None:
    """Why a cassette is not this step's (another plan, another step, another backend), or None."""
    step, want = _ident(recorded.step), _ident(wanted.step)
    if step != want or " ".join(recorded.title.split()) != " ".join(wanted.title.split()):
        return (f"was recorded for STEP {step} \"{recorded.title}\" of {recorded.plan}, not for "
                f"STEP {want} \"{wanted.title}\" of {wanted.plan}: it belongs to another plan or step")
    if recorded.plan != wanted.plan:
        return f"was recorded for {recorded.plan}, not {wanted.plan}: it belongs to another plan"
    if recorded.backend != wanted.backend:
        return (f"was recorded with --agent-backend {recorded.backend}; this run uses {wanted.backend}: "
                f"replay with --agent-backend {recorded.backend}")
    return None


def _ident(step: str) -> str:
    """A header's step as users name it: a lettered step's internal number (``number_of("2A")``, which a
    header may hold, e.g. one written by hand or by an older version) becomes its id again."""
    internal = step.isascii() and step.isdigit() and step[0] != "0" and 10 <= len(step) < 40  # >= 10**9
    return ident_of(int(step)) if internal else step


def with_loopback(value: str | None) -> str:
    """A NO_PROXY value that also exempts 127.0.0.1 (the proxy must be reached directly)."""
    hosts = [h.strip() for h in (value or "").split(",") if h.strip()]
    return ",".join(hosts if LOOPBACK in hosts or "*" in hosts else [*hosts, LOOPBACK])


def no_proxy() -> str:
    """This environment's NO_PROXY (the lower-case spelling wins, as for urllib and httpx), plus 127.0.0.1."""
    return with_loopback(os.environ.get("no_proxy") or os.environ.get("NO_PROXY"))


class Deck:
    """The tapes of this process (see the module docstring)."""

    def __init__(self, mode: str, *, lenient: bool = False, record_missing: bool = False,
                 upstream: str | None = None, save: bool = True) -> None:
        assert mode in (RECORD, REPLAY)
        self.mode = mode
        self.lenient = lenient
        self.record_missing = record_missing
        self.upstream = (upstream or DEFAULT_UPSTREAM).rstrip("/")
        self.save = save  # --dry-run: nothing is written
        self.proxy: Proxy | None = None
        self._saved_env: dict[str, str | None] = {}

    # ------------------------------------------------------------ proxy

    def _proxy(self) -> Proxy:
        if self.proxy is None:
            self.proxy = Proxy(self.upstream).start()
            # The SDK in this process reads proxy settings from os.environ: make sure it reaches
            # 127.0.0.1 directly even where HTTPS_PROXY is set (restored by stop()).
            if any(os.environ.get(v) for v in _PROXY_VARS):
                value = no_proxy()
                for name in _NO_PROXY:
                    self._saved_env[name] = os.environ.get(name)
                    os.environ[name] = value
        return self.proxy

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    # ------------------------------------------------------------ steps

    def open(self, path: Path, header: Header, *, root: Path, task_id: str,
             scrub: Callable[[str], str] = lambda s: s, shown: str | None = None) -> StepTape:
        """The tape for one step execution, registered with the proxy."""
        problem: CassetteError | None = None
        cassette = None
        mode = self.mode
        if mode == REPLAY:
            try:
                cassette = store.read(path)
                why = header_problem(cassette.header, header)
                if why is not None:
                    cassette = None
                    problem = CassetteError(f"cassette {why}", path=shown or path, fix=store.RERECORD)
            except CassetteError as exc:
                if self.record_missing and not path.exists():
                    mode = RECORD
                else:
                    problem = CassetteError(exc.message, path=shown or path, line=exc.line, fix=exc.fix)
        homes = [os.path.expanduser("~"), os.environ.get("CLAUDE_CONFIG_DIR", "")]
        tape = Tape(mode, path, header, root=root, task_id=task_id, scrub=scrub, shown=shown,
                    cassette=cassette, lenient=self.lenient, homes=homes)
        proxy = self._proxy()
        env = {"ANTHROPIC_BASE_URL": proxy.add(tape)}
        for name in _NO_PROXY:
            env[name] = no_proxy()
        if mode == REPLAY:
            env["ANTHROPIC_API_KEY"] = PLACEHOLDER_KEY
        return StepTape(tape, env, problem)

    def close(self, step_tape: StepTape, keep: bool = True) -> Path | None:
        """The step ended: stop serving its tape; a recording writes its cassette (returned) if ``keep``."""
        if self.proxy is not None:
            self.proxy.remove(step_tape.tape)
        return step_tape.tape.close(save=self.save and keep and step_tape.problem is None)
