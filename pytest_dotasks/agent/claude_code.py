"""The ``claude-code`` backend: Claude Code itself, through the Claude Agent SDK.

``--agent-backend claude-code`` drives Claude Code through the Claude Agent
SDK (``pip install 'pytest-dotasks[claude-code]'``, which bundles the
``claude`` CLI): Claude Code's own tools and sub-agents, our system prompt
appended to its own, the session resumed (``resume=session_id``) for each
retry. The SDK is imported when a session runs, never before.

How the CLI is run, and why:

- Permissions: ``permission_mode="dontAsk"`` with the agent's tools as
  ``allowed_tools``. Granted tools run, anything else is denied at once (no
  one is there to answer a prompt). ``bypassPermissions`` is not used: the CLI
  refuses it as root, and it would also bypass the allow list.
- Guard (``claude_code_guard``): a ``PreToolUse`` hook (for sub-agents too) refuses file tools outside
  the project root and writes to protected paths (``guard.write_refusal``:
  the plan, the task log, ``.dotasks/``, the ini file, ``conftest.py``,
  ``.claude/``); around every other tool (Bash above all) ``guard.Guard``
  snapshots the protected set and puts back what the call changed, telling
  the model (``PostToolUse``).
- Bash environment: Claude Code runs each command through
  ``CLAUDE_CODE_SHELL_PREFIX``, a script we write that unsets the agent's own
  credentials unless the step names them in ``env:`` (the rule of
  ``session.tool_environment``; the CLI itself keeps them to log in).
- Spending limits (``spending``): the CLI gets what the step may still spend
  as ``max_budget_usd`` (its own cost estimate; an ``error_max_budget_usd``
  result fails the step), and each reply's usage is counted between turns
  with our price table, for the run's shared ledger too: once a limit is
  reached the CLI is interrupted.
- ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``: no update checks,
  telemetry or session-title requests; only the agent's own API calls.
- Errors: an error result (out of turns...) is a failed attempt like any
  other (``retries:`` apply, tokens and cost counted), also when the SDK
  raises ``ResultError`` after it (its ``query()`` does). The first
  authentication error interrupts the CLI (it would retry a rejected key for
  about three minutes); no credentials at all is reported with the variables
  and login the CLI looks for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.claude_code_guard import ToolGuard, shell_prefix
from pytest_dotasks.agent.session import (
    AgentPlan,
    PlanSession,
    Transcript,
    Usage,
    api_key_values,
    one_line,
    step_environment,
)
from pytest_dotasks.agent.spending import SpendLimits
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext

T = TypeVar("T")
CLAUDE_CODE_EXTRA = "pip install 'pytest-dotasks[claude-code]'"
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")  # what the CLI logs in with
LOGIN_FILE = "~/.claude/.credentials.json"  # where `claude` then /login keeps a login on Linux


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


# ------------------------------------------------------------ options and outcomes

def claude_code_options(sdk: Any, ctx: StepContext, plan: AgentPlan, resume: str | None,
                        hooks: dict[str, Any] | None = None, stderr: Callable[[str], None] | None = None,
                        budget_usd: float | None = None) -> Any:
    """ClaudeAgentOptions for the step, passing only fields this SDK version knows.

    ``budget_usd``: what the step may still spend (``spending``), as the CLI's
    ``--max-budget-usd`` (``max_budget_usd``, claude-agent-sdk 0.1 and later).
    """
    names = list(plan.grants.names)
    allowed = [n for n in names if n != "Bash" or not plan.grants.bash_rules]
    allowed += [f"Bash({rule})" for rule in plan.grants.bash_rules]
    env = {k: v for k, v in step_environment(ctx).items() if k.startswith("DOTASKS_")}
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env["CLAUDE_CODE_SHELL_PREFIX"] = str(shell_prefix(ctx))
    env.update(ctx.env)  # what the run adds: --record/--replay's proxy as ANTHROPIC_BASE_URL, a placeholder key
    wanted: dict[str, Any] = {
        # Claude Code's own system prompt knows its tools; ours (agent, skills, rules) is appended.
        "system_prompt": {"type": "preset", "preset": "claude_code", "append": plan.system},
        "tools": names,  # the exact tool set
        "allowed_tools": allowed,  # run without asking; with dontAsk, nothing else runs
        "permission_mode": "dontAsk",  # works as root, unlike bypassPermissions (see the module doc)
        "cwd": str(ctx.root),
        "model": plan.model,
        "max_turns": int(ctx.settings.agent_max_turns),
        "resume": resume,
        "setting_sources": ["project"],  # .claude/agents and skills for Claude Code's own Task
        "env": env,
        "hooks": hooks,
        "stderr": stderr,
        "max_budget_usd": budget_usd,
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


class _Stop(Exception):
    """Ends the CLI's run early (an authentication failure); carries the step's failure."""

    def __init__(self, failure: BodyFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


def no_credentials(ctx: StepContext) -> BodyFailed:
    """Claude Code found nothing to log in with: say what it looks for, and what is missing."""
    config = os.environ.get("CLAUDE_CONFIG_DIR")
    login = Path(config or "~/.claude").expanduser() / ".credentials.json"
    where = str(login) if config else LOGIN_FILE
    unset = [n for n in CREDENTIALS if not os.environ.get(n)]
    login_state = (f"the Claude Code login in {where} was not accepted (empty or expired)" if login.exists()
                   else f"there is no Claude Code login ({where} is missing)")
    msg = (f"STEP {ctx.step.ident}: Claude Code has no credentials: {', '.join(unset)} "
           f"{'is' if len(unset) == 1 else 'are'} not set, and {login_state} [{ctx.task_id}]")
    return BodyFailed(msg, fix="export ANTHROPIC_API_KEY=sk-ant-... (or ANTHROPIC_AUTH_TOKEN / "
                               "CLAUDE_CODE_OAUTH_TOKEN), or run `claude` once and log in with /login")


def key_rejected(ctx: StepContext, status: int | None, detail: str, source: str | None) -> BodyFailed:
    """The API refused the credentials Claude Code sent; ``source``: where it took them (its init message)."""
    var = source if source in CREDENTIALS else None
    used = var or ("its login" if source in (None, "none") else source)
    return BodyFailed(f"STEP {ctx.step.ident}: the Anthropic API rejected the key ({status or 401} {detail}); "
                      f"Claude Code sent {used} [{ctx.task_id}]",
                      fix=f"check {var} (console.anthropic.com/settings/keys)" if var
                      else "log in again (run `claude`, then /login) or export ANTHROPIC_API_KEY")


class ClaudeCodeSession(PlanSession):
    """Claude Code through ``claude_agent_sdk.ClaudeSDKClient``; retries resume the same session."""

    def __init__(self, ctx: StepContext, plan: AgentPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.session_id: str | None = None
        self.usage = Usage(prices=plan.prices)
        self.limits = SpendLimits(ctx)  # --max-cost, --max-run-cost: the CLI's budget, and checked between turns
        self.attempt = 0
        self.console: list[str] = []
        ctx.log.add_secrets(api_key_values())
        self.transcript = Transcript(ctx.state_dir / "transcripts" / f"{ctx.task_id}.jsonl", ctx.log.scrub)
        self.guard = ToolGuard(ctx, plan.agent.name)

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
        props = self._properties()
        ctx.log_event("main", "agent_end", summary, ok=ok, attempt=self.attempt, **props)
        self.transcript.write("end", attempt=self.attempt, ok=ok, summary=summary, **props)
        return BodyResult(ok, ctx.log.scrub(summary), ctx.log.scrub("\n".join(self.console[-200:])), props)

    def _properties(self) -> dict[str, Any]:
        props = self.usage.properties(self.plan.agent.name, self.plan.model)
        props["transcript"] = str(self.transcript.path)
        self.ctx.properties.update(props)
        return props

    def _on_message(self, sdk: Any, msg: Any, state: dict[str, Any]) -> None:
        ctx, agent = self.ctx, self.plan.agent.name
        data = dataclasses.asdict(msg) if dataclasses.is_dataclass(msg) and not isinstance(msg, type) else repr(msg)
        self.transcript.write("message", kind=type(msg).__name__, data=data)
        if isinstance(msg, sdk.SystemMessage):
            info = msg.data if isinstance(msg.data, dict) else {}
            if msg.subtype == "init":
                state["key_source"] = info.get("apiKeySource")
            elif msg.subtype == "api_retry" and (info.get("error") == "authentication_failed"
                                                 or info.get("error_status") == 401):
                # The CLI would retry a rejected key for minutes: stop at the first refusal.
                raise _Stop(key_rejected(ctx, info.get("error_status"), str(info.get("error") or ""),
                                         state.get("key_source")))
        elif isinstance(msg, sdk.AssistantMessage):
            if getattr(msg, "error", None) == "authentication_failed" and msg.model == "<synthetic>":
                state["no_login"] = True  # "Not logged in · Please run /login": the CLI sent nothing
            self._count_turn(msg, state)
            for block in msg.content:
                if isinstance(block, sdk.TextBlock) and block.text.strip():
                    state["last"] = block.text
                    self.console.append(f"[{agent}] {block.text}")
                    ctx.emit(f"  → {one_line(block.text.splitlines()[0], 160)}")
                elif isinstance(block, sdk.ToolUseBlock):
                    self.console.append(f"[{agent}] → {block.name}")
                    ctx.emit(f"  → {block.name}")
                    ctx.log_event("main", "agent_tool", f"{agent}: {block.name}", agent=agent, tool=block.name)
        elif isinstance(msg, sdk.ResultMessage):
            state["result"] = msg

    def _count_turn(self, msg: Any, state: dict[str, Any]) -> None:
        """A reply's usage (once per API message; Claude Code splits one into a message per block), counted
        against the spending limits between turns: once one is reached, the CLI is stopped."""
        usage, mid = getattr(msg, "usage", None), getattr(msg, "message_id", None)
        if not usage or not self.limits.active or mid in state["turns"]:
            return
        state["turns"][mid] = usage
        cost = Usage(prices=self.plan.prices).add(self.plan.model, usage)["cost_usd"]
        state["spent"] += cost
        self.limits.record(cost)
        why = self.limits.reached(self.usage.cost_usd + state["spent"])
        if why:
            state["limit"] = why
            raise _Stop(self.limits.failure(why, state["last"]))

    def _query(self, sdk: Any, text: str, last: str = "") -> tuple[bool | None, str, str]:
        ctx, plan = self.ctx, self.plan
        why = self.limits.reached(self.usage.cost_usd)
        if why:
            raise self.limits.failure(why, last)
        stderr: list[str] = []
        budget = self.limits.remaining(self.usage.cost_usd)
        options = claude_code_options(sdk, ctx, plan, self.session_id, self.guard.hooks(sdk), stderr.append, budget)
        self.transcript.write("request", agent=plan.agent.name, resume=self.session_id, prompt=text)
        state: dict[str, Any] = {"last": last, "result": None, "turns": {}, "spent": 0.0}

        async def collect() -> None:
            async with sdk.ClaudeSDKClient(options) as client:
                await client.query(text)
                try:
                    async for msg in client.receive_response():
                        self._on_message(sdk, msg, state)
                except _Stop:
                    await client.interrupt()  # ends the CLI's retries now; leaving the block ends the CLI
                    raise

        failure: BodyFailed | None = None
        try:
            _run_async(collect)
        except _Stop as stop:
            failure = stop.failure
        except sdk.CLINotFoundError as exc:
            raise BodyFailed(f"STEP {ctx.step.ident}: Claude Code CLI not found: {exc}",
                             fix="reinstall claude-agent-sdk (it bundles the CLI) or set it up with "
                                 "npm install -g @anthropic-ai/claude-code") from None
        except sdk.ClaudeSDKError as exc:
            # After an error result (out of turns, ...) the CLI may exit non-zero (ResultError, with
            # ``query``): the result, already seen, decides below. Anything else is a crash.
            if state["result"] is None or not isinstance(exc, getattr(sdk, "ResultError", ())):
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                why = f"{first}: {stderr[-1].strip()}" if stderr else first
                failure = BodyFailed(f"STEP {ctx.step.ident}: Claude Code failed: {ctx.log.scrub(why)} "
                                     f"[{ctx.task_id}]", fix="see the transcript " + str(self.transcript.path))
        result = state["result"]
        self._settle_usage(result, state)
        if result is not None and str(getattr(result, "subtype", "")) == "error_max_budget_usd":
            failure = failure or self.limits.failure(
                self.limits.reached(self.usage.cost_usd) or f"Claude Code spent the ${budget or 0:.4f} it was "
                f"given (its own estimate; --max-budget-usd)", state["last"])
        failure = failure or self._api_failure(result, state)
        if failure is not None:
            self._properties()
            self.transcript.write("error", message=failure.message)
            ctx.log_event("main", "agent_error", failure.message, agent=plan.agent.name)
            raise failure
        ok, summary = claude_code_outcome(result, state["last"], plan.agent.name, self.usage,
                                          int(ctx.settings.agent_max_tokens), int(ctx.settings.agent_max_turns))
        return ok, summary, state["last"]

    def _settle_usage(self, result: Any, state: dict[str, Any]) -> None:
        """Fold the query's usage in: the result's (Claude Code's own cost), else the replies counted so far."""
        if result is not None:
            self.session_id = getattr(result, "session_id", None) or self.session_id
            before = self.usage.cost_usd
            add_claude_code_usage(self.usage, self.plan.model, result)
            self.limits.record(self.usage.cost_usd - before - state["spent"])  # the ledger: estimate -> reported
        else:
            for usage in state["turns"].values():  # stopped before a result (a spending limit)
                self.usage.add(self.plan.model, usage)

    def _api_failure(self, result: Any, state: dict[str, Any]) -> BodyFailed | None:
        """The step's failure when Claude Code could not use the API at all (no login, a rejected key)."""
        if state.get("no_login"):
            return no_credentials(self.ctx)
        if getattr(result, "api_error_status", None) == 401:  # the CLI was told not to retry, or gave up
            return key_rejected(self.ctx, 401, one_line(str(getattr(result, "result", "") or "")),
                                state.get("key_source"))
        return None

    def close(self) -> None:
        pass
