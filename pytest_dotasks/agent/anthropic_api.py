"""The ``anthropic`` backend: our own tool-use loop over the Anthropic Messages API.

The model gets the tools of ``tools.py``, run in a ``workspace.Workspace``;
requests are shaped in ``api_request.py`` and API failures explained in
``api_errors.py``. ``anthropic`` is imported only when a session actually
talks to the API (it costs seconds to import).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from pytest_dotasks.agent import api_request as req
from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.api_errors import explain_api_error
from pytest_dotasks.agent.guard import Guard, describe
from pytest_dotasks.agent.session import (
    AgentPlan,
    PlanSession,
    Transcript,
    Usage,
    api_key_values,
    one_line,
    step_environment,
    tool_environment,
)
from pytest_dotasks.agent.spending import SpendLimits
from pytest_dotasks.agent.tools import Grants, ToolResult, grants
from pytest_dotasks.agent.workspace import Workspace
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext
from pytest_dotasks.run.process import tail

if TYPE_CHECKING:
    import anthropic

# Transient errors (429, 5xx, 529 overloaded, connection resets) are retried
# by the SDK itself with exponential backoff and the server's retry-after.
API_MAX_RETRIES = 4
# Replies whose tool input the SDK cannot parse, in a row, before the step fails.
UNPARSABLE_TURNS = 3


@dataclasses.dataclass
class _Outcome:
    kind: str  # success, failure, turns, budget, cost, undeclared, refusal, done (sub-agent)
    text: str  # last assistant words
    reason: str = ""


def _verdict(outcome: _Outcome, name: str, usage: Usage, max_turns: object, budget: int) -> tuple[bool, str]:
    """(ok, summary) for how a conversation ended."""
    words = one_line(outcome.text)
    if outcome.kind == "success":
        return True, f"{name} declared SUCCESS" + (f": {outcome.reason}" if outcome.reason else "")
    if outcome.kind == "failure":
        return False, f"{name} declared FAILURE: {outcome.reason or words}"
    if outcome.kind == "turns":
        return False, f"{name} ran out of turns ({max_turns} per attempt); last words: {words}"
    if outcome.kind == "budget":
        return False, f"{name} spent its token budget ({usage.total:,} of {budget:,} tokens); last words: {words}"
    if outcome.kind == "cost":
        return False, f"{name} stopped: {outcome.reason}; last words: {words}"
    if outcome.kind == "refusal":
        return False, f"the model refused to continue; last words: {words}"
    return False, f"{name} stopped without declaring a result; last words: {words}"


def _stop(usage: Usage, limits: SpendLimits, budget: int, last_text: str) -> _Outcome | None:
    """Why no further request may be sent: the token budget, or a spending limit (``spending``)."""
    if usage.total >= budget:
        return _Outcome("budget", last_text)
    why = limits.reached(usage.cost_usd)
    return _Outcome("cost", last_text, why) if why else None


def _api_failure(ctx: StepContext, plan: AgentPlan, usage: Usage, transcript: Transcript, exc: Exception,
                 model: str) -> BodyFailed:
    """The step's failure when the API refused a request: logged, the usage so far kept."""
    what, fix = explain_api_error(exc, model, API_MAX_RETRIES)
    status = getattr(exc, "status_code", None)
    msg = f"STEP {ctx.step.ident}: {what} [{ctx.task_id}]"
    transcript.write("error", status=status, message=msg)
    ctx.log_event("main", "agent_error", msg, agent=plan.agent.name, status=status)
    ctx.properties.update(usage.properties(plan.agent.name, plan.model))
    return BodyFailed(msg, fix=fix)


