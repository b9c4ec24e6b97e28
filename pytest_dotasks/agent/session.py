"""The session interface, and what every agent backend shares.

A backend is one class with ``run(feedback) -> BodyResult`` and ``close()``
(``run.context.AgentSession``, the interface a step calls);
``launch.open_session(ctx)`` picks it from ``--agent-backend``:

- ``anthropic`` (default): our own tool-use loop over the Anthropic Messages API
  with the Bash/Read/Write/Edit/Task tools of ``tools.py`` and ``workspace.py``,
  see ``anthropic_api.py``;
- ``claude-code``: Claude Code itself, through the Claude Agent SDK (extra
  ``pytest-dotasks[claude-code]``), see ``claude_code.py``;
- ``command``: any CLI agent, ``--agent-command 'some-cli {prompt}'``, see ``command.py``.

A session's ``run(feedback)`` is called once, then again with the failure
text for each ``retries:`` attempt: the anthropic and claude-code sessions
continue the same conversation. Shared here: what to run (``AgentPlan``,
``plan_for``), the transcript, token usage and cost, the environment of the
agent's commands, and the one-prompt form for CLI agents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent import guard
from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.pricing import PriceTable, builtin_prices, model_family, settings_prices
from pytest_dotasks.agent.tools import Grants, grants
from pytest_dotasks.run.context import StepContext, step_env
from pytest_dotasks.run.tasklog import now_iso

# ------------------------------------------------------------ what to run

@dataclasses.dataclass(frozen=True)
class AgentPlan:
    """Everything resolved for one step: agent, model, tools, skills, prompts and prices."""

    agent: defs.AgentDef
    model: str
    grants: Grants
    full_skills: tuple[defs.SkillDef, ...]
    listed_skills: tuple[defs.SkillDef, ...]
    subagents: tuple[defs.AgentDef, ...]  # what Task may hand work to
    system: str
    user: str
    alias_lines: tuple[str, ...] = ()
    note: str = ""  # e.g. the built-in agent stood in for a missing default
    warnings: tuple[defs.Problem, ...] = ()  # the definition files' problems that concern this step
    prices: PriceTable = dataclasses.field(default_factory=builtin_prices)


def _alias_lines(ctx: StepContext) -> tuple[str, ...]:
    lines = ctx.extra.get("model_aliases")
    if lines is None:
        lines = ctx.settings.values.get("model_aliases")
    if isinstance(lines, str):
        lines = lines.splitlines()
    return tuple(lines or ())


def plan_for(ctx: StepContext, *, native_tools: bool = False) -> AgentPlan:
    """Resolve the step's agent, model, skills, prompts and prices. Raises DefinitionError, PricesError.

    Skills the step (``skills:``) or ``--skills`` names must exist; one only the
    agent names is a warning (``AgentPlan.warnings``) and the step runs without it.
    """
    step, settings, root = ctx.step, ctx.settings, ctx.root
    name = step.value("agent") or settings.agent
    explicit = step.value("agent") is not None or settings.sources.get("agent", "default") != "default"
    choice = defs.choose_agent(root, name, explicit=explicit)
    agent = choice.agent
    lines = _alias_lines(ctx)
    agent_model = agent.model if agent.model and agent.model != defs.INHERIT else None
    model = defs.resolve_model(step.value("model") or settings.agent_model or agent_model, lines)
    wanted = [*step.items("skills"), *defs.split_names(settings.skills or "", key="skills")]
    skills = defs.select_skills(root, wanted, agent)
    subagents = (*choice.catalog.items, defs.GENERAL_PURPOSE)
    tool_grants = grants(agent.tools)
    system = prompts.system_prompt(agent, skills.full, skills.listed, root=root, tool_names=tool_grants.names,
                                   native_tools=native_tools)
    user = prompts.step_prompt(step, ctx.task_id)
    adjust = ctx.extra.get("adjust_prompt")
    if adjust is not None:  # the pytest_dotasks_adjust_prompt hook, wired by the item
        user = adjust(user)
    warnings = tuple(dict.fromkeys([*choice.warnings, *skills.warnings]))
    return AgentPlan(agent, model, tool_grants, skills.full, skills.listed, subagents, system, user, lines,
                     choice.note, warnings, settings_prices(settings))


class PlanSession:
    """What every session built from an ``AgentPlan`` tells the step: the agent that actually runs.

    ``agent_name`` and ``note`` are optional parts of the session interface
    (``run.phases`` reads them with ``getattr``): a session from a
    ``pytest_dotasks_agent_session`` hook may lack them.
    """

    plan: AgentPlan

    @property
    def agent_name(self) -> str:
        return self.plan.agent.name

    @property
    def note(self) -> str:
        return self.plan.note


# ------------------------------------------------------------ shared pieces

class Transcript:
    """``.dotasks/transcripts/TASK_ID.jsonl``: one JSON line per request, response, tool result."""

    def __init__(self, path: Path, scrub: Callable[[str], str]) -> None:
        self.path = path
        self.scrub = scrub
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, /, **data: Any) -> None:
        entry = {"ts": now_iso(), "type": kind, **data}
        line = self.scrub(json.dumps(entry, ensure_ascii=False, default=str))
        try:
            payload = (line + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from the model: escaped, the line stays valid JSON
            payload = (self.scrub(json.dumps(entry, default=str)) + "\n").encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)  # again: a Bash call may have removed it
        with open(self.path, "ab") as fh:
            fh.write(payload)


@dataclasses.dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0
    prices: PriceTable | None = None  # None: the built-in table

    @property
    def total(self) -> int:
        """What the token budget counts: every input token (cached or not) and every output token."""
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def add(self, model: str, usage: Any) -> dict[str, Any]:
        def get(key: str) -> int:
            value = usage.get(key) if isinstance(usage, dict) else getattr(usage, key, 0)
            return int(value or 0)

        turn: dict[str, Any] = {
            "input_tokens": get("input_tokens"),
            "output_tokens": get("output_tokens"),
            "cache_read_tokens": get("cache_read_input_tokens"),
            "cache_write_tokens": get("cache_creation_input_tokens"),
        }
        cost = model_family(model, self.prices).cost(turn["input_tokens"], turn["output_tokens"],
                                                     turn["cache_write_tokens"], turn["cache_read_tokens"])
        turn["cost_usd"] = round(cost, 6)
        self.input_tokens += turn["input_tokens"]
        self.output_tokens += turn["output_tokens"]
        self.cache_read_tokens += turn["cache_read_tokens"]
        self.cache_write_tokens += turn["cache_write_tokens"]
        self.cost_usd += cost
        self.turns += 1
        return turn

    def properties(self, agent: str, model: str) -> dict[str, Any]:
        return {"agent": agent, "model": model, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens, "cost_usd": round(self.cost_usd, 6),
                "turns": self.turns}


def one_line(text: str, limit: int = 300) -> str:
    """The last words of an agent, on one line: its last non-empty lines, not the STEP RESULT line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if prompts.RESULT_PREFIX not in ln.upper()] or lines
    out = " ".join(lines[-2:]) if lines else "(no words)"
    return out if len(out) <= limit else "..." + out[-(limit - 3):]


