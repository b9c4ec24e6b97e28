"""Every option in one table, and one resolver: command line > ini > default.

Each option has a command-line flag and an ini twin sharing one help text.
Errors name where a bad value came from ("--preflight-timeout 'abc' from the
command line"), as pytest-timeout does. This module imports nothing from
pytest so it can be unit-tested directly; ``plugin.py`` registers the table.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.durations import parse_duration
from pytest_dotasks.plan.selection import parse_steps

_WHOLE = re.compile(r"^\+?(\d{1,18})$", re.ASCII)
_AMOUNT = re.compile(r"^\$?\s*(\d{1,12}(?:\.\d{1,12})?|\.\d{1,12})$", re.ASCII)
_LONGEST = 30 * 86400.0  # a timeout or heartbeat option: at most 30d (as a step's timeout: field)


def _ascii(text: str) -> str:
    """``text`` stripped; a digit outside ASCII ("١", "３") is refused, naming the ASCII form."""
    text = str(text).strip()
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        fixed = "".join(str(unicodedata.digit(ch)) if ch.isdigit() and not ch.isascii() else ch for ch in text)
        raise ValueError(f"write the digits in ASCII: {fixed}")
    return text


def _whole(text: str, least: int) -> int:
    m = _WHOLE.match(_ascii(text))
    if m is None:
        raise ValueError(f"not a whole number; write e.g. {max(least, 3)}")
    value = int(m.group(1))
    if value < least:
        raise ValueError(f"must be {least} or more")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _str(text: str) -> str:
    return str(text)


def _path(text: str) -> str:
    """A file or folder option: an empty value (``--task-log "$UNSET"``) is refused, not read as "not given"."""
    if not str(text).strip():
        raise ValueError("the path is empty (an unset shell variable?); name a file, or leave the option out")
    return str(text)


def _usd(text: str) -> float:
    m = _AMOUNT.match(_ascii(text))
    if m is None or not float(m.group(1)) > 0:
        raise ValueError("must be an amount in USD above 0, e.g. 5 or 0.50")
    return float(m.group(1))


def _duration(text: str) -> float:
    """A duration option: ``90s``, ``2m``; positive, at most 30d (a longer one overflows the timers)."""
    return parse_duration(_ascii(text), hi=_LONGEST)


def _steps(text: str) -> str:
    """``--steps``: checked here, so an ini value's error names the ini; kept as written."""
    parse_steps(text)
    return text


def _replay_mode(text: str) -> str | None:
    word = str(text).strip().lower()
    if word in ("strict", "lenient"):
        return word
    if word in ("1", "true", "yes", "on"):
        return "strict"
    if word in ("0", "false", "no", "off"):
        return None
    raise ValueError("choose strict or lenient")


def _choice(*choices: str) -> Callable[[str], str]:
    def conv(text: str) -> str:
        word = str(text).strip().lower()
        if word not in choices:
            raise ValueError(f"choose one of {', '.join(choices)}")
        return word

    return conv


@dataclasses.dataclass(frozen=True)
class Option:
    name: str  # attribute name, also the ini key with ``dotasks_`` prefix
    flag: str
    help: str
    default: Any = None
    convert: Callable[[str], Any] = _str
    action: str | None = None  # "store_true" for flags
    metavar: str | None = None
    const: Any = None  # with a value that may be left out (--replay, --replay=lenient): the value then

    @property
    def ini(self) -> str:
        return f"dotasks_{self.name}"

    @property
    def dest(self) -> str:
        return f"dotasks_{self.name}"


