"""Agent and skill definitions in Claude Code's formats, and the model alias table.

An agent is ``.claude/agents/*.md``: YAML frontmatter (``name``, ``description``,
``tools``, ``model``, ``skills``) and a body that is its system prompt. A skill is
``.claude/skills/NAME/SKILL.md`` with frontmatter ``name`` and ``description``.
Nothing here imports pytest or an SDK: the prompt builder, ``--dry-run`` and
the sessions share it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import DotasksError

AGENTS_DIR = Path(".claude") / "agents"
SKILLS_DIR = Path(".claude") / "skills"
DEFAULT_AGENT = "tinker-executor"
DEFAULT_MODEL = "sonnet"

# Current ids for the aliases Claude Code agent files use. Data, not code:
# users override or extend it with the ini linelist ``dotasks_model_aliases``
# (``sonnet = claude-sonnet-4-6``), see ``alias_table``. Taken from the model
# list of anthropic 2.13, newest per tier (it marks claude-sonnet-4-5 deprecated,
# end of life 2026-11-30, and no longer lists claude-opus-4-1).
MODEL_ALIASES: dict[str, str] = {
    "haiku": "claude-haiku-5-5",
    "sonnet": "claude-sonnet-5-5",
    "opus": "claude-opus-5-5",
}
# ``model: inherit`` in an agent file: use the caller's model.
INHERIT = "inherit"


class DefinitionError(DotasksError):
    """An agent or skill file is malformed, or a named one does not exist."""

    phase = "main"


class AgentNotFound(DefinitionError):
    """No agent file defines the name (as opposed to a file that cannot be read)."""


@dataclasses.dataclass(frozen=True)
class AgentDef:
    name: str
    description: str
    prompt: str  # the body: the agent's system prompt
    tools: tuple[str, ...] | None = None  # None: every tool (Claude Code's default)
    model: str | None = None  # alias, id, "inherit" or None
    skills: tuple[str, ...] = ()
    path: Path | None = None  # None for the built-in agents

    @property
    def builtin(self) -> bool:
        return self.path is None


@dataclasses.dataclass(frozen=True)
class SkillDef:
    name: str
    description: str
    body: str
    path: Path  # the SKILL.md file

    @property
    def files(self) -> list[Path]:
        """Other files in the skill's folder (examples, references), for the agent to Read."""
        folder = self.path.parent
        return sorted(p for p in folder.rglob("*") if p.is_file() and p != self.path and not p.name.startswith("."))


# Used when the default agent is asked for and the project defines none, and
# for ``Task(subagent_type="general-purpose")`` as in Claude Code.
BUILTIN_EXECUTOR = AgentDef(
    name="dotasks-executor",
    description="Executes one step of an implementation plan, testing the work before reporting.",
    prompt=(
        "You are a careful software engineer executing one step of an implementation plan in an "
        "existing project. Work in small, verifiable increments: look at the relevant files first, "
        "make the change, run it, and check the result against the step's expected outputs and "
        "validations. Never claim success for work you have not tested."
    ),
)
GENERAL_PURPOSE = dataclasses.replace(
    BUILTIN_EXECUTOR,
    name="general-purpose",
    description="General-purpose agent for researching and carrying out a focused sub-task.",
)


# ------------------------------------------------------------ frontmatter

_KEY_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s?(.*)$")


def _lenient_frontmatter(text: str) -> dict[str, Any] | None:
    """Top-level ``key: value`` lines, for frontmatter strict YAML rejects.

    Claude Code reads agent files whose descriptions carry unquoted colons
    (``description: Use this agent when: ...``), which PyYAML refuses; those
    files are real and must load. Continuation lines (indented) join the
    previous value; ``- item`` lines make it a list. Returns None when a line
    fits none of these shapes.
    """
    out: dict[str, Any] = {}
    key: str | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _KEY_LINE.match(raw)
        if m and not raw[0].isspace():
            key, value = m.group(1), m.group(2).strip()
            if value[:1] in ("[", "{") or (value[:1] in ("'", '"') and _unquote(value) == value):
                return None  # a broken flow list or quote: the YAML error stands
            out[key] = _unquote(value)
        elif key is not None and raw[0].isspace():
            item = raw.strip()
            if item.startswith("- "):
                prev = out.get(key)
                out[key] = ([] if prev in ("", None) else prev if isinstance(prev, list) else [prev])
                out[key].append(_unquote(item[2:].strip()))
            elif isinstance(out[key], str):
                out[key] = (out[key] + " " + item).strip()
            else:
                return None
        else:
            return None
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_frontmatter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split ``---`` YAML frontmatter from the body. No frontmatter: ({}, text)."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            head = "".join(lines[1:i])
            body = "".join(lines[i + 1:])
            break
    else:
        raise DefinitionError("frontmatter opened with '---' is never closed", path=path, line=1,
                              fix="end the frontmatter with a line '---'")
    try:
        data = yaml.safe_load(head) if head.strip() else {}
    except yaml.YAMLError as exc:
        data = _lenient_frontmatter(head)
        if data is None:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark is not None else 1  # +1 for '---', +1 for 1-based
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise DefinitionError(f"invalid YAML frontmatter: {problem}", path=path, line=line,
                                  fix="quote values that contain ': ' or '#'") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"frontmatter is a {type(data).__name__}, not 'key: value' lines", path=path,
                              line=2, fix="write 'name: ...' and 'description: ...' lines between the '---'")
    return data, body.lstrip("\n")


