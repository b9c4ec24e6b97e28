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
- Guard: a ``PreToolUse`` hook (for sub-agents too) refuses file tools outside
  the project root and writes to protected paths (``guard.write_refusal``:
  the plan, the task log, ``.dotasks/``, the ini file, ``conftest.py``,
  ``.claude/``); around every other tool (Bash above all) ``guard.Guard``
  snapshots the protected set and puts back what the call changed, telling
  the model (``PostToolUse``).
- Bash environment: Claude Code runs each command through
  ``CLAUDE_CODE_SHELL_PREFIX``, a script we write that unsets the agent's own
  credentials unless the step names them in ``env:`` (the rule of
  ``session.tool_environment``; the CLI itself keeps them to log in).
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
import shlex
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pytest_dotasks.agent import guard
from pytest_dotasks.agent import prompt as prompts
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
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext

T = TypeVar("T")
CLAUDE_CODE_EXTRA = "pip install 'pytest-dotasks[claude-code]'"
CREDENTIALS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")  # what the CLI logs in with
LOGIN_FILE = "~/.claude/.credentials.json"  # where `claude` then /login keeps a login on Linux
PATH_ARGS = {"Read": "file_path", "Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path",
             "NotebookEdit": "notebook_path", "Glob": "path", "Grep": "path"}
WRITES = ("Write", "Edit", "MultiEdit", "NotebookEdit")
READ_ONLY = ("Read", "Glob", "Grep", "TodoWrite", "ToolSearch")  # no snapshot of the protected set needed


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


# ------------------------------------------------------------ the Bash environment and the guard

