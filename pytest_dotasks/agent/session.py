"""The agent body: a step without ``run:`` is carried out by an agent session.

``open_session(ctx)`` picks the backend from ``--agent-backend``:

- ``anthropic`` (default): our own tool-use loop over the Anthropic Messages API
  with the Bash/Read/Write/Edit/Task tools of ``tools.py``;
- ``claude-code``: Claude Code itself, through the Claude Agent SDK (extra
  ``pytest-dotasks[claude-code]``), see ``agent_cli.py``;
- ``command``: any CLI agent, ``--agent-command 'some-cli {prompt}'``, see ``agent_cli.py``.

A session's ``run(feedback)`` is called once, then again with the failure
text for each ``retries:`` attempt: the anthropic and claude-code sessions
continue the same conversation. ``anthropic`` is imported only when a session
actually talks to the API (it costs seconds to import).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.tools import Grants, ToolResult, Workspace, grants, task_schema
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext
from pytest_dotasks.run.tasklog import now_iso

if TYPE_CHECKING:
    import anthropic

# Transient errors (429, 5xx, 529 overloaded, connection resets) are retried
# by the SDK itself with exponential backoff and the server's retry-after.
API_MAX_RETRIES = 4


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """USD per million tokens, and the largest ``max_tokens`` a turn asks for."""

    input: float
    output: float
    cache_write: float  # 5-minute cache writes
    cache_read: float
    max_output: int


# Data, per model family, matched by the longest key contained in the model id
# (so Bedrock and Vertex ids match too). Unknown ids are priced as Sonnet and
# ask for 8192 output tokens a turn.
MODEL_FAMILIES: dict[str, ModelFamily] = {
    "claude-opus-4-0": ModelFamily(15.0, 75.0, 18.75, 1.50, 32_000),
    "claude-opus-4-2025": ModelFamily(15.0, 75.0, 18.75, 1.50, 32_000),
    "claude-opus-4-1": ModelFamily(15.0, 75.0, 18.75, 1.50, 32_000),
    "claude-opus-4": ModelFamily(5.0, 25.0, 6.25, 0.50, 32_000),  # 4.5 and later
    "claude-3-opus": ModelFamily(15.0, 75.0, 18.75, 1.50, 4_096),
    "claude-sonnet-4": ModelFamily(3.0, 15.0, 3.75, 0.30, 32_000),
    "claude-3-7-sonnet": ModelFamily(3.0, 15.0, 3.75, 0.30, 32_000),
    "claude-3-5-sonnet": ModelFamily(3.0, 15.0, 3.75, 0.30, 8_192),
    "claude-haiku-4": ModelFamily(1.0, 5.0, 1.25, 0.10, 32_000),
    "claude-3-5-haiku": ModelFamily(0.80, 4.0, 1.0, 0.08, 8_192),
    "claude-3-haiku": ModelFamily(0.25, 1.25, 0.30, 0.03, 4_096),
    # Tier fallbacks for newer families (5.x and later) whose prices we have not
    # verified: the latest known price of the tier. An estimate; check the bill.
    "claude-opus": ModelFamily(5.0, 25.0, 6.25, 0.50, 32_000),
    "claude-sonnet": ModelFamily(3.0, 15.0, 3.75, 0.30, 32_000),
    "claude-haiku": ModelFamily(1.0, 5.0, 1.25, 0.10, 32_000),
}
DEFAULT_FAMILY = ModelFamily(3.0, 15.0, 3.75, 0.30, 8_192)


def model_family(model: str) -> ModelFamily:
    hits = [k for k in MODEL_FAMILIES if k in model]
    return MODEL_FAMILIES[max(hits, key=len)] if hits else DEFAULT_FAMILY


class AgentSession(Protocol):
    def run(self, feedback: str | None = None) -> BodyResult: ...

    def close(self) -> None: ...


# ------------------------------------------------------------ what to run

@dataclasses.dataclass(frozen=True)
class AgentPlan:
    """Everything resolved for one step: agent, model, tools, skills and prompts."""

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


def _alias_lines(ctx: StepContext) -> tuple[str, ...]:
    lines = ctx.extra.get("model_aliases")
    if lines is None:
        lines = ctx.settings.values.get("model_aliases")
    if isinstance(lines, str):
        lines = lines.splitlines()
    return tuple(lines or ())


def plan_for(ctx: StepContext, *, native_tools: bool = False) -> AgentPlan:
    """Resolve the step's agent, model, skills and prompts. Raises DefinitionError."""
    step, settings, root = ctx.step, ctx.settings, ctx.root
    name = step.value("agent") or settings.agent
    explicit = step.value("agent") is not None or settings.sources.get("agent", "default") != "default"
    note = ""
    try:
        agent = defs.find_agent(root, name)
    except defs.AgentNotFound:
        # Only the default, asked for by nobody, falls back; a broken file never does.
        if explicit or name != defs.DEFAULT_AGENT:
            raise
        agent = defs.BUILTIN_EXECUTOR
        note = f"no agent '{name}' in {defs.AGENTS_DIR}/; using the built-in {agent.name}"
    lines = _alias_lines(ctx)
    agent_model = agent.model if agent.model and agent.model != defs.INHERIT else None
    model = defs.resolve_model(step.value("model") or settings.agent_model or agent_model, lines)
    wanted = [*agent.skills, *step.items("skills"), *defs.split_names(settings.skills or "", key="skills")]
    full, listed = defs.select_skills(root, wanted)
    project_agents, _errors = defs.load_agents(root)
    subagents = tuple(project_agents) + (defs.GENERAL_PURPOSE,)
    tool_grants = grants(agent.tools)
    system = prompts.system_prompt(agent, full, listed, root=root, tool_names=tool_grants.names,
                                   native_tools=native_tools)
    user = prompts.step_prompt(step, ctx.task_id)
    adjust = ctx.extra.get("adjust_prompt")
    if adjust is not None:  # the pytest_dotasks_adjust_prompt hook, wired by the item
        user = adjust(user)
    return AgentPlan(agent, model, tool_grants, tuple(full), tuple(listed), subagents, system,
                     user, lines, note)


