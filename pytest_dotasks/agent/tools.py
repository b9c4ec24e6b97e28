"""The agent's tools as the model sees them, and which of them an agent is granted.

Names and input shapes are Claude Code's, so agent definitions written for
Claude Code (``tools: Read, Edit, Bash``) work unchanged:

    Bash  {command, timeout?}            timeout in milliseconds, as in Claude Code
    Read  {file_path, offset?, limit?}   offset is a 1-based line number
    Write {file_path, content}
    Edit  {file_path, old_string, new_string, replace_all?}

The tools themselves run in ``workspace.py``. ``Task`` (a sub-agent) is run
by the session; only its schema lives here. No SDK is imported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

BASH_DEFAULT_TIMEOUT_MS = 120_000
BASH_MAX_TIMEOUT_MS = 600_000
OUTPUT_CAP = 30_000  # characters of tool output handed back to the model (Claude Code's figure)
READ_DEFAULT_LIMIT = 2_000  # lines
READ_LINE_CAP = 2_000  # characters per line

FILE_TOOLS = ("Read", "Write", "Edit")
ALL_TOOLS = ("Bash", "Read", "Write", "Edit", "Task")


class ToolError(Exception):
    """A refused or failed tool call; its text goes back to the model as an error result."""


@dataclasses.dataclass
class ToolResult:
    content: str
    is_error: bool = False


def _tool(name: str, description: str, required: list[str], /, **properties: tuple[str, str]) -> dict[str, Any]:
    """A tool as the Messages API takes it; ``properties`` as name=(JSON type, description), in order."""
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": {key: {"type": kind, "description": text} for key, (kind, text) in properties.items()},
            "required": required,
        },
    }


_FILE_PATH = ("string", "Path, relative to the project root or absolute.")

SCHEMAS: dict[str, dict[str, Any]] = {
    "Bash": _tool(
        "Bash",
        "Run a shell command (/bin/sh) in the project root and return its combined output and "
        "exit code. Each call is a fresh shell: cd and exported variables do not carry over. "
        f"Default timeout {BASH_DEFAULT_TIMEOUT_MS // 1000}s, at most {BASH_MAX_TIMEOUT_MS // 1000}s; "
        "on timeout the command and all its children are killed. Output beyond "
        f"{OUTPUT_CAP} characters is cut (the end is kept). There is no terminal and no stdin.",
        ["command"],
        command=("string", "The command to run."),
        timeout=("number", f"Timeout in milliseconds (max {BASH_MAX_TIMEOUT_MS})."),
    ),
    "Read": _tool(
        "Read",
        "Read a text file inside the project root. Lines are numbered (cat -n style). "
        f"Reads up to {READ_DEFAULT_LIMIT} lines from the start unless offset/limit are given; "
        f"lines longer than {READ_LINE_CAP} characters are cut.",
        ["file_path"],
        file_path=_FILE_PATH,
        offset=("integer", "1-based line number to start at."),
        limit=("integer", "Number of lines to read."),
    ),
    "Write": _tool(
        "Write",
        "Write a file inside the project root, replacing it if it exists; missing parent folders are created.",
        ["file_path", "content"],
        file_path=_FILE_PATH,
        content=("string", "The whole new content of the file."),
    ),
    "Edit": _tool(
        "Edit",
        "Replace text in a file inside the project root. old_string must occur exactly once "
        "(include surrounding lines to make it unique) unless replace_all is true.",
        ["file_path", "old_string", "new_string"],
        file_path=_FILE_PATH,
        old_string=("string", "The exact text to replace."),
        new_string=("string", "The text to put in its place."),
        replace_all=("boolean", "Replace every occurrence (default false)."),
    ),
}


def task_schema(agents: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The ``Task`` tool, listing the agents a sub-task may go to as (name, description)."""
    listing = "\n".join(f"- {name}: {desc or '(no description)'}" for name, desc in agents)
    return _tool(
        "Task",
        "Hand a focused sub-task to another agent and get its final report back. The sub-agent "
        "starts with no memory of this conversation: put everything it needs in the prompt. "
        "It has the same project root and its own tools (no Task). Available agents:\n" + listing,
        ["description", "prompt", "subagent_type"],
        description=("string", "A short (3-5 word) label for the sub-task."),
        prompt=("string", "The complete task for the sub-agent."),
        subagent_type=("string", "Name of the agent to use."),
    )


# ------------------------------------------------------------ grants

_BASH_PATTERN = re.compile(r"^Bash\((.*)\)$", re.DOTALL)
_SHELL_META = re.compile(r"[;&|<>`$\n()]")


@dataclasses.dataclass(frozen=True)
class Grants:
    """The tools an agent may call; ``bash_rules`` narrow Bash to Claude Code rules like ``Bash(git diff:*)``."""

    names: tuple[str, ...]
    bash_rules: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # names in the definition we do not provide (Glob, WebFetch, ...)

    def allows(self, name: str) -> bool:
        return name in self.names

    def bash_allowed(self, command: str) -> bool:
        if not self.bash_rules:
            return True
        cmd = command.strip()
        if _SHELL_META.search(cmd):
            return False  # a rule grants one command, not a pipeline or a chain
        for rule in self.bash_rules:
            prefix = rule[:-2] if rule.endswith(":*") else rule[:-1] if rule.endswith("*") else None
            if prefix is None:
                if cmd == rule.strip():
                    return True
            elif cmd == prefix.strip() or cmd.startswith(prefix.rstrip() + " ") or (
                    prefix.endswith(" ") and cmd.startswith(prefix)):
                return True
        return False


def grants(tools: tuple[str, ...] | None, *, allow_task: bool = True) -> Grants:
    """What an agent's ``tools`` field grants. None (field absent) grants every tool."""
    if tools is None:
        names = [t for t in ALL_TOOLS if allow_task or t != "Task"]
        return Grants(tuple(names))
    names = []
    rules: list[str] = []
    ignored: list[str] = []
    plain_bash = False
    for raw in tools:
        name = raw.strip()
        m = _BASH_PATTERN.match(name)
        if m:
            rule = m.group(1).strip()
            if rule in ("", "*"):
                plain_bash = True
            else:
                rules.append(rule)
            name = "Bash"
        elif name == "Bash":
            plain_bash = True
        if name in ALL_TOOLS:
            if name == "Task" and not allow_task:
                continue
            if name not in names:
                names.append(name)
        else:
            ignored.append(name)
    ordered = tuple(t for t in ALL_TOOLS if t in names)
    return Grants(ordered, () if plain_bash else tuple(rules), tuple(ignored))
