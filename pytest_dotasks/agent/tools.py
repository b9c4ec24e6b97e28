"""The agent's tools: Bash, Read, Write and Edit, confined to the project root.

Names and input shapes are Claude Code's, so agent definitions written for
Claude Code (``tools: Read, Edit, Bash``) work unchanged:

    Bash  {command, timeout?}            timeout in milliseconds, as in Claude Code
    Read  {file_path, offset?, limit?}   offset is a 1-based line number
    Write {file_path, content}
    Edit  {file_path, old_string, new_string, replace_all?}

File tools resolve every path (symlinks included) and refuse anything that
lands outside the project root, and writes to the plugin's own files (the
plan, the task log, ``.dotasks/``). Bash is not a sandbox: it runs as the
user, in the project root, in its own process group that is killed on
timeout, with its output capped. ``Task`` (a sub-agent) is run by the session;
only its schema lives here. No SDK is imported.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pytest_dotasks.run.process import run_shell

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


SCHEMAS: dict[str, dict[str, Any]] = {
    "Bash": {
        "name": "Bash",
        "description": (
            "Run a shell command (/bin/sh) in the project root and return its combined output and "
            "exit code. Each call is a fresh shell: cd and exported variables do not carry over. "
            f"Default timeout {BASH_DEFAULT_TIMEOUT_MS // 1000}s, at most {BASH_MAX_TIMEOUT_MS // 1000}s; "
            "on timeout the command and all its children are killed. Output beyond "
            f"{OUTPUT_CAP} characters is cut (the end is kept). There is no terminal and no stdin."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "timeout": {"type": "number",
                            "description": f"Timeout in milliseconds (max {BASH_MAX_TIMEOUT_MS})."},
            },
            "required": ["command"],
        },
    },
    "Read": {
        "name": "Read",
        "description": (
            "Read a text file inside the project root. Lines are numbered (cat -n style). "
            f"Reads up to {READ_DEFAULT_LIMIT} lines from the start unless offset/limit are given; "
            f"lines longer than {READ_LINE_CAP} characters are cut."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "Path, relative to the project root or absolute."},
                "offset": {"type": "integer", "description": "1-based line number to start at."},
                "limit": {"type": "integer", "description": "Number of lines to read."},
            },
            "required": ["file_path"],
        },
    },
    "Write": {
        "name": "Write",
        "description": (
            "Write a file inside the project root, replacing it if it exists; missing parent "
            "folders are created."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "Path, relative to the project root or absolute."},
                "content": {"type": "string", "description": "The whole new content of the file."},
            },
            "required": ["file_path", "content"],
        },
    },
    "Edit": {
        "name": "Edit",
        "description": (
            "Replace text in a file inside the project root. old_string must occur exactly once "
            "(include surrounding lines to make it unique) unless replace_all is true."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "Path, relative to the project root or absolute."},
                "old_string": {"type": "string", "description": "The exact text to replace."},
                "new_string": {"type": "string", "description": "The text to put in its place."},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
            },
            "required": ["file_path", "old_string", "new_string"],
        },
    },
}


def task_schema(agents: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The ``Task`` tool, listing the agents a sub-task may go to as (name, description)."""
    listing = "\n".join(f"- {name}: {desc or '(no description)'}" for name, desc in agents)
    return {
        "name": "Task",
        "description": (
            "Hand a focused sub-task to another agent and get its final report back. The sub-agent "
            "starts with no memory of this conversation: put everything it needs in the prompt. "
            "It has the same project root and its own tools (no Task). Available agents:\n" + listing
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "description": {"type": "string", "description": "A short (3-5 word) label for the sub-task."},
                "prompt": {"type": "string", "description": "The complete task for the sub-agent."},
                "subagent_type": {"type": "string", "description": "Name of the agent to use."},
            },
            "required": ["description", "prompt", "subagent_type"],
        },
    }


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


# ------------------------------------------------------------ the workspace

