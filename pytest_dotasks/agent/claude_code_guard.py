"""Claude Code's Bash environment and its guard (the ``claude-code`` backend, see ``claude_code``).

- ``shell_prefix``: the script Claude Code runs each Bash command through
  (``CLAUDE_CODE_SHELL_PREFIX``), unsetting the agent's own credentials unless
  the step names them in ``env:`` (the rule of ``session.tool_environment``).
- ``ToolGuard``: the ``PreToolUse`` hook refuses file tools outside the project
  root and writes to protected paths; around every other tool (Bash above all)
  ``guard.Guard`` snapshots the protected set and ``PostToolUse`` puts back what
  the call changed, telling the model.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from pytest_dotasks.agent import guard
from pytest_dotasks.agent.session import step_environment, tool_environment
from pytest_dotasks.run.context import StepContext

PATH_ARGS = {"Read": "file_path", "Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path",
             "NotebookEdit": "notebook_path", "Glob": "path", "Grep": "path"}
WRITES = ("Write", "Edit", "MultiEdit", "NotebookEdit")
READ_ONLY = ("Read", "Glob", "Grep", "TodoWrite", "ToolSearch")  # no snapshot of the protected set needed


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
