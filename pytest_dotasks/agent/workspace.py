"""The project root as the agent's tools see it: Bash, Read, Write and Edit, confined.

File tools resolve every path (symlinks included) and refuse anything that
lands outside the project root, files with more than one hard link (another
name for the same file may lie outside the root, and no check short of
scanning the disk finds it; copy such a file first), and writes to what
configures or records the run (``guard.write_refusal``: the plan, the task
log, ``.dotasks/``, the ini file, conftest.py files, ``.claude/``). Writes go
to a temporary file that replaces the target in one rename, the old mode
kept, so a failed write never leaves an emptied or half-written file.

Bash is not a sandbox: it runs as the user, in the project root, in its own
process group that is killed on timeout, with its output capped, and with
the environment it is given (the session strips the agent's own
credentials). The session's ``guard.Guard`` undoes what it does to protected
files.

Every refusal, odd input (a NUL byte, a lone surrogate, a 5,000-character
path, ``offset: Infinity``) or failure comes back to the model as an error
result from ``Workspace.call``, never as an exception.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pytest_dotasks.agent.fileio import atomic_write, read_regular
from pytest_dotasks.agent.guard import write_refusal
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

PATH_MAX = 4096  # bytes, Linux's limit for a whole path
READ_MAX_BYTES = 64 << 20  # Read refuses bigger files: use Bash (head, sed -n) on those


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
        size = len(_encoded(file_path, "file_path"))
        if size > PATH_MAX:
            raise ToolError(f"file_path is {size:,} bytes long; paths are limited to {PATH_MAX:,}")
        raw = Path(os.path.expanduser(file_path))
        joined = raw if raw.is_absolute() else self.root / raw
        real = Path(os.path.realpath(joined))
        if not _is_within(real, self.root):
            via = "" if real == Path(os.path.normpath(joined)) else f" (it resolves to {real})"
            raise ToolError(f"refused: {file_path} is outside the project root {self.root}{via}")
        return real

    def _writable(self, file_path: str) -> Path:
        path = self.resolve(file_path)
        why = write_refusal(path, self.protected, self.root)
        if why is not None:
            raise ToolError(f"refused: {file_path} {why}")
        return path

    def _existing(self, path: Path, file_path: str) -> os.stat_result | None:
        """The target's stat, None when it does not exist; refused when it is no plain, singly linked file."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            raise ToolError(f"{file_path} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"refused: {file_path} is not a regular file (a FIFO, socket or device)")
        if st.st_nlink > 1:
            raise ToolError(f"refused: {file_path} has {st.st_nlink} hard links; another name for it may lie "
                            "outside the project root. Copy it (cp) and use the copy")
        return st

    def _read_text(self, path: Path, file_path: str) -> tuple[os.stat_result, bytes]:
        if self._existing(path, file_path) is None:
            raise ToolError(f"{file_path} does not exist")
        try:
            st, data = read_regular(path, READ_MAX_BYTES)
        except OSError as exc:
            raise ToolError(f"cannot read {file_path}: {exc.strerror or exc}") from None
        if data is None:
            raise ToolError(f"{file_path} is {st.st_size:,} bytes, more than Read takes "
                            f"({READ_MAX_BYTES:,}); look at parts of it with Bash (head, tail, sed -n)")
        return st, data

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    # ---------------------------------------------------------------- tools

    def read(self, file_path: str, offset: int | None = None, limit: int | None = None) -> str:
        path = self.resolve(file_path)
        if path.is_dir():
            raise ToolError(f"{file_path} is a directory; list it with Bash (ls)")
        _, data = self._read_text(path, file_path)
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
        data = _encoded(content, "content")  # before anything is touched
        path = self._writable(file_path)
        st = self._existing(path, file_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data, stat.S_IMODE(st.st_mode) if st is not None else None)
        except OSError as exc:
            raise ToolError(f"cannot write {file_path}: {exc.strerror or exc}; the file is unchanged") from None
        verb = "updated" if st is not None else "created"
        return f"{verb} {self._rel(path)} ({len(data)} bytes)"

    def edit(self, file_path: str, old_string: str, new_string: str, replace_all: bool = False) -> str:
        path = self._writable(file_path)
        if not old_string:
            raise ToolError("old_string is empty; use Write to create or replace a whole file")
        if old_string == new_string:
            raise ToolError("old_string and new_string are the same; nothing to change")
        if not path.exists() and not path.is_symlink():
            raise ToolError(f"{file_path} does not exist; use Write to create it")
        st, raw = self._read_text(path, file_path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(f"cannot edit {file_path}: it is not UTF-8 text ({exc.reason} at byte {exc.start})") \
                from None
        count = text.count(old_string)
        if count == 0:
            raise ToolError(f"old_string not found in {file_path}; Read the file and copy the text exactly")
        if count > 1 and not replace_all:
            raise ToolError(f"old_string occurs {count} times in {file_path}; include more surrounding text "
                            "to make it unique, or set replace_all")
        text = text.replace(old_string, new_string) if replace_all else text.replace(old_string, new_string, 1)
        data = _encoded(text, "new_string")
        try:
            atomic_write(path, data, stat.S_IMODE(st.st_mode))
        except OSError as exc:
            raise ToolError(f"cannot write {file_path}: {exc.strerror or exc}; the file is unchanged") from None
        n = count if replace_all else 1
        return f"edited {self._rel(path)}: {n} replacement{'s' if n != 1 else ''}"

    def bash(self, command: str, timeout: float | None = None) -> ToolResult:
        if not command.strip():
            raise ToolError("command is empty")
        if "\0" in command:
            raise ToolError(f"command holds a NUL byte at {command.index(chr(0))}; no shell command can carry one")
        _encoded(command, "command")
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
        """Run one tool call; refusals, odd inputs and failures come back as error results, never raised."""
        try:
            if not self.grants.allows(name) or name not in SCHEMAS:
                allowed = ", ".join(self.grants.names) or "none"
                raise ToolError(f"tool {_printable(name)} is not available to this agent (its tools: {allowed})")
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
                                        _str(args, "new_string", name), _opt_bool(args, "replace_all", name)))
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True)
        except (OSError, ValueError, OverflowError) as exc:  # what the checks above did not foresee
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return ToolResult(f"{name} failed: {_printable(detail)}", is_error=True)


