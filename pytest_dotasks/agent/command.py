"""The ``command`` backend: any CLI agent, run as one shell command.

``--agent-backend command --agent-command 'some-cli {prompt}'`` runs a CLI
agent with the whole prompt (system and task) as one shell-quoted argument
(``{prompt_file}`` names a file holding it instead). Its exit code decides;
an explicit ``STEP RESULT: FAILURE`` line fails the step even on exit 0,
since many agent CLIs exit 0 whatever happened. A retry runs it again with
the failure appended to the prompt: a CLI has no conversation to continue.

The CLI gets the step's whole environment, its own credentials included (it
is the agent: it needs them to reach its model). What it does to protected
files (the plan, the task log, ``.dotasks/``, the ini file, conftest.py
files, ``.claude/``) is found after it exits and put back by ``guard.Guard``
before post-validation runs, and said in the step's output and the log.

A CLI agent reports no token usage: ``--max-cost`` and ``--max-run-cost``
(``spending``) cannot be applied to it.
"""

from __future__ import annotations

import dataclasses
import shlex

from pytest_dotasks.agent import prompt as prompts
from pytest_dotasks.agent.guard import Guard, describe
from pytest_dotasks.agent.session import (
    AgentPlan,
    PlanSession,
    Transcript,
    api_key_values,
    combined_prompt,
    one_line,
    step_environment,
)
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.context import BodyResult, StepContext
from pytest_dotasks.run.process import run_shell, tail


def render_command(template: str, prompt_text: str, prompt_file: str) -> str:
    """``{prompt}`` and ``{prompt_file}`` replaced, shell-quoted; without either the prompt is appended."""
    if "{prompt}" not in template and "{prompt_file}" not in template:
        return f"{template} {shlex.quote(prompt_text)}"
    return template.replace("{prompt_file}", shlex.quote(prompt_file)).replace("{prompt}", shlex.quote(prompt_text))


class CommandSession(PlanSession):
    """A CLI agent per attempt; its exit code and its STEP RESULT line decide."""

    def __init__(self, ctx: StepContext, plan: AgentPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.feedback: list[str] = []
        self.attempt = 0
        ctx.log.add_secrets(api_key_values())
        self.transcript = Transcript(ctx.state_dir / "transcripts" / f"{ctx.task_id}.jsonl", ctx.log.scrub)
        self.guard = Guard.for_step(ctx)

    def run(self, feedback: str | None = None) -> BodyResult:
        ctx, plan = self.ctx, self.plan
        template = ctx.settings.agent_command
        if not template:
            raise BodyFailed(f"STEP {ctx.step.ident}: --agent-backend command needs --agent-command [{ctx.task_id}]",
                             fix="e.g. --agent-command 'claude -p {prompt}' (or dotasks_agent_command in the ini)")
        self.attempt += 1
        if feedback:
            self.feedback.append(feedback)
        text = combined_prompt(plan, self.feedback)
        prompt_file = ctx.state_dir / "prompts" / f"{ctx.task_id}.md"
        prompt_file.parent.mkdir(parents=True, exist_ok=True)
        prompt_file.write_text(text, encoding="utf-8")
        out_file = ctx.state_dir / "output" / f"{ctx.task_id}.agent.log"
        out_file.parent.mkdir(parents=True, exist_ok=True)
        command = render_command(template, text, str(prompt_file))
        ctx.properties["transcript"] = str(self.transcript.path)
        ctx.properties["output_file"] = str(out_file)
        ctx.log_event("main", "agent_command", f"agent command (attempt {self.attempt}): {template}",
                      agent=plan.agent.name, command=template, prompt_file=str(prompt_file), attempt=self.attempt)
        self.transcript.write("request", agent=plan.agent.name, command=template, attempt=self.attempt, prompt=text)

        def on_line(line: str) -> None:
            print(line)  # captured by pytest: shown with a failure, live with -s
            ctx.emit(f"  → {line}")

        before = self.guard.snapshot()
        res = run_shell(command, ctx.root, env=step_environment(ctx), on_line=on_line, tee=out_file)
        changes = self.guard.check(before)
        output = ctx.log.scrub(res.output)
        if changes:
            note = describe(changes, ctx.root)
            ctx.log_event("main", "agent_guard", "the agent command changed protected files; put back",
                          agent=plan.agent.name, changes=[dataclasses.asdict(c) for c in changes])
            self.transcript.write("guard", changes=[dataclasses.asdict(c) for c in changes])
            output = f"{output.rstrip()}\n{note}"
        verdict = prompts.parse_verdict(output)
        self.transcript.write("response", agent=plan.agent.name, exit_code=res.returncode,
                              seconds=round(res.seconds, 3), output=output)
        if res.returncode != 0:
            why = verdict.reason if verdict is not None and not verdict.ok and verdict.reason else one_line(output)
            ok, summary = False, f"agent command exited {res.returncode}: {why}"
        elif verdict is not None and not verdict.ok:
            ok, summary = False, f"agent command declared FAILURE: {verdict.reason or one_line(output)}"
        else:
            ok = True
            summary = "agent command exited 0" + (" and declared SUCCESS" if verdict is not None else "")
        if changes:
            summary += f" (it changed {len(changes)} protected path(s); put back)"
        props = {"agent": plan.agent.name, "turns": self.attempt, "transcript": str(self.transcript.path)}
        ctx.properties.update(props)
        ctx.log_event("main", "agent_end", summary, ok=ok, exit_code=res.returncode, attempt=self.attempt,
                      output_tail=tail(output, 10), **props)
        return BodyResult(ok, summary, output, props)

    def close(self) -> None:
        pass