def _new_client(ctx: StepContext, plan: AgentPlan) -> anthropic.Anthropic:
    env = step_environment(ctx)  # os.environ, plus what the run adds (--record/--replay: the proxy, a placeholder key)
    if not any(env.get(k) for k in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE")):
        ctx.log_event("main", "agent_error", "ANTHROPIC_API_KEY is not set", agent=plan.agent.name)
        raise BodyFailed(
            f"STEP {ctx.step.ident}: the agent needs ANTHROPIC_API_KEY, which is not set [{ctx.task_id}]",
            fix="export ANTHROPIC_API_KEY=sk-ant-... (console.anthropic.com/settings/keys), "
                "or give the step a run: command, or use --agent-backend claude-code / command")
    import anthropic  # only here: importing it costs seconds

    return anthropic.Anthropic(max_retries=API_MAX_RETRIES, base_url=env.get("ANTHROPIC_BASE_URL") or None,
                               api_key=env.get("ANTHROPIC_API_KEY") or None)


def _log_start(ctx: StepContext, plan: AgentPlan, transcript: Transcript) -> None:
    ctx.properties["transcript"] = str(transcript.path)
    info = {"agent": plan.agent.name, "model": plan.model, "backend": "anthropic",
            "tools": list(plan.grants.names), "skills": [s.name for s in plan.full_skills]}
    if plan.note:
        ctx.log_event("main", "agent_note", plan.note, agent=plan.agent.name)
    if plan.grants.ignored:
        ctx.log_event("main", "agent_note", f"tools not provided here: {', '.join(plan.grants.ignored)}",
                      agent=plan.agent.name)
    ctx.log_event("main", "agent_start", f"{plan.agent.name} on {plan.model}", transcript=str(transcript.path),
                  **info)
    transcript.write("session", task_id=ctx.task_id, step=ctx.step.log_step, system=plan.system,
                     tool_names=list(plan.grants.names), **info)


def _guarded(guard: Guard, ctx: StepContext, agent: str, workspace: Workspace, name: str,
             args: dict[str, Any]) -> ToolResult:
    """The tool call, bracketed by the guard: what it did to protected files is put back, and said."""
    before = guard.snapshot()
    result = workspace.call(name, args)
    changes = guard.check(before)
    if not changes:
        return result
    ctx.log_event("main", "agent_guard", f"{agent}: {name} changed protected files; put back", agent=agent,
                  tool=name, changes=[dataclasses.asdict(c) for c in changes])
    return ToolResult(f"{result.content}\n\n{describe(changes, ctx.root)}", is_error=True)


def _find_subagent(plan: AgentPlan, kind: str) -> defs.AgentDef | None:
    """The agent ``Task`` names: by frontmatter name, then by file stem."""
    return next((a for a in plan.subagents if a.name == kind), None) or next(
        (a for a in plan.subagents if a.path is not None and a.path.stem == kind), None)


class AnthropicSession(PlanSession):
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
        self.usage = Usage(prices=plan.prices)
        self.limits = SpendLimits(ctx)  # --max-cost, --max-run-cost
        self.attempt = 0
        self.tasks = 0  # Task sub-conversations so far
        self.console: list[str] = []  # what BodyResult.output shows
        self.client: anthropic.Anthropic | None = None
        ctx.log.add_secrets(api_key_values())
        self.transcript = Transcript(ctx.state_dir / "transcripts" / f"{ctx.task_id}.jsonl", ctx.log.scrub)
        self.guard = Guard.for_step(ctx)
        self._env = tool_environment(ctx)  # without the agent's own credentials
        self.workspace = Workspace(ctx.root, env=self._env, protected=self.guard.protected, grants=plan.grants)
        self._logged: dict[str, int] = {}  # conversation -> messages already in the transcript

    # ---------------------------------------------------------------- public

    def run(self, feedback: str | None = None) -> BodyResult:
        self.attempt += 1
        plan, ctx = self.plan, self.ctx
        client = self._client()
        if self.attempt == 1:
            _log_start(ctx, plan, self.transcript)
        if not self.messages:
            req.add_user_turn(self.messages, plan.user)
        else:
            text = prompts.feedback_prompt(feedback or "Continue the step.")
            self.transcript.write("feedback", attempt=self.attempt, text=text)
            ctx.log_event("main", "agent_feedback", f"attempt {self.attempt}: failure sent back to {plan.agent.name}",
                          agent=plan.agent.name, attempt=self.attempt)
            req.add_user_turn(self.messages, text)
        outcome = self._converse(client, plan.agent.name, plan.model, req.system_blocks(plan.system),
                                 self._tool_params(plan.grants, depth=0), self.messages, self.workspace, depth=0,
                                 conversation="main")
        result = self._result(outcome)
        if outcome.kind == "cost":  # no retry can help: the limit stays reached
            raise self.limits.failure(outcome.reason, outcome.text, detail=tail(result.output, 20))
        return result

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    # ---------------------------------------------------------------- setup

    def _client(self) -> anthropic.Anthropic:
        if self.client is None:
            self.client = _new_client(self.ctx, self.plan)
        return self.client

    def _tool_params(self, g: Grants, depth: int) -> list[dict[str, Any]]:
        return req.tool_params(g, ((a.name, a.description) for a in self.plan.subagents), depth)

    # ---------------------------------------------------------------- the loop

    def _request(self, client: anthropic.Anthropic, agent: str, model: str, system: list[dict[str, Any]],
                 tools: list[dict[str, Any]], messages: list[dict[str, Any]], conversation: str) -> Any:
        params = req.request_params(model, system, tools, messages, self.plan.prices.family(model).max_output)
        # Each request line carries only the messages the transcript has not seen yet.
        seen = self._logged.get(conversation, 0)
        self.transcript.write("request", agent=agent, conversation=conversation, model=model,
                              max_tokens=params["max_tokens"], messages=len(messages), new_messages=messages[seen:])
        self._logged[conversation] = len(messages) + 1  # + the reply, logged as "response"
        import anthropic

        for _ in range(UNPARSABLE_TURNS):
            try:
                with client.messages.stream(**params) as stream:
                    return stream.get_final_message()
            except anthropic.APIError as exc:
                raise _api_failure(self.ctx, self.plan, self.usage, self.transcript, exc, model) from None
            except TypeError as exc:
                if "authentication" not in str(exc):
                    raise
                # The SDK found no credentials at all (e.g. only ANTHROPIC_PROFILE, pointing nowhere).
                raise BodyFailed(f"STEP {self.ctx.step.ident}: cannot call the Anthropic API: {exc}",
                                 fix="export ANTHROPIC_API_KEY=sk-ant-...") from None
            except ValueError as exc:
                # The SDK cannot parse the tool input the model streamed (a lone surrogate's
                # escape, say): that reply is lost, so the same request is sent again.
                if "tool parameter JSON" not in str(exc):
                    raise
                why = req.printable(str(exc).splitlines()[0])[:500]
                self.transcript.write("error", agent=agent, conversation=conversation, message=why)
                self.ctx.log_event("main", "agent_error", f"{agent}: the model's tool input is not valid JSON; "
                                   "asking again", agent=agent, detail=why)
        raise BodyFailed(f"STEP {self.ctx.step.ident}: the model sent tool input that is not valid JSON "
                         f"{UNPARSABLE_TURNS} times in a row [{self.ctx.task_id}]",
                         fix=f"run the step again; the transcript {self.transcript.path} shows the replies")

    def _converse(self, client: anthropic.Anthropic, agent: str, model: str, system: list[dict[str, Any]],
                  tools: list[dict[str, Any]], messages: list[dict[str, Any]], workspace: Workspace,
                  depth: int, conversation: str) -> _Outcome:
        max_turns = int(self.settings.agent_max_turns)
        budget = int(self.settings.agent_max_tokens)
        turns = 0
        nudged = False
        last_text = ""
        while True:
            stop = _stop(self.usage, self.limits, budget, last_text)
            if stop is not None:
                return stop
            if turns >= max_turns:
                return _Outcome("turns", last_text)
            t0 = time.monotonic()
            response = self._request(client, agent, model, system, tools, messages, conversation)
            turns += 1
            turn = self.usage.add(model, response.usage)
            self.limits.record(turn["cost_usd"])
            content = [p for p in (req.as_param(b) for b in response.content) if p is not None]
            texts = req.printable("\n".join(b["text"] for b in content if b["type"] == "text").strip())
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
                stop_reason=response.stop_reason, tools=[req.printable(c["name"]) for c in calls],
                seconds=round(time.monotonic() - t0, 3), total_tokens=self.usage.total, **turn)
            messages.append({"role": "assistant", "content": content or [{"type": "text", "text": "(no reply)"}]})
            if calls:
                stop = _stop(self.usage, self.limits, budget, last_text)
                why = "the token budget is spent" if stop and stop.kind == "budget" else "the spending limit is reached"
                results = [req.not_run(c, why) if stop else
                           self._call_tool(client, c, agent, model, workspace, depth) for c in calls]
                messages.append({"role": "user", "content": results})
                if stop is not None:
                    return stop
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

    def _call_tool(self, client: anthropic.Anthropic, call: dict[str, Any], agent: str, model: str,
                   workspace: Workspace, depth: int) -> dict[str, Any]:
        name, args = call["name"], call.get("input") or {}
        t0 = time.monotonic()
        label = req.describe_call(name, args)
        name_shown = req.printable(name)
        self.ctx.emit(f"  → {name_shown}: {label}" if depth == 0 else f"    → [{agent}] {name_shown}: {label}")
        self.console.append(f"[{agent}] → {name_shown}: {label}")
        if name == "Task" and depth == 0 and workspace.grants.allows("Task"):
            result = self._task(client, args, model)
        elif name in ("Bash", "Write", "Edit"):  # what can write; Task's own calls are guarded one by one
            result = _guarded(self.guard, self.ctx, agent, workspace, name, args)
        else:
            result = workspace.call(name, args)
        content = self.ctx.log.scrub(result.content)  # the model never sees a key a command printed
        seconds = round(time.monotonic() - t0, 3)
        if result.is_error:
            self.console.append("    " + one_line(content, 400))
        self.transcript.write("tool_result", agent=agent, tool_use_id=call["id"], name=name, input=args,
                              is_error=result.is_error, seconds=seconds, content=content)
        self.ctx.log_event("main", "agent_tool", f"{agent}: {name_shown} {label}"[:300], agent=agent, tool=name_shown,
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
        sub = _find_subagent(self.plan, kind)
        if sub is None:
            known = ", ".join(a.name for a in self.plan.subagents)
            return ToolResult(f"no agent '{kind}'; available: {known}", is_error=True)
        sub_grants = grants(sub.tools, allow_task=False)  # one level deep
        model = parent_model if not sub.model or sub.model == defs.INHERIT else \
            defs.resolve_model(sub.model, self.plan.alias_lines)
        system = prompts.subagent_system_prompt(sub, root=self.ctx.root, tool_names=sub_grants.names)
        workspace = Workspace(self.ctx.root, env=self._env, protected=self.guard.protected, grants=sub_grants)
        self.ctx.log_event("main", "agent_task", f"Task to {sub.name}: {args.get('description', '')}"[:300],
                           agent=sub.name, model=model, parent=self.plan.agent.name)
        messages: list[dict[str, Any]] = [{"role": "user", "content": task_prompt}]
        self.tasks += 1
        outcome = self._converse(client, sub.name, model, req.system_blocks(system),
                                 self._tool_params(sub_grants, depth=1), messages, workspace, depth=1,
                                 conversation=f"task{self.tasks}")
        report = outcome.text or "(the sub-agent wrote no report)"
        if outcome.kind == "done":
            return ToolResult(report)
        why = {"turns": "ran out of turns", "budget": "the token budget is spent",
               "cost": "the spending limit is reached",
               "refusal": "the model refused"}.get(outcome.kind, outcome.kind)
        return ToolResult(f"sub-agent {sub.name} stopped: {why}. Last words: {report}", is_error=True)

    # ---------------------------------------------------------------- result

    def _result(self, outcome: _Outcome) -> BodyResult:
        plan, ctx = self.plan, self.ctx
        ok, summary = _verdict(outcome, plan.agent.name, self.usage, self.settings.agent_max_turns,
                               int(self.settings.agent_max_tokens))
        props = self.usage.properties(plan.agent.name, plan.model)
        props["transcript"] = str(self.transcript.path)
        ctx.properties.update(props)
        self.transcript.write("end", attempt=self.attempt, outcome=outcome.kind, ok=ok, summary=summary, **props)
        ctx.log_event("main", "agent_end", summary, ok=ok, outcome=outcome.kind, attempt=self.attempt, **props)
        output = ctx.log.scrub("\n".join(self.console[-200:]))
        return BodyResult(ok, ctx.log.scrub(summary), output, props)