def _printable(text: str) -> str:
    """``text`` with lone surrogates escaped: safe to log, print and encode as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encoded(text: str, key: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end].encode("unicode_escape").decode("ascii")
        raise ToolError(f"'{key}' holds a lone surrogate ({bad} at character {exc.start}), which is not "
                        "valid Unicode text; send the characters themselves") from None


def _str(args: Mapping[str, Any], key: str, tool: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise ToolError(f"{tool} needs '{key}' (a string)")
    if key == "file_path":
        if "\0" in value:
            raise ToolError(f"{tool}: 'file_path' holds a NUL byte; no file name can contain one")
        _encoded(value, key)
    return value


T = TypeVar("T")


def _optional(args: Mapping[str, Any], key: str, tool: str, convert: Callable[[Any], T], what: str) -> T | None:
    value = args.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(value)
        return convert(value)
    except (TypeError, ValueError, OverflowError):
        raise ToolError(f"{tool}: '{key}' must be {what}") from None


def _opt_int(args: Mapping[str, Any], key: str, tool: str) -> int | None:
    return _optional(args, key, tool, int, "an integer")


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _opt_number(args: Mapping[str, Any], key: str, tool: str) -> float | None:
    return _optional(args, key, tool, _finite, "a number of milliseconds")


def _opt_bool(args: Mapping[str, Any], key: str, tool: str) -> bool:
    value = args.get(key, False)
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ToolError(f"{tool}: '{key}' must be true or false")
