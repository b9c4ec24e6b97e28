"""The agent room's public face: open a step's session, or show what it would be sent.

``open_session(ctx)`` resolves the step's agent, model, skills and prompts
(``session.plan_for``) and starts the backend ``--agent-backend`` names:
``anthropic`` (``anthropic_api``), ``claude-code`` (``claude_code``) or
``command`` (``command``). Each backend module is imported only when chosen:
the anthropic one pulls in nothing heavy until it talks to the API, the
claude-code one needs an optional extra.

``render_prompt(ctx)`` is what ``--dry-run`` shows: the choices and both
prompts, with no session opened and nothing called.
"""

from __future__ import annotations

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent.pricing import PricesError
from pytest_dotasks.agent.session import AgentPlan, plan_for
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import AgentSession, StepContext


def report_warnings(ctx: StepContext, plan: AgentPlan) -> None:
    """The definition files' problems that concern this step: a live line and a task-log event each."""
    for w in plan.warnings:
        shown = w.show(ctx.root)
        ctx.emit(f"[WARN] {shown}")
        ctx.log_event("main", "agent_warning", shown, path=str(w.path), line=w.line, agent=plan.agent.name)


def open_session(ctx: StepContext) -> AgentSession:
    """The session for ``ctx``'s step, on the backend ``--agent-backend`` names.

    A definition or price table that cannot be used fails the step (BodyFailed
    naming the file); the problems it survived are reported (``report_warnings``).
    """
    backend = ctx.settings.agent_backend
    try:
        plan = plan_for(ctx, native_tools=backend != "anthropic")
    except (defs.DefinitionError, PricesError) as exc:
        raise BodyFailed(exc.message, path=exc.path, line=exc.line, fix=exc.fix) from None
    report_warnings(ctx, plan)
    if backend == "anthropic":
        from pytest_dotasks.agent.anthropic_api import AnthropicSession

        return AnthropicSession(ctx, plan)
    if backend == "claude-code":
        from pytest_dotasks.agent.claude_code import ClaudeCodeSession

        return ClaudeCodeSession(ctx, plan)
    if backend == "command":
        from pytest_dotasks.agent.command import CommandSession

        return CommandSession(ctx, plan)
    raise BodyFailed(f"unknown agent backend '{backend}'", fix="use --agent-backend anthropic, claude-code or command")


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
    head += [f"[warning] {w.show(ctx.root)}" for w in plan.warnings]
    return "\n".join(head + ["", "----- system prompt -----", plan.system, "", "----- prompt -----", plan.user])