def render_prompt(ctx: StepContext) -> str:
    """What ``--dry-run`` shows for an agent step: the choices and both prompts. Calls nothing."""
    backend = ctx.settings.agent_backend
    plan = plan_for(ctx, native_tools=backend != "anthropic")
    where = plan.agent.path.relative_to(ctx.root) if plan.agent.path else "built-in"
    head = [f"[agent] {plan.agent.name} ({where}), model {plan.model}, backend {backend}"]
    if backend == "command":
        head.append(f"[command] {ctx.settings.agent_command or '(no --agent-command given)'}")
    else:
        head.append(f"[tools] {', '.join(plan.grants.names) or 'none'}"
                    + (f" (not provided: {', '.join(plan.grants.ignored)})" if plan.grants.ignored else ""))
    if plan.full_skills:
        head.append(f"[skills] {', '.join(s.name for s in plan.full_skills)}")
    if plan.note:
        head.append(f"[note] {plan.note}")
    return "\n".join(head + ["", "----- system prompt -----", plan.system, "", "----- prompt -----", plan.user])


def open_session(ctx: StepContext) -> AgentSession:
    """The session for ``ctx``'s step, on the backend ``--agent-backend`` names."""
    backend = ctx.settings.agent_backend
    try:
        plan = plan_for(ctx, native_tools=backend != "anthropic")
    except defs.DefinitionError as exc:
        raise BodyFailed(exc.message, path=exc.path, line=exc.line, fix=exc.fix) from None
    if backend == "anthropic":
        return AnthropicSession(ctx, plan)
    from pytest_dotasks.agent.cli_backends import ClaudeCodeSession, CommandSession

    if backend == "claude-code":
        return ClaudeCodeSession(ctx, plan)
    if backend == "command":
        return CommandSession(ctx, plan)
    raise BodyFailed(f"unknown agent backend '{backend}'", fix="use --agent-backend anthropic, claude-code or command")


