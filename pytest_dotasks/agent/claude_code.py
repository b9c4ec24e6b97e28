"""The ``claude-code`` backend: Claude Code itself, through the Claude Agent SDK.

``--agent-backend claude-code`` drives Claude Code through the Claude Agent
SDK (``pip install 'pytest-dotasks[claude-code]'``): Claude Code's own tools
and sub-agents, our system prompt appended to its own, the session resumed
(``resume=session_id``) for each retry. The SDK is imported when a session
runs, never before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.session import AgentPlan, Transcript, Usage, api_key_values, one_line, step_environment
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext

T = TypeVar("T")
CLAUDE_CODE_EXTRA = "pip install 'pytest-dotasks[claude-code]'"


def import_claude_agent_sdk() -> Any:
    try:
        return importlib.import_module("claude_agent_sdk")  # optional extra: typed as Any on purpose
    except ImportError:
        raise BodyFailed("--agent-backend claude-code needs the Claude Agent SDK (claude_agent_sdk), "
                         "which is not installed", fix=CLAUDE_CODE_EXTRA) from None


def _run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to the end from sync code, even when this thread already has a loop."""
    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def claude_code_options(sdk: Any, ctx: StepContext, plan: AgentPlan, resume: str | None) -> Any:
    """ClaudeAgentOptions for the step, passing only fields this SDK version knows."""
    names = list(plan.grants.names)
    allowed = [n for n in names if n != "Bash" or not plan.grants.bash_rules]
    allowed += [f"Bash({rule})" for rule in plan.grants.bash_rules]
    env = {k: v for k, v in step_environment(ctx).items() if k.startswith("DOTASKS_")}
    wanted: dict[str, Any] = {
        # Claude Code's own system prompt knows its tools; ours (agent, skills, rules) is appended.
        "system_prompt": {"type": "preset", "preset": "claude_code", "append": plan.system},
        "tools": names,  # the exact tool set (newer SDKs)
        "allowed_tools": allowed,  # run without asking
        "permission_mode": "acceptEdits",
        "cwd": str(ctx.root),
        "model": plan.model,
        "max_turns": int(ctx.settings.agent_max_turns),
        "resume": resume,
        "setting_sources": ["project"],  # .claude/agents and skills for Claude Code's own Task
        "env": env,
    }
    known = {f.name for f in dataclasses.fields(sdk.ClaudeAgentOptions)}
    return sdk.ClaudeAgentOptions(**{k: v for k, v in wanted.items() if k in known and v is not None})


def claude_code_outcome(result: Any, last_text: str, agent: str, usage: Usage, budget: int,
                        max_turns: int) -> tuple[bool | None, str]:
    """(ok, summary) from Claude Code's ResultMessage; ok None: no result line declared yet."""
    if result is None:
        return False, f"Claude Code ended without a result; last words: {one_line(last_text)}"
    subtype = str(getattr(result, "subtype", "") or "")
    if subtype == "error_max_turns":
        return False, f"{agent} ran out of turns ({max_turns} per attempt); last words: {one_line(last_text)}"
    if getattr(result, "is_error", False) or subtype.startswith("error"):
        errors = getattr(result, "errors", None) or []
        why = "; ".join(errors) if errors else (getattr(result, "result", None) or subtype or "error")
        return False, f"Claude Code stopped with an error: {one_line(str(why))}"
    if usage.total >= budget:
        return False, (f"{agent} spent its token budget ({usage.total:,} of {budget:,} tokens); "
                       f"last words: {one_line(last_text)}")
    text = getattr(result, "result", None) or last_text
    verdict = prompts.parse_verdict(text)
    if verdict is None:
        return None, f"{agent} stopped without declaring a result; last words: {one_line(text)}"
    if verdict.ok:
        return True, f"{agent} declared SUCCESS" + (f": {verdict.reason}" if verdict.reason else "")
    return False, f"{agent} declared FAILURE: {verdict.reason or one_line(text)}"


def add_claude_code_usage(usage: Usage, model: str, result: Any) -> None:
    """Fold a ResultMessage's usage and cost into ``usage`` (Claude Code's own cost when it reports one)."""
    before = usage.cost_usd
    usage.add(model, getattr(result, "usage", None) or {})
    usage.turns += max(0, int(getattr(result, "num_turns", 1) or 1) - 1)
    reported = getattr(result, "total_cost_usd", None)
    if reported is not None:
        usage.cost_usd = before + float(reported)


