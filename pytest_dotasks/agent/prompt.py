"""What the agent is told: the system prompt (agent, skills, rules) and the step's task.

The system prompt holds only what is the same for every step an agent runs
(its definition, its skills, the rules of the run), so the API caches it
across steps; the step itself goes in the first user message. The agent ends
by declaring its result on a last line of its own:

    STEP RESULT: SUCCESS
    STEP RESULT: FAILURE: <one-line reason>

A line, not a dedicated tool, because every backend can honour it: the
anthropic loop, Claude Code through its SDK, and any CLI agent whose output
we only see as text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from pytest_dotasks.agent.definitions import AgentDef, SkillDef
from pytest_dotasks.plan.model import Step

RESULT_PREFIX = "STEP RESULT:"
SUCCESS_LINE = "STEP RESULT: SUCCESS"
FAILURE_LINE = "STEP RESULT: FAILURE: <one-line reason>"

# The declaration starts a line (markdown emphasis allowed); the examples in
# our own instructions are indented, so an agent CLI that echoes its prompt
# does not declare anything by accident.
_VERDICT = re.compile(
    r"^[*_`>]*\s?STEP RESULT\s*:\s*[*_`]*\s*(SUCCESS|FAILURE|FAILED|FAIL)\b[*_`]*\s*(?:[:\-\u2013\u2014]\s*(.*?))?[*_`]*\s*$",
    re.IGNORECASE | re.MULTILINE,
)

NUDGE = (
    "You stopped without declaring the step's result. If the work is done and tested, end with the "
    f"line `{SUCCESS_LINE}`; if it cannot be done, end with `STEP RESULT: FAILURE: <reason>`. "
    "If work remains, continue it first."
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def parse_verdict(text: str) -> Verdict | None:
    """The last ``STEP RESULT:`` line in ``text``, or None when there is none."""
    found = None
    for m in _VERDICT.finditer(text or ""):
        found = m
    if found is None:
        return None
    ok = found.group(1).upper() == "SUCCESS"
    return Verdict(ok, (found.group(2) or "").strip())


def _bullets(items: Sequence[str], code: bool = False) -> str:
    return "\n".join(f"- `{i}`" if code else f"- {i}" for i in items)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def skills_section(full: Sequence[SkillDef], listed: Sequence[SkillDef], root: Path) -> str:
    parts: list[str] = []
    for s in full:
        head = f"## Skill: {s.name}\n"
        if s.description:
            head += f"{s.description}\n"
        if s.allowed_tools is not None:
            head += f"Allowed tools (the skill's allowed-tools): {', '.join(s.allowed_tools) or 'none'}\n"
        files = s.files
        if files:
            head += "More material in this skill (Read it when needed): " + ", ".join(
                _rel(f, root) for f in files) + "\n"
        parts.append(f"{head}\n{s.body}".rstrip())
    if listed:
        lines = "\n".join(f"- {s.name}: {s.description or '(no description)'} ({_rel(s.path, root)})" for s in listed)
        parts.append("## Other skills\nRead a skill's file when it applies to what you are doing:\n" + lines)
    if not parts:
        return ""
    return "# Skills\n\n" + "\n\n".join(parts)


def rules_section(root: Path, tool_names: Sequence[str], *, native_tools: bool = False) -> str:
    lines = [
        "# How this run works",
        ("You are executing one step of this project's implementation plan (SPEC.md). pytest-dotasks runs "
         "the plan and hands you one step at a time; no person is watching, so nobody can answer a question: "
         "decide, and state what you assumed."),
        f"- Project root: {root}. Work there; use paths relative to it.",
    ]
    if not native_tools:
        lines += [
            (f"- Your tools: {', '.join(tool_names) or 'none'}. File tools refuse paths outside the project root. "
             "Each Bash call is a fresh shell in the project root (cd and exports do not carry over), with a "
             "timeout, no terminal and no stdin, and without your own API key (unless the step lists it under "
             "env)."),
            ("- If your instructions mention tools you do not have here (Skill, TodoWrite, BashOutput, "
             "run_in_background), do without them: read a skill's SKILL.md with Read, keep your plan in your "
             "messages, and run long jobs in the foreground within the Bash timeout (or write a script the plan "
             "runs later)."),
        ]
    lines += [
        ("- Do not edit SPEC.md, .task_execution.log, anything under .dotasks/ or .claude/, conftest.py files or "
         "the pytest ini file: pytest-dotasks marks the step and logs the run itself, and puts back any change "
         "made to them."),
        ("- TEST the work before declaring success: run what you wrote (on a small input first), check that "
         "every expected output exists and is not empty, and run each validation command yourself. "
         "pytest-dotasks runs the validations again after you finish; if one fails, the step fails."),
        ("- When you are done, write a short summary of what you did and how you tested it. Its last line "
         "must be exactly one of these (without the indentation):"),
        f"    {SUCCESS_LINE}",
        f"    {FAILURE_LINE}",
        "Declare failure rather than success when the step cannot be completed or its tests do not pass.",
    ]
    return "\n".join(lines)


def system_prompt(
    agent: AgentDef,
    full_skills: Sequence[SkillDef],
    listed_skills: Sequence[SkillDef],
    *,
    root: Path,
    tool_names: Sequence[str],
    native_tools: bool = False,
) -> str:
    """The stable part: agent definition, skills, the rules of the run."""
    parts = [agent.prompt.strip() or f"You are {agent.name}. {agent.description}".strip()]
    skills = skills_section(full_skills, listed_skills, root)
    if skills:
        parts.append(skills)
    parts.append(rules_section(root, tool_names, native_tools=native_tools))
    return "\n\n".join(parts)


def subagent_system_prompt(agent: AgentDef, *, root: Path, tool_names: Sequence[str]) -> str:
    """For a ``Task`` sub-agent: its definition and the working rules, reporting back instead of declaring."""
    body = agent.prompt.strip() or f"You are {agent.name}. {agent.description}".strip()
    return (
        f"{body}\n\n# How this run works\n"
        "Another agent handed you a sub-task of a step of this project's plan; nobody can answer questions, "
        "so decide and state your assumptions.\n"
        f"- Project root: {root}. Your tools: {', '.join(tool_names) or 'none'}. File tools refuse paths "
        "outside the project root; each Bash call is a fresh shell in the project root.\n"
        "- Test what you produce. End with a concise report of what you did, what you verified, and "
        "anything that failed: it is all the other agent will see."
    )


def step_prompt(step: Step, task_id: str | None = None) -> str:
    """The first user message: the step's number, title, description, inputs, outputs and validations."""
    spec = step.path.name if step.path else "SPEC.md"
    lines = [f"Execute STEP {step.ident} of {spec}: {step.title}"]
    meta = []
    if step.phase:
        meta.append(f"phase: {step.phase}")
    if step.value("kind"):
        meta.append(f"kind: {step.value('kind')}")
    if step.value("timeout"):
        meta.append(f"time limit for the whole step: {step.value('timeout')}")
    if task_id:
        meta.append(f"task id: {task_id}")
    if meta:
        lines.append("(" + "; ".join(meta) + ")")
    description = step.description.strip()
    lines += ["", "## What to do", description or "(The plan gives no more detail than the title.)"]
    sections = [
        ("## Inputs (already present)", step.items("inputs"), False),
        ("## Expected outputs (must exist and be non-empty when you finish)", step.items("outputs"), False),
        ("## Validation (run after you finish, in the project root; each must exit 0)", step.values("validate"),
         True),
        ("## Metrics (recorded after you finish)", step.values("metrics"), False),
    ]
    for title, values, code in sections:
        if values:
            lines += ["", title, _bullets(values, code)]
    files = [(label, text) for label, text in step.context if not label.startswith("Requirement ")]
    pasted = [(label, text) for label, text in step.context if label.startswith("Requirement ")]
    if files:  # Spec Kit's spec.md, plan.md, contracts/; Kiro's requirements.md, design.md
        lines += ["", "## Design documents (read them when you need them)",
                  "\n".join(f"- {label}: {text}" for label, text in files)]
    if pasted:  # Kiro's _Requirements: 1.2_
        lines += ["", "## Requirements this task implements"] + [f"{label}: {text}" for label, text in pasted]
    lines += [
        "",
        "## Done when",
        ("The work is done and TESTED: run it before assuming it works, check the expected outputs and run "
         "the validations yourself. Then end your final message with the STEP RESULT line."),
    ]
    return "\n".join(lines)


def feedback_prompt(feedback: str) -> str:
    """A later attempt: the failure pytest-dotasks saw, sent back into the same conversation."""
    return (
        "The step is not done yet. pytest-dotasks reports:\n\n"
        f"{feedback.strip()}\n\n"
        "Find the cause, fix it, test again, and end with the STEP RESULT line as before."
    )