def shell_prefix(ctx: StepContext) -> Path:
    """The script Claude Code runs each Bash command through: ``session.tool_environment``'s rule.

    The agent's own credentials are unset, unless the step names them in ``env:``.
    """
    keep = tool_environment(ctx)
    drop = sorted(k for k in step_environment(ctx) if k not in keep)
    shell = os.environ.get("CLAUDE_CODE_SHELL") or shutil.which("bash") or "/bin/sh"
    path = ctx.state_dir / "claude-code" / f"{ctx.task_id}.bash-env.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    unset = f"unset {' '.join(drop)}\n" if drop else ""
    path.write_text("#!/bin/sh\n# pytest-dotasks: Claude Code's Bash runs without the agent's own credentials\n"
                    f"{unset}exec {shlex.quote(shell)} -c \"$@\"\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def file_refusal(tool: str, args: dict[str, Any], root: Path, protected: list[Path]) -> str | None:
    """Why Claude Code's file tool may not touch the path it names, or None."""
    raw = args.get(PATH_ARGS.get(tool, ""))
    if not isinstance(raw, str) or not raw.strip():
        return None
    given = Path(os.path.expanduser(raw))
    real = Path(os.path.realpath(given if given.is_absolute() else root / given))
    if real != root and root not in real.parents:
        return f"refused: {raw} is outside the project root {root}"
    if tool not in WRITES:
        return None
    why = guard.write_refusal(real, protected, root)
    if why is None and real.is_file() and not real.is_symlink() and real.stat().st_nlink > 1:
        why = "it is a hard link, and its other names may be outside the project root"
    return f"refused: {raw}: {why}" if why else None


class ToolGuard:
    """Claude Code's PreToolUse/PostToolUse hooks: refuse protected writes, undo what other tools changed."""

    def __init__(self, ctx: StepContext, agent: str) -> None:
        self.ctx, self.agent = ctx, agent
        self.root = Path(os.path.realpath(ctx.root))
        self.protected = guard.protected_paths(ctx)
        self.guard = guard.Guard.for_step(ctx)
        self.before: dict[str, guard.Snapshot] = {}

    def hooks(self, sdk: Any) -> dict[str, Any]:
        return {"PreToolUse": [sdk.HookMatcher(hooks=[self.pre], on_failure="block")],
                "PostToolUse": [sdk.HookMatcher(hooks=[self.post])],
                "PostToolUseFailure": [sdk.HookMatcher(hooks=[self.post])]}

    async def pre(self, data: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
        tool, args = str(data.get("tool_name", "")), data.get("tool_input") or {}
        why = file_refusal(tool, args if isinstance(args, dict) else {}, self.root, self.protected)
        if why is not None:
            self.ctx.log_event("main", "agent_refused", f"{self.agent}: {tool} {why}", agent=self.agent, tool=tool)
            return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                           "permissionDecisionReason": why}}
        if tool not in READ_ONLY and tool not in WRITES:
            self.before[tool_use_id or tool] = self.guard.snapshot()
        return {}

    async def post(self, data: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
        before = self.before.pop(tool_use_id or str(data.get("tool_name", "")), None)
        changes = self.guard.check(before) if before is not None else []
        if not changes:
            return {}
        note = guard.describe(changes, self.root)
        self.ctx.log_event("main", "agent_reverted", f"{self.agent}: {note.splitlines()[1]}", agent=self.agent,
                           paths=[str(c.path) for c in changes])
        return {"hookSpecificOutput": {"hookEventName": str(data.get("hook_event_name") or "PostToolUse"),
                                       "additionalContext": note}}


# ------------------------------------------------------------ options and outcomes

def claude_code_options(sdk: Any, ctx: StepContext, plan: AgentPlan, resume: str | None,
                        hooks: dict[str, Any] | None = None, stderr: Callable[[str], None] | None = None) -> Any:
    """ClaudeAgentOptions for the step, passing only fields this SDK version knows."""
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
    msg = (f"STEP {ctx.step.number}: Claude Code has no credentials: {', '.join(unset)} "
           f"{'is' if len(unset) == 1 else 'are'} not set, and {login_state} [{ctx.task_id}]")
    return BodyFailed(msg, fix="export ANTHROPIC_API_KEY=sk-ant-... (or ANTHROPIC_AUTH_TOKEN / "
                               "CLAUDE_CODE_OAUTH_TOKEN), or run `claude` once and log in with /login")


def key_rejected(ctx: StepContext, status: int | None, detail: str, source: str | None) -> BodyFailed:
    """The API refused the credentials Claude Code sent; ``source``: where it took them (its init message)."""
    var = source if source in CREDENTIALS else None
    used = var or ("its login" if source in (None, "none") else source)
    return BodyFailed(f"STEP {ctx.step.number}: the Anthropic API rejected the key ({status or 401} {detail}); "
                      f"Claude Code sent {used} [{ctx.task_id}]",
                      fix=f"check {var} (console.anthropic.com/settings/keys)" if var
                      else "log in again (run `claude`, then /login) or export ANTHROPIC_API_KEY")


class ClaudeCodeSession(PlanSession):
    """Claude Code through ``claude_agent_sdk.ClaudeSDKClient``; retries resume the same session."""

    def __init__(self, ctx: StepContext, plan: AgentPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.session_id: str | None = None
        self.usage = Usage()
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

    def _query(self, sdk: Any, text: str, last: str = "") -> tuple[bool | None, str, str]:
        ctx, plan = self.ctx, self.plan
        stderr: list[str] = []
        options = claude_code_options(sdk, ctx, plan, self.session_id, self.guard.hooks(sdk), stderr.append)
        self.transcript.write("request", agent=plan.agent.name, resume=self.session_id, prompt=text)
        state: dict[str, Any] = {"last": last, "result": None}

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
            raise BodyFailed(f"STEP {ctx.step.number}: Claude Code CLI not found: {exc}",
                             fix="reinstall claude-agent-sdk (it bundles the CLI) or set it up with "
                                 "npm install -g @anthropic-ai/claude-code") from None
        except sdk.ClaudeSDKError as exc:
            # After an error result (out of turns, ...) the CLI may exit non-zero (ResultError, with
            # ``query``): the result, already seen, decides below. Anything else is a crash.
            if state["result"] is None or not isinstance(exc, getattr(sdk, "ResultError", ())):
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                why = f"{first}: {stderr[-1].strip()}" if stderr else first
                failure = BodyFailed(f"STEP {ctx.step.number}: Claude Code failed: {ctx.log.scrub(why)} "
                                     f"[{ctx.task_id}]", fix="see the transcript " + str(self.transcript.path))
        result = state["result"]
        if result is not None:
            self.session_id = getattr(result, "session_id", None) or self.session_id
            add_claude_code_usage(self.usage, plan.model, result)
        failure = failure or self._api_failure(result, state)
        if failure is not None:
            self._properties()
            self.transcript.write("error", message=failure.message)
            ctx.log_event("main", "agent_error", failure.message, agent=plan.agent.name)
            raise failure
        ok, summary = claude_code_outcome(result, state["last"], plan.agent.name, self.usage,
                                          int(ctx.settings.agent_max_tokens), int(ctx.settings.agent_max_turns))
        return ok, summary, state["last"]

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