class ClaudeCodeSession:
    """Claude Code through ``claude_agent_sdk.query``; retries resume the same session."""

    def __init__(self, ctx: StepContext, plan: AgentPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.session_id: str | None = None
        self.usage = Usage()
        self.attempt = 0
        self.console: list[str] = []
        ctx.log.add_secrets(api_key_values())
        self.transcript = Transcript(ctx.state_dir / "transcripts" / f"{ctx.task_id}.jsonl", ctx.log.scrub)

    def run(self, feedback: str | None = None) -> BodyResult:
        sdk = import_claude_agent_sdk()
        ctx, plan = self.ctx, self.plan
        self.attempt += 1
        ctx.properties["transcript"] = str(self.transcript.path)
        text = plan.user if self.session_id is None else prompts.feedback_prompt(feedback or "Continue the step.")
        ctx.log_event("main", "agent_start" if self.attempt == 1 else "agent_feedback",
                      f"{plan.agent.name} on {plan.model} via Claude Code (attempt {self.attempt})",
                      agent=plan.agent.name, model=plan.model, backend="claude-code", attempt=self.attempt)
        ok, summary, last = self._query(sdk, text)
        if ok is None:  # no STEP RESULT line: ask once, in the same session
            ok, summary, last = self._query(sdk, prompts.NUDGE, last)
            ok = bool(ok)
        props = self.usage.properties(plan.agent.name, plan.model)
        props["transcript"] = str(self.transcript.path)
        ctx.properties.update(props)
        ctx.log_event("main", "agent_end", summary, ok=ok, attempt=self.attempt, **props)
        self.transcript.write("end", attempt=self.attempt, ok=ok, summary=summary, **props)
        return BodyResult(ok, ctx.log.scrub(summary), ctx.log.scrub("\n".join(self.console[-200:])), props)

    def _query(self, sdk: Any, text: str, last: str = "") -> tuple[bool | None, str, str]:
        ctx, plan = self.ctx, self.plan
        options = claude_code_options(sdk, ctx, plan, self.session_id)
        self.transcript.write("request", agent=plan.agent.name, resume=self.session_id, prompt=text)
        state: dict[str, Any] = {"last": last, "result": None}

        def on_message(msg: Any) -> None:
            data = dataclasses.asdict(msg) if dataclasses.is_dataclass(msg) and not isinstance(msg, type) else repr(msg)
            self.transcript.write("message", kind=type(msg).__name__, data=data)
            if isinstance(msg, sdk.AssistantMessage):
                for block in msg.content:
                    if isinstance(block, sdk.TextBlock) and block.text.strip():
                        state["last"] = block.text
                        self.console.append(f"[{plan.agent.name}] {block.text}")
                        ctx.emit(f"  → {one_line(block.text.splitlines()[0], 160)}")
                    elif isinstance(block, sdk.ToolUseBlock):
                        self.console.append(f"[{plan.agent.name}] → {block.name}")
                        ctx.emit(f"  → {block.name}")
                        ctx.log_event("main", "agent_tool", f"{plan.agent.name}: {block.name}",
                                      agent=plan.agent.name, tool=block.name)
            elif isinstance(msg, sdk.ResultMessage):
                state["result"] = msg

        async def collect() -> None:
            async for msg in sdk.query(prompt=text, options=options):
                on_message(msg)

        try:
            _run_async(collect)
        except sdk.CLINotFoundError as exc:
            raise BodyFailed(f"STEP {ctx.step.number}: Claude Code CLI not found: {exc}",
                             fix="reinstall claude-agent-sdk (it bundles the CLI) or set it up with "
                                 "npm install -g @anthropic-ai/claude-code") from None
        except sdk.ClaudeSDKError as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise BodyFailed(f"STEP {ctx.step.number}: Claude Code failed: {ctx.log.scrub(first)} [{ctx.task_id}]",
                             fix="see the transcript " + str(self.transcript.path)) from None
        result = state["result"]
        if result is not None:
            self.session_id = getattr(result, "session_id", None) or self.session_id
            add_claude_code_usage(self.usage, plan.model, result)
        ok, summary = claude_code_outcome(result, state["last"], plan.agent.name, self.usage,
                                          int(ctx.settings.agent_max_tokens), int(ctx.settings.agent_max_turns))
        return ok, summary, state["last"]

    def close(self) -> None:
        pass

