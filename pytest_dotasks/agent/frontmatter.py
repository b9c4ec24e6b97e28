"""Frontmatter of agent and skill files, read as leniently as Claude Code reads it.

Agent and skill files found in the wild are not always valid YAML: an
unquoted ``: `` in a description, a flow list next to such a line, a key
written twice, ``# comments`` after values, no frontmatter at all. Claude Code
loads them anyway, and so do we: strict YAML first; when it fails, a
line-based ``key: value`` reading (flow lists ``[a, "b"]``, block lists
``- a``, indented continuation lines, ``|``/``>`` blocks, `` # comments``
stripped as YAML would). Each fallback is a ``Problem`` (file, line, what was
done) for the caller to show; nothing here prints or warns.

A file is unreadable only when its meaning cannot be guessed: the frontmatter
is never closed, is a list or a scalar rather than keys, or a list-valued key
(``tools``, ``skills``, ``allowed-tools``) or ``name`` cannot be read. Those
raise ``DefinitionError`` naming the file, the line and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import DotasksError

# Keys whose value is a list of names: a value we cannot read there makes the file unusable.
LIST_KEYS = ("tools", "skills", "allowed-tools", "allowed_tools")
_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s?(.*)$")
_BLOCK = ("|", "|-", "|+", ">", ">-", ">+")


class DefinitionError(DotasksError):
    """An agent or skill file is malformed, or a named one does not exist."""

    phase = "main"


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong but survivable in a definition file: shown as a warning, never raised."""

    path: Path
    line: int
    message: str
    subject: str = ""  # the agent or skill name it concerns, when it concerns one (duplicates)

    def show(self, root: Path | None = None) -> str:
        """``path:line: message``, the path relative to ``root`` when it is inside it."""
        path = self.path
        if root is not None:
            try:
                path = self.path.relative_to(root)
            except ValueError:
                pass
        return f"{path}:{self.line}: {self.message}" if self.line else f"{path}: {self.message}"

    def __str__(self) -> str:
        return self.show()


@dataclasses.dataclass(frozen=True)
class Frontmatter:
    data: dict[str, Any]
    body: str
    lines: Mapping[str, int]  # key -> line in the file (1-based) of the value used
    problems: tuple[Problem, ...] = ()
    present: bool = True  # False: the file has no frontmatter at all

    def line(self, key: str) -> int:
        return self.lines.get(key, 1)


def _strip_comment(value: str) -> str:
    """``value`` without a `` # comment`` outside quotes (YAML's rule: '#' after whitespace)."""
    quote = ""
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"" and (i == 0 or value[i - 1] in " ,[("):
            quote = ch
        elif ch == "#" and i > 0 and value[i - 1] in " \t":
            return value[:i].rstrip()
    return value


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner.replace("''", "'") if value[0] == "'" else inner.replace('\\"', '"')
    return value


def _split_commas(text: str, quotes: str = "") -> list[str]:
    """``text`` cut at its commas outside parentheses (and outside ``quotes`` characters' quotes).

    The pieces as written, unstripped, empty ones included.
    """
    items, cur, depth, quote = [], "", 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in quotes:
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        cur += ch
    items.append(cur)
    return items


def _split_flow(inner: str) -> list[str]:
    """``a, "b, c", Bash(x:*, y)`` -> items, commas inside quotes or parentheses kept."""
    return [unquote(i.strip()) for i in _split_commas(inner, "'\"") if i.strip()]


def _scalar(key: str, value: str, path: Path, line: int, yaml_problem: str) -> Any:
    value = _strip_comment(value.strip())
    if value.startswith("["):
        if value.endswith("]"):
            return _split_flow(value[1:-1])
        if key in LIST_KEYS or key == "name":
            raise DefinitionError(f"invalid YAML frontmatter ({yaml_problem}), and '{key}' on line {line} is "
                                  "an unclosed list", path=path, line=line, fix=f"write '{key}: Read, Bash'")
    if value.startswith("{") and (key in LIST_KEYS or key == "name"):
        raise DefinitionError(f"invalid YAML frontmatter ({yaml_problem}), and '{key}' on line {line} is "
                              "not a name list", path=path, line=line, fix=f"write '{key}: Read, Bash'")
    return unquote(value)