def step_environment(ctx: StepContext) -> dict[str, str]:
    """The environment of the step's commands (ours plus the ``DOTASKS_*`` variables)."""
    return step_env(ctx)


# The agent's own credentials: what lets it (or Claude Code) talk to the model.
AGENT_CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS",
                     "ANTHROPIC_FOUNDRY_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "AWS_BEARER_TOKEN_BEDROCK")
_CREDENTIAL_LIKE = re.compile(r"^(?:ANTHROPIC|CLAUDE)_\w*(?:KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?|HEADERS)\w*$",
                              re.IGNORECASE)


def is_agent_credential(name: str) -> bool:
    """Is ``name`` one of the agent's own credentials (or looks like one: ``ANTHROPIC_*_KEY``, ``CLAUDE_*_TOKEN``)?"""
    return name in AGENT_CREDENTIALS or bool(_CREDENTIAL_LIKE.match(name))


def tool_environment(ctx: StepContext) -> dict[str, str]:
    """The environment of the commands the agent runs (its Bash): the step's, minus the agent's credentials.

    The agent's API key is for the conversation, not for the work: a command
    the model writes (``env > env.txt``) must not see it. A variable the step
    names in ``env:`` is passed all the same: naming it says the work needs it
    (a data step calling the Anthropic API with ``env: ANTHROPIC_API_KEY``).
    """
    named = set(ctx.step.items("env"))
    return {k: v for k, v in step_environment(ctx).items() if k in named or not is_agent_credential(k)}


def protected_paths(ctx: StepContext) -> list[Path]:
    """What the agent's file tools may read but never write (see ``guard``)."""
    return guard.protected_paths(ctx)


def api_key_values() -> list[str]:
    """The agent's own credentials in this environment: secrets the log and transcripts scrub."""
    return [v for k, v in os.environ.items() if v and is_agent_credential(k)]


def combined_prompt(plan: AgentPlan, feedback: Sequence[str] = ()) -> str:
    """System and task in one text, for backends that take a single prompt (CLI agents)."""
    parts = [plan.system, "---", plan.user]
    for i, text in enumerate(feedback, 2):
        parts += ["---", f"(attempt {i}) " + prompts.feedback_prompt(text)]
    return "\n\n".join(parts)