# ------------------------------------------------------------ shared pieces

class Transcript:
    """``.dotasks/transcripts/TASK_ID.jsonl``: one JSON line per request, response, tool result."""

    def __init__(self, path: Path, scrub: Callable[[str], str]) -> None:
        self.path = path
        self.scrub = scrub
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, /, **data: Any) -> None:
        line = json.dumps({"ts": now_iso(), "type": kind, **data}, ensure_ascii=False, default=str)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(self.scrub(line) + "\n")


@dataclasses.dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    turns: int = 0

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
        f = model_family(model)
        cost = (turn["input_tokens"] * f.input + turn["output_tokens"] * f.output
                + turn["cache_write_tokens"] * f.cache_write + turn["cache_read_tokens"] * f.cache_read) / 1e6
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
    from pytest_dotasks.run.context import step_env

    return step_env(ctx)


def protected_paths(ctx: StepContext) -> list[Path]:
    return [ctx.spec_path, ctx.log.path, ctx.state_dir]


def api_key_values() -> list[str]:
    return [os.environ[k] for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN") if os.environ.get(k)]


# ------------------------------------------------------------ the anthropic backend

@dataclasses.dataclass
class _Outcome:
    kind: str  # success, failure, turns, budget, undeclared, refusal, done (sub-agent)
    text: str  # last assistant words
    reason: str = ""


def _param(block: Any) -> dict[str, Any] | None:
    """A response content block as a request block for the history (None: drop it)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text} if block.text else None
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input or {}}
    data: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return data


def _cached(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "cache_control": {"type": "ephemeral"}}


class AnthropicSession:
    """Our tool-use loop over the Messages API.

    Written by hand over ``client.messages.stream`` rather than with the SDK's
    ``client.beta.messages.tool_runner``: the runner is a beta helper whose
    surface changed between SDK releases (2.13 added threads and toolsets; we
    support ``anthropic>=0.40``), and we must act between the model's reply
    and the tool calls on every turn: log and budget the turn's tokens, write
    the transcript, refuse tools the agent was not granted, run ``Task`` as a
    nested conversation, stop on the turn and token budgets with a valid
    history, and later append the failure text to the same conversation.
    Streaming (``get_final_message``) because a turn may write a large file:
    the SDK refuses long non-streaming requests, and still retries a stream's
    failed start (429/5xx/529) itself.
    """

    def __init__(self, ctx: StepContext, plan: AgentPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.settings = ctx.settings
        self.messages: list[dict[str, Any]] = []
        self.usage = Usage()
        self.attempt = 0
        self.tasks = 0  # Task sub-conversations so far
        self.console: list[str] = []  # what BodyResult.output shows
        self.client: anthropic.Anthropic | None = None
        ctx.log.add_secrets(api_key_values())
        self.transcript = Transcript(ctx.state_dir / "transcripts" / f"{ctx.task_id}.jsonl", ctx.log.scrub)
        env = step_environment(ctx)
        self.workspace = Workspace(ctx.root, env=env, protected=protected_paths(ctx), grants=plan.grants)
        self._env = env
        self._logged: dict[str, int] = {}  # conversation -> messages already in the transcript

    # ---------------------------------------------------------------- public

    def run(self, feedback: str | None = None) -> BodyResult:
        self.attempt += 1
        plan, ctx = self.plan, self.ctx
        client = self._client()
        if self.attempt == 1:
            self._start_log()
        if not self.messages:
            self._add_user(plan.user)
        else:
            text = prompts.feedback_prompt(feedback or "Continue the step.")
            self.transcript.write("feedback", attempt=self.attempt, text=text)
            ctx.log_event("main", "agent_feedback", f"attempt {self.attempt}: failure sent back to {plan.agent.name}",
                          agent=plan.agent.name, attempt=self.attempt)
            self._add_user(text)
        outcome = self._converse(client, plan.agent.name, plan.model, self._system_blocks(plan.system),
                                 self._tool_params(plan.grants, depth=0), self.messages, self.workspace, depth=0,
                                 conversation="main")
        return self._result(outcome)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    # ---------------------------------------------------------------- setup

    def _client(self) -> anthropic.Anthropic:
        if self.client is not None:
            return self.client
        if not any(os.environ.get(k) for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE")):
            self.ctx.log_event("main", "agent_error", "ANTHROPIC_API_KEY is not set", agent=self.plan.agent.name)
            raise BodyFailed(
                f"STEP {self.ctx.step.number}: the agent needs ANTHROPIC_API_KEY, which is not set [{self.ctx.task_id}]",
                fix="export ANTHROPIC_API_KEY=sk-ant-... (console.anthropic.com/settings/keys), "
                    "or give the step a run: command, or use --agent-backend claude-code / command")
        import anthropic  # only here: importing it costs seconds

        self.client = anthropic.Anthropic(max_retries=API_MAX_RETRIES)
        return self.client

    def _start_log(self) -> None:
        plan, ctx = self.plan, self.ctx
        ctx.properties["transcript"] = str(self.transcript.path)
        info = {"agent": plan.agent.name, "model": plan.model, "backend": "anthropic",
                "tools": list(plan.grants.names), "skills": [s.name for s in plan.full_skills]}
        if plan.note:
            ctx.log_event("main", "agent_note", plan.note, agent=plan.agent.name)
        if plan.grants.ignored:
            ctx.log_event("main", "agent_note", f"tools not provided here: {', '.join(plan.grants.ignored)}",
                          agent=plan.agent.name)
        ctx.log_event("main", "agent_start", f"{plan.agent.name} on {plan.model}", transcript=str(self.transcript.path),
                      **info)
        self.transcript.write("session", task_id=ctx.task_id, step=ctx.step.number, system=plan.system,
                              tool_names=list(plan.grants.names), **info)

    @staticmethod
    def _system_blocks(system: str) -> list[dict[str, Any]]:
        # The stable prefix: tools, then system. One breakpoint on each, so a
        # later step of the same agent reads both from the cache.
        return [_cached({"type": "text", "text": system})]

    def _tool_params(self, g: Grants, depth: int) -> list[dict[str, Any]]:
        from pytest_dotasks.agent.tools import SCHEMAS

        out: list[dict[str, Any]] = []
        for name in g.names:
            if name == "Task":
                if depth == 0:
                    out.append(task_schema((a.name, a.description) for a in self.plan.subagents))
            else:
                out.append(SCHEMAS[name])
        if out:
            out[-1] = _cached(out[-1])
        return out

    def _add_user(self, text: str) -> None:
        """A user turn; merged into the last one when that is a user turn (tool results left by a stop)."""
        if self.messages and self.messages[-1]["role"] == "user":
            content = self.messages[-1]["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            self.messages[-1]["content"] = [*content, {"type": "text", "text": text}]
        else:
            self.messages.append({"role": "user", "content": text})

    # ---------------------------------------------------------------- the loop

    def _request(self, client: anthropic.Anthropic, agent: str, model: str, system: list[dict[str, Any]],
                 tools: list[dict[str, Any]], messages: list[dict[str, Any]], conversation: str) -> Any:
        # The moving breakpoint: the newest message, so each turn reads the
        # conversation so far from the cache. Three breakpoints in all (max 4).
        last = dict(messages[-1])
        content = last["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        blocks[-1] = _cached(blocks[-1])
        last["content"] = blocks
        params: dict[str, Any] = {"model": model, "max_tokens": model_family(model).max_output, "system": system,
                                  "messages": [*messages[:-1], last]}
        if tools:
            params["tools"] = tools
        # Each request line carries only the messages the transcript has not seen yet.
        seen = self._logged.get(conversation, 0)
        self.transcript.write("request", agent=agent, conversation=conversation, model=model,
                              max_tokens=params["max_tokens"], messages=len(messages), new_messages=messages[seen:])
        self._logged[conversation] = len(messages) + 1  # + the reply, logged as "response"
        import anthropic

        try:
            with client.messages.stream(**params) as stream:
                return stream.get_final_message()
        except anthropic.APIError as exc:
            raise self._api_failure(exc, model) from None
        except TypeError as exc:
            if "authentication" not in str(exc):
                raise
            # The SDK found no credentials at all (e.g. only ANTHROPIC_PROFILE, pointing nowhere).
            raise BodyFailed(f"STEP {self.ctx.step.number}: cannot call the Anthropic API: {exc}",
                             fix="export ANTHROPIC_API_KEY=sk-ant-...") from None

    def _api_failure(self, exc: Exception, model: str) -> BodyFailed:
        import anthropic

        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        detail = ""
        if isinstance(body, dict):
            inner = body.get("error")
            err: dict[str, Any] = inner if isinstance(inner, dict) else body
            detail = f"{err.get('type', '')}: {err.get('message', '')}".strip(": ")
        detail = (detail or str(exc)).splitlines()[0] if (detail or str(exc)) else type(exc).__name__
        head = f"STEP {self.ctx.step.number}:"
        if isinstance(exc, anthropic.AuthenticationError):
            msg, fix = f"{head} the Anthropic API rejected the key (401 {detail})", \
                "check ANTHROPIC_API_KEY (console.anthropic.com/settings/keys)"
        elif isinstance(exc, anthropic.PermissionDeniedError):
            msg, fix = f"{head} the key may not use this API or model (403 {detail})", \
                "check the key's workspace and model access"
        elif isinstance(exc, anthropic.NotFoundError):
            msg, fix = f"{head} model '{model}' not found (404 {detail})", \
                "choose another with --agent-model, 'model:' or dotasks_model_aliases"
        elif isinstance(exc, anthropic.BadRequestError):
            msg, fix = f"{head} the API refused the request (400 {detail})", "see the transcript"
        elif isinstance(exc, anthropic.APIConnectionError):
            msg, fix = f"{head} cannot reach the Anthropic API: {detail}", \
                f"check the network (retried {API_MAX_RETRIES} times)"
        else:
            code = f"{status} " if status else ""
            msg, fix = f"{head} Anthropic API error ({code}{detail})", \
                f"transient errors were retried {API_MAX_RETRIES} times; try again later"
        msg += f" [{self.ctx.task_id}]"
        self.transcript.write("error", status=status, message=msg)
        self.ctx.log_event("main", "agent_error", msg, agent=self.plan.agent.name, status=status)
        self.ctx.properties.update(self.usage.properties(self.plan.agent.name, self.plan.model))
        return BodyFailed(msg, fix=fix)

    def _converse(self, client: anthropic.Anthropic, agent: str, model: str, system: list[dict[str, Any]],
                  tools: list[dict[str, Any]], messages: list[dict[str, Any]], workspace: Workspace,
                  depth: int, conversation: str) -> _Outcome:
        max_turns = int(self.settings.agent_max_turns)
        budget = int(self.settings.agent_max_tokens)
        turns = 0
        nudged = False
        last_text = ""
        while True:
            if self.usage.total >= budget:
                return _Outcome("budget", last_text)
            if turns >= max_turns:
                return _Outcome("turns", last_text)
            t0 = time.monotonic()
            response = self._request(client, agent, model, system, tools, messages, conversation)
            turns += 1
            turn = self.usage.add(model, response.usage)
            content = [p for p in (_param(b) for b in response.content) if p is not None]
            texts = "\n".join(b["text"] for b in content if b["type"] == "text").strip()
            calls = [b for b in content if b["type"] == "tool_use"]
            if texts:
                last_text = texts
                self.console.append(f"[{agent}] {texts}")
                self.ctx.emit(f"  → {one_line(texts.splitlines()[0], 160)}")
            self.transcript.write("response", agent=agent, conversation=conversation, model=model,
                                  id=getattr(response, "id", None),
                                  stop_reason=response.stop_reason, content=content, usage=turn)
            self.ctx.log_event(
                "main", "agent_turn",
                f"{agent} turn {turns}: {turn['input_tokens']} in, {turn['output_tokens']} out, "
                f"cache {turn['cache_read_tokens']} read / {turn['cache_write_tokens']} written",
                agent=agent, model=model, turn=turns, attempt=self.attempt, depth=depth,
                stop_reason=response.stop_reason, tools=[c["name"] for c in calls],
                seconds=round(time.monotonic() - t0, 3), total_tokens=self.usage.total, **turn)
            messages.append({"role": "assistant", "content": content or [{"type": "text", "text": "(no reply)"}]})
            if calls:
                over = self.usage.total >= budget
                results = [self._not_run(c, "the token budget is spent") if over else
                           self._call_tool(client, c, agent, model, workspace, depth) for c in calls]
                messages.append({"role": "user", "content": results})
                if over:
                    return _Outcome("budget", last_text)
                continue
            if response.stop_reason == "max_tokens":
                messages.append({"role": "user", "content": "Your reply was cut off at the output limit; continue."})
                continue
            if response.stop_reason == "refusal":
                return _Outcome("refusal", last_text)
            if depth > 0:
                return _Outcome("done", last_text)
            verdict = prompts.parse_verdict(texts)
            if verdict is not None:
                return _Outcome("success" if verdict.ok else "failure", last_text, verdict.reason)
            if self.usage.total >= budget:
                return _Outcome("budget", last_text)
            if nudged:
                return _Outcome("undeclared", last_text)
            nudged = True
            messages.append({"role": "user", "content": prompts.NUDGE})

    # ---------------------------------------------------------------- tools

    @staticmethod
    def _not_run(call: dict[str, Any], why: str) -> dict[str, Any]:
        return {"type": "tool_result", "tool_use_id": call["id"], "content": f"not run: {why}", "is_error": True}

    def _call_tool(self, client: anthropic.Anthropic, call: dict[str, Any], agent: str, model: str,
                   workspace: Workspace, depth: int) -> dict[str, Any]:
        name, args = call["name"], call.get("input") or {}
        t0 = time.monotonic()
        label = _describe(name, args)
        self.ctx.emit(f"  → {name}: {label}" if depth == 0 else f"    → [{agent}] {name}: {label}")
        self.console.append(f"[{agent}] → {name}: {label}")
        if name == "Task" and depth == 0 and workspace.grants.allows("Task"):
            result = self._task(client, args, model)
        else:
            result = workspace.call(name, args)
        content = self.ctx.log.scrub(result.content)  # the model never sees a key a command printed
        seconds = round(time.monotonic() - t0, 3)
        if result.is_error:
            self.console.append("    " + one_line(content, 400))
        self.transcript.write("tool_result", agent=agent, tool_use_id=call["id"], name=name, input=args,
                              is_error=result.is_error, seconds=seconds, content=content)
        self.ctx.log_event("main", "agent_tool", f"{agent}: {name} {label}"[:300], agent=agent, tool=name,
                           ok=not result.is_error, seconds=seconds, depth=depth)
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call["id"], "content": content or "(empty)"}
        if result.is_error:
            block["is_error"] = True
        return block

    def _task(self, client: anthropic.Anthropic, args: dict[str, Any], parent_model: str) -> ToolResult:
        kind = str(args.get("subagent_type") or "")
        task_prompt = args.get("prompt")
        if not isinstance(task_prompt, str) or not task_prompt.strip():
            return ToolResult("Task needs 'prompt' (the complete sub-task)", is_error=True)
        sub = next((a for a in self.plan.subagents if a.name == kind), None) or next(
            (a for a in self.plan.subagents if a.path is not None and a.path.stem == kind), None)
        if sub is None:
            known = ", ".join(a.name for a in self.plan.subagents)
            return ToolResult(f"no agent '{kind}'; available: {known}", is_error=True)
        sub_grants = grants(sub.tools, allow_task=False)  # one level deep
        model = parent_model if not sub.model or sub.model == defs.INHERIT else \
            defs.resolve_model(sub.model, self.plan.alias_lines)
        system = prompts.subagent_system_prompt(sub, root=self.ctx.root, tool_names=sub_grants.names)
        workspace = Workspace(self.ctx.root, env=self._env, protected=protected_paths(self.ctx), grants=sub_grants)
        self.ctx.log_event("main", "agent_task", f"Task to {sub.name}: {args.get('description', '')}"[:300],
                           agent=sub.name, model=model, parent=self.plan.agent.name)
        messages: list[dict[str, Any]] = [{"role": "user", "content": task_prompt}]
        self.tasks += 1
        outcome = self._converse(client, sub.name, model, self._system_blocks(system),
                                 self._tool_params(sub_grants, depth=1), messages, workspace, depth=1,
                                 conversation=f"task{self.tasks}")
        report = outcome.text or "(the sub-agent wrote no report)"
        if outcome.kind == "done":
            return ToolResult(report)
        why = {"turns": "ran out of turns", "budget": "the token budget is spent",
               "refusal": "the model refused"}.get(outcome.kind, outcome.kind)
        return ToolResult(f"sub-agent {sub.name} stopped: {why}. Last words: {report}", is_error=True)

    # ---------------------------------------------------------------- result

    def _result(self, outcome: _Outcome) -> BodyResult:
        plan, ctx = self.plan, self.ctx
        name = plan.agent.name
        words = one_line(outcome.text)
        budget = int(self.settings.agent_max_tokens)
        if outcome.kind == "success":
            ok, summary = True, f"{name} declared SUCCESS" + (f": {outcome.reason}" if outcome.reason else "")
        elif outcome.kind == "failure":
            ok, summary = False, f"{name} declared FAILURE: {outcome.reason or words}"
        elif outcome.kind == "turns":
            ok, summary = False, (f"{name} ran out of turns ({self.settings.agent_max_turns} per attempt); "
                                  f"last words: {words}")
        elif outcome.kind == "budget":
            ok, summary = False, (f"{name} spent its token budget ({self.usage.total:,} of {budget:,} tokens); "
                                  f"last words: {words}")
        elif outcome.kind == "refusal":
            ok, summary = False, f"the model refused to continue; last words: {words}"
        else:
            ok, summary = False, f"{name} stopped without declaring a result; last words: {words}"
        props = self.usage.properties(name, plan.model)
        props["transcript"] = str(self.transcript.path)
        ctx.properties.update(props)
        self.transcript.write("end", attempt=self.attempt, outcome=outcome.kind, ok=ok, summary=summary, **props)
        ctx.log_event("main", "agent_end", summary, ok=ok, outcome=outcome.kind, attempt=self.attempt, **props)
        output = ctx.log.scrub("\n".join(self.console[-200:]))
        return BodyResult(ok, ctx.log.scrub(summary), output, props)


def _describe(name: str, args: Any) -> str:
    if not isinstance(args, dict):
        return ""
    if name == "Bash":
        value = str(args.get("command", ""))
    elif name == "Task":
        value = f"{args.get('subagent_type', '')}: {args.get('description', '')}"
    else:
        value = str(args.get("file_path", ""))
    value = " ".join(value.split())
    return value if len(value) <= 160 else value[:157] + "..."


def combined_prompt(plan: AgentPlan, feedback: Sequence[str] = ()) -> str:
    """System and task in one text, for backends that take a single prompt (CLI agents)."""
    parts = [plan.system, "---", plan.user]
    for i, text in enumerate(feedback, 2):
        parts += ["---", f"(attempt {i}) " + prompts.feedback_prompt(text)]
    return "\n\n".join(parts)