def lenient_frontmatter(head: str, path: Path, first_line: int, yaml_problem: str = "") -> tuple[
        dict[str, Any], dict[str, int], list[Problem]]:
    """Top-level ``key: value`` lines of frontmatter strict YAML refused (``first_line``: the file's
    line of ``head``'s first line). Returns (data, key -> line, problems)."""
    out: dict[str, Any] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    key: str | None = None
    block = ""  # "|" or ">" while reading a block scalar
    for n, raw in enumerate(head.splitlines(), first_line):
        if not raw.strip():
            continue
        m = _KEY_LINE.match(raw)
        if m and not raw[0].isspace():
            key, value = m.group(1), m.group(2)
            if key in out:
                problems.append(Problem(path, n, f"'{key}' is set twice (lines {lines[key]} and {n}): "
                                        f"the later one, line {n}, is used"))
            lines[key] = n
            block = value.strip()[:1] if value.strip() in _BLOCK else ""
            out[key] = "" if block else _scalar(key, value, path, n, yaml_problem)
        elif raw.lstrip().startswith("#"):
            continue
        elif key is not None and raw[0].isspace():
            item = raw.strip()
            prev = out[key]
            if block:
                out[key] = prev + ("\n" if block == "|" else " ") + item if prev else item
            elif item.startswith("- ") and (prev in ("", None) or isinstance(prev, list)):
                out[key] = [*(prev or []), unquote(_strip_comment(item[2:].strip()))]
            elif isinstance(prev, str) and not item.startswith("- "):
                out[key] = (prev + " " + _strip_comment(item)).strip()
            else:
                what = "a '- item' after a value" if isinstance(prev, str) else "not a '- item' line"
                problems.append(Problem(path, n, f"line {n} ignored: it continues '{key}' but is {what}"))
        else:
            problems.append(Problem(path, n, f"line {n} ignored: not a 'key: value' line"))
            key, block = None, ""
    for k, v in out.items():
        if isinstance(v, str):
            out[k] = v.strip()
    return out, lines, problems


def _key_lines(head: str, first_line: int) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
    """Lines of top-level keys in valid YAML (last occurrence), and keys written twice (key, first, later)."""
    lines: dict[str, int] = {}
    twice: list[tuple[str, int, int]] = []
    for n, raw in enumerate(head.splitlines(), first_line):
        m = _KEY_LINE.match(raw)
        if m and not raw[0].isspace():
            if m.group(1) in lines:
                twice.append((m.group(1), lines[m.group(1)], n))
            lines[m.group(1)] = n
    return lines, twice


def read_frontmatter(text: str, path: Path) -> Frontmatter:
    """Split ``---`` frontmatter from the body. Raises DefinitionError only for a file we cannot make sense of."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    text = text.removeprefix("\ufeff")
    all_lines = text.splitlines(keepends=True)
    if not all_lines or all_lines[0].strip() != "---":
        return Frontmatter({}, text, {}, present=False)
    for i in range(1, len(all_lines)):
        if all_lines[i].strip() in ("---", "..."):
            head, body = "".join(all_lines[1:i]), "".join(all_lines[i + 1:])
            break
    else:
        raise DefinitionError("frontmatter opened with '---' on line 1 is never closed", path=path, line=1,
                              fix="end the frontmatter with a line '---'")
    body = body.lstrip("\n")
    try:
        data = yaml.safe_load(head) if head.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2  # +1 for '---', +1 for 1-based
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        found, lines, problems = lenient_frontmatter(head, path, 2, f"{problem} on line {line}")
        first = Problem(path, line, f"frontmatter is not valid YAML ({problem}); read line by line as Claude "
                        "Code does. Quote values that contain ': ' or ' #'")
        return Frontmatter(found, body, lines, (first, *problems))
    if not isinstance(data, dict):
        raise DefinitionError(f"frontmatter is a {type(data).__name__}, not 'key: value' lines", path=path,
                              line=2, fix="write 'name: ...' and 'description: ...' lines between the '---'")
    lines, twice = _key_lines(head, 2)
    problems = [Problem(path, later, f"'{key}' is set twice (lines {first} and {later}): the later one, "
                        f"line {later}, is used") for key, first, later in twice]
    return Frontmatter({str(k): v for k, v in data.items()}, body, lines, tuple(problems))


# ------------------------------------------------------------ values

def split_names(value: Any, *, path: Path | None = None, key: str = "tools", line: int | None = None) -> tuple[str, ...]:
    """``"Read, Bash"``, ``["Read", "Bash"]`` or None as a tuple of names.

    Commas inside parentheses belong to the name (``Bash(git diff:*)``).
    """
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(p.strip() for p in _split_commas(value) if p.strip())
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            if not isinstance(item, (str, int, float)):
                raise DefinitionError(f"'{key}' lists a {type(item).__name__}, not a name", path=path, line=line,
                                      fix=f"write '{key}: Read, Bash' or a list of names")
            out.extend(split_names(str(item), path=path, key=key, line=line))
        return tuple(out)
    raise DefinitionError(f"'{key}' is a {type(value).__name__}, not names", path=path, line=line,
                          fix=f"write '{key}: Read, Bash' or a list of names")


def text_value(fm: Frontmatter, key: str, path: Path) -> str:
    value = fm.data.get(key)
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise DefinitionError(f"'{key}' is a {type(value).__name__}, not text", path=path, line=fm.line(key),
                          fix=f"write '{key}: some text'")


_NAME_LINE = re.compile(r"^name\s*:\s*(.*)$", re.MULTILINE)


def declared_names(text: str) -> frozenset[str] | None:
    """The names a file that failed to load seems to declare (its ``name:`` lines); None: cannot tell."""
    found: set[str] = set()
    for m in _NAME_LINE.finditer(text[:20000]):
        value = _strip_comment(m.group(1).strip())
        if value[:1] in "[{" or not value:
            return None
        found.add(unquote(value))
    return frozenset(found)
