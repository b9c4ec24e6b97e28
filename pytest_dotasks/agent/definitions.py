"""Agent and skill definitions in Claude Code's formats, and the model alias table.

An agent is ``.claude/agents/*.md``: frontmatter (``name``, ``description``,
``tools``, ``model``, ``skills``) and a body that is its system prompt. A skill is
``.claude/skills/NAME/SKILL.md`` with frontmatter ``name``, ``description`` and
optionally ``allowed-tools``. Files are read as leniently as Claude Code reads
them (``frontmatter``): a file with a survivable problem loads, with a
``Problem`` saying what was done; a file that cannot be made sense of is kept
as ``Broken`` and fails only a step that asks for what it may define.

Loading returns data, never warnings: ``Catalog.warnings``, ``SkillChoice.warnings``
and ``definition_warnings(root)`` (one per file, for the pytest face to warn
at collection). The model alias table lives in ``models`` and is re-exported
here. Nothing here imports pytest or an SDK: the prompt builder,
``--dry-run``, readiness and the sessions share it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from pytest_dotasks.agent.frontmatter import (
    DefinitionError,
    Frontmatter,
    Problem,
    declared_names,
    read_frontmatter,
    split_names,
    text_value,
)
from pytest_dotasks.agent.models import (
    DEFAULT_MODEL,
    INHERIT,
    MODEL_ALIASES,
    alias_table,
    parse_alias_lines,
    resolve_model,
)

# Re-exported: callers use ``definitions`` alone.
__all__ = ["DEFAULT_MODEL", "INHERIT", "MODEL_ALIASES", "DefinitionError", "Problem", "alias_table",
           "parse_alias_lines", "resolve_model", "split_names"]

AGENTS_DIR = Path(".claude") / "agents"
SKILLS_DIR = Path(".claude") / "skills"
DEFAULT_AGENT = "tinker-executor"


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
    skills_line: int = dataclasses.field(default=0, compare=False)  # where 'skills:' is written
    warnings: tuple[Problem, ...] = dataclasses.field(default=(), compare=False)  # from reading the file

    @property
    def builtin(self) -> bool:
        return self.path is None

    @property
    def stem(self) -> str:
        return self.path.stem if self.path is not None else self.name


@dataclasses.dataclass(frozen=True)
class SkillDef:
    name: str
    description: str
    body: str
    path: Path  # the SKILL.md file
    allowed_tools: tuple[str, ...] | None = None  # frontmatter 'allowed-tools'; None: not given
    warnings: tuple[Problem, ...] = dataclasses.field(default=(), compare=False)

    @property
    def stem(self) -> str:
        return self.path.parent.name

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


# ------------------------------------------------------------ catalogs

T = TypeVar("T", AgentDef, SkillDef)


@dataclasses.dataclass(frozen=True)
class Broken:
    """A definition file that cannot be loaded at all, and the names it seems to declare."""

    error: DefinitionError
    path: Path
    names: frozenset[str] | None  # None: cannot tell (unreadable, or 'name' itself is broken)

    def might_define(self, name: str, stem: str) -> bool:
        return self.names is None or name in self.names or stem == name

    def blame(self, kind: str, name: str) -> DefinitionError:
        e = self.error
        return DefinitionError(f"{kind} '{name}' cannot be loaded: {e.message}", path=e.path, line=e.line, fix=e.fix)


@dataclasses.dataclass(frozen=True)
class Catalog(Generic[T]):
    """Every definition in a folder: one per name (the first file by file name wins)."""

    items: tuple[T, ...]
    shadowed: tuple[T, ...] = ()  # later files whose name was taken: still found by file stem
    broken: tuple[Broken, ...] = ()
    warnings: tuple[Problem, ...] = ()  # each file's problems, and the duplicates

    def find(self, name: str) -> T | None:
        """By name first, then by file stem (the folder name for a skill)."""
        for d in self.items:
            if d.name == name:
                return d
        for d in self.items + self.shadowed:
            if d.path is not None and d.stem == name:
                return d
        return None

    def suspects(self, name: str) -> list[Broken]:
        """Broken files that may be the definition of ``name``."""
        return [b for b in self.broken if b.might_define(name, b.path.parent.name if b.path.name == "SKILL.md"
                                                         else b.path.stem)]

    def warnings_for(self, item: AgentDef | SkillDef) -> list[Problem]:
        return [w for w in self.warnings if (item.path is not None and w.path == item.path) or w.subject == item.name]


def _catalog(loaded: list[T], broken: list[Broken], kind: str) -> Catalog[T]:
    items: list[T] = []
    shadowed: list[T] = []
    warnings: list[Problem] = []
    for d in loaded:
        warnings.extend(d.warnings)
        first = next((x for x in items if x.name == d.name), None)
        if first is None:
            items.append(d)
            continue
        shadowed.append(d)
        assert d.path is not None and first.path is not None
        warnings.append(Problem(d.path, 1, f"{kind} '{d.name}' is also defined in {first.path}; that one is used "
                                f"(the first by file name), this one is ignored", subject=d.name))
    return Catalog(tuple(items), tuple(shadowed), tuple(broken), tuple(warnings))


def _read(path: Path, kind: str) -> tuple[str, Frontmatter]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read {kind}: {exc}", path=path) from None
    return text, read_frontmatter(text, path)


def _load_all(paths: Iterable[Path], load: Callable[[Path], T], kind: str) -> Catalog[T]:
    loaded: list[T] = []
    broken: list[Broken] = []
    for path in paths:
        try:
            loaded.append(load(path))
        except DefinitionError as exc:
            try:
                names = declared_names(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                names = None
            broken.append(Broken(exc, path, names))
    return _catalog(loaded, broken, kind)


# ------------------------------------------------------------ agents

def load_agent(path: Path) -> AgentDef:
    """One agent file. Raises DefinitionError only when it cannot be made sense of."""
    _text, fm = _read(path, "agent definition")
    problems = list(fm.problems)
    if not fm.present:
        problems.insert(0, Problem(path, 1, f"no frontmatter: the agent is named '{path.stem}' after the file and "
                                   "the whole text is its prompt; add a '---' block with 'name:' and 'description:'"))
    tools: tuple[str, ...] | None = None
    if fm.data.get("tools") not in (None, "", "*"):
        tools = split_names(fm.data["tools"], path=path, line=fm.line("tools"))
    return AgentDef(
        name=text_value(fm, "name", path) or path.stem,
        description=text_value(fm, "description", path),
        prompt=fm.body.strip(),
        tools=tools,
        model=text_value(fm, "model", path) or None,
        skills=split_names(fm.data.get("skills"), path=path, key="skills", line=fm.line("skills")),
        path=path,
        skills_line=fm.line("skills"),
        warnings=tuple(problems),
    )


def load_agents(root: Path) -> Catalog[AgentDef]:
    """Every agent under ``root/.claude/agents`` (by file name), what could not be loaded, and the warnings."""
    folder = root / AGENTS_DIR
    paths = sorted(folder.glob("*.md")) if folder.is_dir() else []
    return _load_all(paths, load_agent, "agent")


def find_agent(root: Path, name: str, catalog: Catalog[AgentDef] | None = None) -> AgentDef:
    """The agent called ``name``: by frontmatter ``name`` first, then by file stem.

    Not found: a file that cannot be loaded and may define it is blamed
    (DefinitionError naming it); otherwise AgentNotFound with the names that exist.
    """
    cat = catalog if catalog is not None else load_agents(root)
    agent = cat.find(name)
    if agent is not None:
        return agent
    suspects = cat.suspects(name)
    if suspects:
        raise suspects[0].blame("agent", name)
    known = ", ".join(sorted({a.name for a in cat.items})) or "none"
    raise AgentNotFound(f"agent '{name}' not found in {AGENTS_DIR}/ (defined: {known})", path=root / AGENTS_DIR,
                        fix=f"add {AGENTS_DIR}/{name}.md with 'name: {name}' or choose another with --agent or 'agent:'")


@dataclasses.dataclass(frozen=True)
class AgentChoice:
    agent: AgentDef
    note: str  # set when the built-in agent stands in for the missing default
    catalog: Catalog[AgentDef]

    @property
    def warnings(self) -> list[Problem]:
        return [] if self.agent.builtin else self.catalog.warnings_for(self.agent)


def choose_agent(root: Path, name: str, *, explicit: bool) -> AgentChoice:
    """The agent a step runs. Only the default, asked for by nobody (not ``explicit``), falls back
    to the built-in executor when no file defines it; a broken file that may define it never does."""
    catalog = load_agents(root)
    try:
        return AgentChoice(find_agent(root, name, catalog), "", catalog)
    except AgentNotFound:
        if explicit or name != DEFAULT_AGENT:
            raise
    note = f"{name} not found in {AGENTS_DIR}/; built-in fallback"
    return AgentChoice(BUILTIN_EXECUTOR, note, catalog)


# ------------------------------------------------------------ skills

def load_skill(path: Path) -> SkillDef:
    _text, fm = _read(path, "skill")
    problems = list(fm.problems)
    if not fm.present:
        problems.insert(0, Problem(path, 1, f"no frontmatter: the skill is named '{path.parent.name}' after its "
                                   "folder and has no description; add a '---' block with 'name:' and "
                                   "'description:'"))
    key = "allowed-tools" if "allowed-tools" in fm.data else "allowed_tools"
    allowed = fm.data.get(key)
    return SkillDef(
        name=text_value(fm, "name", path) or path.parent.name,
        description=text_value(fm, "description", path),
        body=fm.body.strip(),
        path=path,
        allowed_tools=None if allowed in (None, "") else split_names(allowed, path=path, key=key, line=fm.line(key)),
        warnings=tuple(problems),
    )


def load_skills(root: Path) -> Catalog[SkillDef]:
    folder = root / SKILLS_DIR
    paths = sorted(folder.glob("*/SKILL.md")) if folder.is_dir() else []
    return _load_all(paths, load_skill, "skill")


@dataclasses.dataclass(frozen=True)
class SkillChoice:
    full: tuple[SkillDef, ...]  # given in full, in the order asked
    listed: tuple[SkillDef, ...]  # every other skill: listed by name and description
    warnings: tuple[Problem, ...] = ()


def _missing_skill(root: Path, name: str, cat: Catalog[SkillDef]) -> DefinitionError:
    suspects = cat.suspects(name)
    if suspects:
        return suspects[0].blame("skill", name)
    known = ", ".join(sorted(s.name for s in cat.items)) or "none"
    return DefinitionError(f"skill '{name}' not found in {SKILLS_DIR}/ (defined: {known})", path=root / SKILLS_DIR,
                           fix=f"add {SKILLS_DIR}/{name}/SKILL.md or remove it from skills")


def select_skills(root: Path, wanted: Iterable[str], agent: AgentDef | None = None) -> SkillChoice:
    """The skills given in full: ``agent``'s, then ``wanted`` (the step's ``skills:`` and ``--skills``).

    A skill is found by frontmatter ``name``, then by folder name. One in
    ``wanted`` that is missing (or cannot be loaded) raises DefinitionError; one
    only the agent names is a warning, and the step runs without it.
    """
    cat = load_skills(root)
    required = list(dict.fromkeys(wanted))
    optional = [n for n in dict.fromkeys(agent.skills if agent is not None else ()) if n not in required]
    full: list[SkillDef] = []
    warnings: list[Problem] = []
    for name in dict.fromkeys([*(agent.skills if agent is not None else ()), *required]):
        match = cat.find(name)
        if match is None:
            problem = _missing_skill(root, name, cat)
            if name not in optional:
                raise problem
            assert agent is not None and agent.path is not None
            warnings.append(Problem(agent.path, agent.skills_line, f"agent '{agent.name}' names skill '{name}', "
                                    f"which cannot be used: {problem.one_line()}; the step runs without it"))
            continue
        if match not in full:
            full.append(match)
            warnings.extend(cat.warnings_for(match))
    return SkillChoice(tuple(full), tuple(s for s in cat.items if s not in full), tuple(dict.fromkeys(warnings)))


# ------------------------------------------------------------ warnings for the whole folder

def definition_warnings(root: Path) -> list[Problem]:
    """Every problem of ``root``'s ``.claude/agents`` and ``.claude/skills``, one Problem per file.

    For the pytest face to warn once per file at collection: files read
    leniently, duplicate names, files that cannot be loaded at all (a step
    asking for them fails), and skills an agent names that are not installed.
    """
    agents, skills = load_agents(root), load_skills(root)
    problems = [*agents.warnings, *skills.warnings]
    for cat, kind in ((agents, "agent"), (skills, "skill")):
        for b in cat.broken:
            problems.append(Problem(b.path, b.error.line or 1, f"cannot be loaded: {b.error.message}"
                                    + (f" ({b.error.fix})" if b.error.fix else "")
                                    + f"; a step that asks for this {kind} fails"))
    for agent in (*agents.items, *agents.shadowed):
        for name in agent.skills:
            if skills.find(name) is None and agent.path is not None:
                problems.append(Problem(agent.path, agent.skills_line, f"skill '{name}' is not installed "
                                        f"({SKILLS_DIR}/{name}/SKILL.md); the agent runs without it"))
    by_file: dict[Path, list[Problem]] = {}
    for p in problems:
        by_file.setdefault(p.path, []).append(p)
    out = []
    for path, found in by_file.items():
        found.sort(key=lambda p: p.line)
        rest = "".join(f"; line {p.line}: {p.message}" for p in found[1:])
        out.append(Problem(path, found[0].line, found[0].message + rest))
    return out