def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class Workspace:
    """The project root as the file tools and Bash see it."""

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        protected: Iterable[Path] = (),
        grants: Grants | None = None,
        cap: int = OUTPUT_CAP,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.env = dict(env) if env is not None else None
        self.protected = [Path(os.path.realpath(p)) for p in protected]
        self.grants = grants or Grants(ALL_TOOLS)
        self.cap = cap

    # ---------------------------------------------------------------- paths

    def resolve(self, file_path: str) -> Path:
        """The real path of ``file_path`` (relative to the root), refused if it leaves the root."""
        if not file_path or not file_path.strip():
            raise ToolError("file_path is empty")
        raw = Path(os.path.expanduser(file_path))
        joined = raw if raw.is_absolute() else self.root / raw
        real = Path(os.path.realpath(joined))
        if not _is_within(real, self.root):
            via = "" if real == Path(os.path.normpath(joined)) else f" (it resolves to {real})"
            raise ToolError(f"refused: {file_path} is outside the project root {self.root}{via}")
        return real

    def _writable(self, file_path: str) -> Path:
        path = self.resolve(file_path)
        for p in self.protected:
            if path == p or p in path.parents:
                raise ToolError(f"refused: {file_path} belongs to pytest-dotasks (plan, task log or .dotasks/); "
                                "the plugin updates it itself")
        return path

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    # ---------------------------------------------------------------- tools

    def read(self, file_path: str, offset: int | None = None, limit: int | None = None) -> str:
        path = self.resolve(file_path)
        if path.is_dir():
            raise ToolError(f"{file_path} is a directory; list it with Bash (ls)")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ToolError(f"{file_path} does not exist") from None
        except OSError as exc:
            raise ToolError(f"cannot read {file_path}: {exc.strerror}") from None
        if b"\0" in data[:8192]:
            return f"{self._rel(path)} is a binary file ({len(data)} bytes); not shown"
        lines = data.decode("utf-8", "replace").splitlines()
        if not lines:
            return f"{self._rel(path)} is empty"
        start = max(1, int(offset or 1))
        count = max(1, int(limit or READ_DEFAULT_LIMIT))
        chosen = lines[start - 1:start - 1 + count]
        if not chosen:
            raise ToolError(f"{file_path} has {len(lines)} lines; offset {start} is past the end")
        out = []
        for n, line in enumerate(chosen, start):
            if len(line) > READ_LINE_CAP:
                line = line[:READ_LINE_CAP] + " [line cut]"
            out.append(f"{n:>6}\t{line}")
        text = "\n".join(out)
        end = start + len(chosen) - 1
        if start > 1 or end < len(lines):
            text += f"\n[lines {start}-{end} of {len(lines)}; use offset and limit for more]"
        return self._cap(text, keep="head")

    def write(self, file_path: str, content: str) -> str:
        path = self._writable(file_path)
        if path.is_dir():
            raise ToolError(f"{file_path} is a directory")
        existed = path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(content)
        except OSError as exc:
            raise ToolError(f"cannot write {file_path}: {exc.strerror}") from None
        verb = "updated" if existed else "created"
        return f"{verb} {self._rel(path)} ({len(content.encode('utf-8'))} bytes)"

    def edit(self, file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> str:
        path = self._writable(file_path)
        if not old_string:
            raise ToolError("old_string is empty; use Write to create or replace a whole file")
        if old_string == new_string:
            raise ToolError("old_string and new_string are the same; nothing to change")
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ToolError(f"{file_path} does not exist; use Write to create it") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ToolError(f"cannot read {file_path}: {exc}") from None
        count = text.count(old_string)
        if count == 0:
            raise ToolError(f"old_string not found in {file_path}; Read the file and copy the text exactly")
        if count > 1 and not replace_all:
            raise ToolError(f"old_string occurs {count} times in {file_path}; include more surrounding text "
                            "to make it unique, or set replace_all")
        text = text.replace(old_string, new_string) if replace_all else text.replace(old_string, new_string, 1)
        try:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            raise ToolError(f"cannot write {file_path}: {exc.strerror}") from None
        n = count if replace_all else 1
        return f"edited {self._rel(path)}: {n} replacement{'s' if n != 1 else ''}"

    def bash(self, command: str, timeout: float | None = None) -> ToolResult:
        if not command.strip():
            raise ToolError("command is empty")
        if not self.grants.bash_allowed(command):
            raise ToolError(f"refused: this agent may only run {', '.join(self.grants.bash_rules)} "
                            "(single commands, no pipes or chains)")
        ms = BASH_DEFAULT_TIMEOUT_MS if timeout is None else min(max(float(timeout), 1.0), BASH_MAX_TIMEOUT_MS)
        res = run_shell(command, self.root, timeout=ms / 1000.0, env=self.env, cap=self.cap * 4)
        text = self._cap(res.output.rstrip("\n"), keep="tail", truncated=res.truncated)
        if res.timed_out:
            text += f"\n[timed out after {ms / 1000:g}s; the command and its children were killed]"
            return ToolResult(text.lstrip("\n"), is_error=True)
        if res.returncode != 0:
            return ToolResult(f"{text}\n[exit code {res.returncode}]".lstrip("\n"), is_error=True)
        return ToolResult(text if text else "(no output)")

    def _cap(self, text: str, *, keep: str, truncated: bool = False) -> str:
        if len(text) <= self.cap and not truncated:
            return text
        if keep == "head":
            return text[:self.cap] + "\n[... output cut ...]"
        return "[... earlier output cut ...]\n" + text[-self.cap:]

    # ---------------------------------------------------------------- dispatch

    def call(self, name: str, args: Mapping[str, Any]) -> ToolResult:
        """Run one tool call; refusals and failures come back as error results, never raised."""
        try:
            if not self.grants.allows(name) or name not in SCHEMAS:
                allowed = ", ".join(self.grants.names) or "none"
                raise ToolError(f"tool {name} is not available to this agent (its tools: {allowed})")
            if not isinstance(args, Mapping):
                raise ToolError(f"{name} input must be an object")
            if name == "Bash":
                timeout = _opt_number(args, "timeout", name)
                return self.bash(_str(args, "command", name), timeout)
            if name == "Read":
                return ToolResult(self.read(_str(args, "file_path", name), _opt_int(args, "offset", name),
                                            _opt_int(args, "limit", name)))
            if name == "Write":
                return ToolResult(self.write(_str(args, "file_path", name), _str(args, "content", name)))
            return ToolResult(self.edit(_str(args, "file_path", name), _str(args, "old_string", name),
                                        _str(args, "new_string", name), bool(args.get("replace_all", False))))
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True)


def _str(args: Mapping[str, Any], key: str, tool: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise ToolError(f"{tool} needs '{key}' (a string)")
    return value


T = TypeVar("T")


def _optional(args: Mapping[str, Any], key: str, tool: str, convert: Callable[[Any], T], what: str) -> T | None:
    value = args.get(key)
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise ToolError(f"{tool}: '{key}' must be {what}") from None


def _opt_int(args: Mapping[str, Any], key: str, tool: str) -> int | None:
    return _optional(args, key, tool, int, "an integer")


def _opt_number(args: Mapping[str, Any], key: str, tool: str) -> float | None:
    return _optional(args, key, tool, float, "a number of milliseconds")
