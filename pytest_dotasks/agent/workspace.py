"""The project root as the agent's tools see it: Bash, Read, Write and Edit, confined.

File tools resolve every path (symlinks included) and refuse anything that
lands outside the project root, and writes to the plugin's own files (the
plan, the task log, ``.dotasks/``). Bash is not a sandbox: it runs as the
user, in the project root, in its own process group that is killed on
timeout, with its output capped. Every refusal or failure comes back to the
model as an error result (``Workspace.call``), never as an exception.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pytest_dotasks.agent.tools import (
    ALL_TOOLS,
    BASH_DEFAULT_TIMEOUT_MS,
    BASH_MAX_TIMEOUT_MS,
    OUTPUT_CAP,
    READ_DEFAULT_LIMIT,
    READ_LINE_CAP,
    SCHEMAS,
    Grants,
    ToolError,
    ToolResult,
)
from pytest_dotasks.run.process import run_shell


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