def split_names(value: Any, *, path: Path | None = None, key: str = "tools") -> tuple[str, ...]:
    """``"Read, Bash"``, ``["Read", "Bash"]`` or None as a tuple of names.

    Commas inside parentheses belong to the name (``Bash(git diff:*)``).
    """
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts, depth, cur = [], 0, ""
        for ch in value:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth = max(0, depth - 1)
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return tuple(p.strip() for p in parts if p.strip())
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            if not isinstance(item, (str, int, float)):
                raise DefinitionError(f"'{key}' lists a {type(item).__name__}, not a name", path=path,
                                      fix=f"write '{key}: Read, Bash' or a list of names")
            out.extend(split_names(str(item), path=path, key=key))
        return tuple(out)
    raise DefinitionError(f"'{key}' is a {type(value).__name__}, not names", path=path,
                          fix=f"write '{key}: Read, Bash' or a list of names")


def _text(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise DefinitionError(f"'{key}' is a {type(value).__name__}, not text", path=path,
                          fix=f"write '{key}: some text'")


# ------------------------------------------------------------ agents

def load_agent(path: Path) -> AgentDef:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read agent definition: {exc}", path=path) from None
    data, body = parse_frontmatter(text, path)
    tools: tuple[str, ...] | None = None
    if data.get("tools") not in (None, "", "*"):
        tools = split_names(data["tools"], path=path)
    model = _text(data, "model", path) or None
    return AgentDef(
        name=_text(data, "name", path) or path.stem,
        description=_text(data, "description", path),
        prompt=body.strip(),
        tools=tools,
        model=model,
        skills=split_names(data.get("skills"), path=path, key="skills"),
        path=path,
    )


def load_agents(root: Path) -> tuple[list[AgentDef], list[DefinitionError]]:
    """Every agent under ``root/.claude/agents`` (sorted by file name), and the files that failed."""
    folder = root / AGENTS_DIR
    agents: list[AgentDef] = []
    errors: list[DefinitionError] = []
    if not folder.is_dir():
        return agents, errors
    for path in sorted(folder.glob("*.md")):
        try:
            agents.append(load_agent(path))
        except DefinitionError as exc:
            errors.append(exc)
    return agents, errors


def find_agent(root: Path, name: str) -> AgentDef:
    """The agent called ``name``: by frontmatter ``name`` first, then by file stem.

    A malformed file raises only when the agent is not found among the others
    (the broken file might be the one asked for); a missing agent raises with
    the names that exist.
    """
    agents, errors = load_agents(root)
    for agent in agents:
        if agent.name == name:
            return agent
    for agent in agents:
        if agent.path is not None and agent.path.stem == name:
            return agent
    if errors:
        raise errors[0]
    known = ", ".join(sorted({a.name for a in agents})) or "none"
    raise AgentNotFound(f"agent '{name}' not found in {AGENTS_DIR}/ (defined: {known})", path=root / AGENTS_DIR,
                        fix=f"add {AGENTS_DIR}/{name}.md with 'name: {name}' or choose another with --agent or 'agent:'")


# ------------------------------------------------------------ skills

def load_skill(path: Path) -> SkillDef:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read skill: {exc}", path=path) from None
    data, body = parse_frontmatter(text, path)
    return SkillDef(
        name=_text(data, "name", path) or path.parent.name,
        description=_text(data, "description", path),
        body=body.strip(),
        path=path,
    )


def load_skills(root: Path) -> tuple[list[SkillDef], list[DefinitionError]]:
    folder = root / SKILLS_DIR
    skills: list[SkillDef] = []
    errors: list[DefinitionError] = []
    if not folder.is_dir():
        return skills, errors
    for path in sorted(folder.glob("*/SKILL.md")):
        try:
            skills.append(load_skill(path))
        except DefinitionError as exc:
            errors.append(exc)
    return skills, errors


def select_skills(root: Path, wanted: Iterable[str]) -> tuple[list[SkillDef], list[SkillDef]]:
    """(skills given in full, in the order asked; every other skill).

    A skill is found by frontmatter ``name``, then by folder name. One asked
    for and missing raises, naming the skills that exist.
    """
    skills, errors = load_skills(root)
    full: list[SkillDef] = []
    for name in dict.fromkeys(wanted):  # unique, order kept
        match = next((s for s in skills if s.name == name), None) or next(
            (s for s in skills if s.path.parent.name == name), None)
        if match is None:
            if errors:
                raise errors[0]
            known = ", ".join(sorted(s.name for s in skills)) or "none"
            raise DefinitionError(f"skill '{name}' not found in {SKILLS_DIR}/ (defined: {known})",
                                  path=root / SKILLS_DIR,
                                  fix=f"add {SKILLS_DIR}/{name}/SKILL.md or remove it from skills")
        if match not in full:
            full.append(match)
    rest = [s for s in skills if s not in full]
    return full, rest


# ------------------------------------------------------------ models

def parse_alias_lines(lines: Iterable[str]) -> dict[str, str]:
    """``alias = model-id`` lines (the ini linelist) as a dict; ``#`` comments allowed."""
    out: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        alias, sep, model = line.partition("=")
        if not sep or not alias.strip() or not model.strip():
            raise DefinitionError(f"dotasks_model_aliases: cannot read {raw.strip()!r}",
                                  fix="write one 'alias = model-id' per line, e.g. 'opus = claude-opus-4-5'")
        out[alias.strip().lower()] = model.strip()
    return out


def alias_table(override_lines: Iterable[str] = ()) -> dict[str, str]:
    table = dict(MODEL_ALIASES)
    table.update(parse_alias_lines(override_lines))
    return table


def resolve_model(name: str | None, override_lines: Iterable[str] = ()) -> str:
    """An alias (haiku, sonnet, opus or one from the ini) as its model id; an id as itself."""
    value = (name or DEFAULT_MODEL).strip()
    return alias_table(override_lines).get(value.lower(), value)