OPTIONS: tuple[Option, ...] = (
    Option("spec", "--spec", "SPEC.md plan to execute as tests (collect its steps). Default: none (plain pytest collects no steps).", convert=_path, metavar="PATH"),
    Option("steps", "--steps", "Steps to run: 8, 1-5, 1-5,8; all = every step, done ones skipped (default); continue = the steps after the last done one.",
           default="all", convert=_steps, metavar="SEL"),
    Option("redo", "--redo", "Run steps that are already done again. Default: off.", default=False, action="store_true"),
    Option("optional", "--optional", "Run Kiro's optional tasks ('- [ ]*') too; without it they are skipped unless "
           "--steps names them. Default: off.", default=False, action="store_true"),
    Option("plan_format", "--plan-format", "Plan format: auto (detected from the content and the path), specmd "
           "(SPEC.md), speckit (Spec Kit tasks.md), kiro (Kiro tasks.md). Default: auto.", default="auto",
           convert=_choice("auto", "specmd", "speckit", "kiro"), metavar="FORMAT"),
    Option("no_mark", "--no-mark", "Run the steps but write no marker into SPEC.md (the log is still written). Default: off.", default=False,
           action="store_true"),
    Option("dry_run", "--dry-run", "Run pre-flight and show each body; run no body, mark nothing. Default: off.",
           default=False, action="store_true"),
    Option("task_log", "--task-log", "Task log file, relative to the current directory, or to the ini file's "
           "folder in the ini. Default: .task_execution.log beside SPEC.md.",
           convert=_path, metavar="PATH"),
    Option("preflight_timeout", "--preflight-timeout", "How long each pre-flight check may take, a duration: 90s, 2m, 1h. Default: 30s.",
           default=30.0, convert=_duration, metavar="DUR"),
    Option("post_timeout", "--post-timeout", "How long each post-validation check may take, a duration: 90s, 2m, 1h. Default: 30s.",
           default=30.0, convert=_duration, metavar="DUR"),
    Option("check_workers", "--check-workers", "Checks of one phase run at once. Default: 3.", default=3,
           convert=_positive_int, metavar="N"),
    Option("agent", "--agent", "Agent definition (.claude/agents/NAME.md) for steps without run:. Default: tinker-executor (built-in fallback when not defined).", default="tinker-executor",
           metavar="NAME"),
    Option("agent_model", "--agent-model", "Model for the agent: alias haiku/sonnet/opus or a model id. Default: the agent's own model:.",
           metavar="MODEL"),
    Option("agent_backend", "--agent-backend", "Agent backend: anthropic, claude-code or command. Default: anthropic.",
           default="anthropic", convert=_choice("anthropic", "claude-code", "command"), metavar="NAME"),
    Option("agent_command", "--agent-command", "CLI agent for --agent-backend command; {prompt} is replaced. Default: none.",
           metavar="CMD"),
    Option("agent_max_turns", "--agent-max-turns", "Turns the agent may take per attempt. Default: 40.", default=40,
           convert=_positive_int, metavar="N"),
    Option("agent_max_tokens", "--agent-max-tokens", "Tokens (input+output) the agent may spend per step. Default: 2000000.",
           default=2_000_000, convert=_positive_int, metavar="N"),
    Option("skills", "--skills", "Skills given in full to every agent (comma-separated). Default: none.", default="",
           metavar="NAMES"),
    Option("full_trace", "--dotasks-full-trace", "Show full tracebacks for step failures. Default: off.",
           default=False, action="store_true"),
    Option("wait_background", "--wait-background",
           "Wait for every background step this run started and report its final outcome as a pytest "
           "outcome (exit status, JUnit): for CI. Default: off.", default=False, action="store_true"),
    Option("heartbeat", "--heartbeat", "While waiting, or while a step prints nothing, say so every DUR (a duration: "
           "30s, 5m). Default: 30s.", default=30.0, convert=_duration, metavar="DUR"),
    Option("require_checks", "--require-checks",
           "An agent step with no post-validation (outputs, validate, metrics or a hook's check) is a "
           "setup error instead of a pass on the agent's word: for CI. Default: off.", default=False, action="store_true"),
    Option("verify", "--verify", "Re-check steps marked done: run only their post-validation (no "
           "pre-flight, no body, no agent); mark nothing unless --verify-mark. Default: off.", default=False,
           action="store_true"),
    Option("verify_mark", "--verify-mark", "With --verify: write the verdict into SPEC.md "
           "(a failed re-check becomes ✗ Failed). Default: off.", default=False, action="store_true"),
    Option("max_cost", "--max-cost", "Spending limit per agent step in USD, from the usage the API reports and "
           "the price table: once reached, the step sends no further request and fails. Default: none.",
           convert=_usd, metavar="USD"),
    Option("max_run_cost", "--max-run-cost", "Spending limit in USD for all agent steps of the run (every xdist "
           "worker together); works as --max-cost. Default: none.", convert=_usd, metavar="USD"),
    Option("prices", "--prices", "JSON price table shaped like the built-in prices.json; its families replace "
           "or add to the built-in ones (relative to the current directory, or to the rootdir in the ini). "
           "Default: none (the built-in table).", convert=_path, metavar="PATH"),
    Option("record", "--record", "Run agent steps for real and record each step's Messages API exchanges in a "
           "cassette (cassettes/SPEC/step8.jsonl beside the plan; no credential in it). Default: off.",
           default=False, action="store_true"),
    Option("replay", "--replay", "Replay agent steps from their cassettes: no key, no network; their tools and "
           "checks run for real. A request that differs from the recording fails the step; --replay=lenient "
           "goes on with a warning. Default: off (strict when given without a value).",
           convert=_replay_mode, const="strict", metavar="MODE"),
    Option("record_missing", "--record-missing", "With --replay: a step with no cassette runs for real and is "
           "recorded, instead of failing in pre-flight. Default: off.", default=False, action="store_true"),
    Option("cassettes", "--cassettes", "Folder of cassettes, one sub-folder per plan (DIR/SPEC/step8.jsonl); "
           "relative to the current directory, or to the ini file's folder in the ini. Default: cassettes "
           "beside the plan.", convert=_path, metavar="DIR"),
)
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    rootdir: Path

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def resolve(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    rootdir: Path,
    options: tuple[Option, ...] = OPTIONS,
) -> Settings:
    """Resolve every option: command line, then ini, then default.

    ``cli`` maps option names to parsed command-line values (``None`` when
    not given); ``ini`` maps option names to raw ini strings (absent or empty
    when not set).
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in options:
        raw = cli.get(opt.name)
        source = f"{opt.flag} on the command line"  # Settings.sources: read by others (startswith "--")
        where = "the command line"
        if raw is None or (opt.action == "store_true" and raw is False):
            raw = ini.get(opt.name)
            source = where = f"ini option {opt.ini}"
            if raw in (None, "", []):
                values[opt.name], sources[opt.name] = opt.default, "default"
                continue
        if opt.action == "store_true":
            values[opt.name] = _truthy(raw)
        else:
            try:
                values[opt.name] = opt.convert(raw) if isinstance(raw, str) else raw
            except ValueError as exc:
                raise SettingsError(f"invalid value {_clip(raw)!r} for {opt.flag} from {where}: {exc}") from None
            except SettingsError as exc:  # a converter's own one-line error (--steps): say where it came from
                if where == "the command line":
                    raise
                raise SettingsError(f"{exc.message} (from {where})", fix=exc.fix) from None
        sources[opt.name] = source
    return Settings(values=values, sources=sources, rootdir=rootdir)


def _clip(value: Any, width: int = 60) -> Any:
    if not isinstance(value, str) or len(value) <= width:
        return value
    return value[: width - 3] + "..."
