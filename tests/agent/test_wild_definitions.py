"""Agent and skill files as found in the wild: read leniently, with warnings naming file and line;
only a file that cannot be made sense of fails, and only the step that asks for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent.launch import open_session, render_prompt
from pytest_dotasks.agent.session import plan_for
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import events
from tests.stubs.steps import agent_file, make_ctx, make_project, write_agent, write_skill


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def messages(problems: list[defs.Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in problems]


# ------------------------------------------------------------ lenient reading

def test_invalid_yaml_with_a_flow_list_and_comments_loads_line_by_line(root: Path) -> None:
    path = agent_file(root, "reviewer.md", (
        "---\n"
        "name: reviewer  # the reviewer\n"
        "description: Use this agent when: code changed. Example: a PR # not a comment: no space before\n"
        "tools: [\"Read\", 'Bash(git diff:*, git log)', Grep]   # what it needs\n"
        "skills:\n"
        "  - review  # the house rules\n"
        "  - 'style'\n"
        "model: haiku\n"
        "---\n"
        "Review.\n"))
    agent = defs.load_agent(path)
    assert agent.name == "reviewer"
    assert agent.description == "Use this agent when: code changed. Example: a PR"
    assert agent.tools == ("Read", "Bash(git diff:*, git log)", "Grep")
    assert agent.skills == ("review", "style") and agent.skills_line == 5
    assert (agent.model, agent.prompt) == ("haiku", "Review.")
    [warning] = agent.warnings
    assert warning.path == path and warning.line == 3
    assert warning.message.startswith("frontmatter is not valid YAML (mapping values are not allowed here); "
                                      "read line by line as Claude Code does")


def test_a_block_description_and_stray_lines_in_invalid_yaml(root: Path) -> None:
    path = agent_file(root, "a.md", "---\nname: a\ndescription: >\n  Folded\n  text: here\nwhat is this\n"
                                    "tools: Read\n  - Bash\nskills:\n  - one\n  two\nbad: [x\n---\nBody\n")
    agent = defs.load_agent(path)
    assert agent.description == "Folded text: here" and agent.tools == ("Read",) and agent.skills == ("one",)
    assert messages(list(agent.warnings))[1:] == [
        (6, "line 6 ignored: not a 'key: value' line"),
        (8, "line 8 ignored: it continues 'tools' but is a '- item' after a value"),
        (11, "line 11 ignored: it continues 'skills' but is not a '- item' line")]


def test_duplicate_keys_warn_and_the_later_one_is_used(root: Path) -> None:
    valid = agent_file(root, "valid.md", "---\nname: a\nmodel: haiku\nmodel: opus\n---\nBody\n")
    agent = defs.load_agent(valid)
    assert agent.model == "opus"
    assert messages(list(agent.warnings)) == [(4, ("'model' is set twice (lines 3 and 4): the later one, line 4, "
                                                   "is used"))]
    invalid = agent_file(root, "invalid.md", "---\nname: b\ndescription: a: b\nname: c\n---\nBody\n")
    agent = defs.load_agent(invalid)
    assert agent.name == "c" and (4, "'name' is set twice (lines 2 and 4): the later one, line 4, is used") in \
        messages(list(agent.warnings))


def test_no_frontmatter_names_the_agent_after_the_file(root: Path) -> None:
    path = agent_file(root, "helper.md", "You help.\nname: not a key here\n")
    agent = defs.load_agent(path)
    assert (agent.name, agent.prompt, agent.tools) == ("helper", "You help.\nname: not a key here", None)
    assert messages(list(agent.warnings)) == [(1, ("no frontmatter: the agent is named 'helper' after the file and "
                                                  "the whole text is its prompt; add a '---' block with 'name:' "
                                                  "and 'description:'"))]


@pytest.mark.parametrize("content, line, words", [
    ("---\nname: x\ntools: [Read, Bash\n---\n", 3, "'tools' on line 3 is an unclosed list"),
    ("---\nname: x\ndescription: a: b\nskills: {a: 1}\n---\n", 4, "'skills' on line 4 is not a name list"),
    ("---\nname: x\ntools: {Read: 1}\n---\n", 3, "'tools' is a dict, not names"),
    ("---\nname: [x\ndescription: a: b\n---\n", 2, "'name' on line 2 is an unclosed list"),
])
def test_what_cannot_be_made_sense_of_raises_naming_the_line(root: Path, content: str, line: int,
                                                             words: str) -> None:
    path = agent_file(root, "x.md", content)
    with pytest.raises(defs.DefinitionError) as info:
        defs.load_agent(path)
    assert info.value.line == line and words in info.value.message and info.value.path == path


# ------------------------------------------------------------ finding agents

def test_a_broken_file_is_blamed_only_for_the_names_it_may_define(root: Path) -> None:
    write_agent(root, "good.md", name="good")
    agent_file(root, "aaa.md", "---\nname: first-broken\ntools: [Read\n---\n")
    agent_file(root, "zzz.md", "---\nname: wanted\ntools: [Read\n---\n")
    assert defs.find_agent(root, "good").name == "good"
    with pytest.raises(defs.DefinitionError) as info:
        defs.find_agent(root, "wanted")
    assert info.value.path == root / ".claude/agents/zzz.md" and info.value.line == 3
    assert info.value.message.startswith("agent 'wanted' cannot be loaded: invalid YAML frontmatter")
    with pytest.raises(defs.AgentNotFound, match=r"agent 'missing' not found .*defined: good"):
        defs.find_agent(root, "missing")  # neither broken file declares it
    with pytest.raises(defs.DefinitionError, match="zzz.md"):
        defs.find_agent(root, "zzz")  # by file stem


def test_the_default_agent_falls_back_unless_a_broken_file_may_be_it(root: Path) -> None:
    agent_file(root, "other.md", "---\nname: other\ntools: [Read\n---\n")
    plan = plan_for(make_ctx(root))
    assert plan.agent is defs.BUILTIN_EXECUTOR
    assert plan.note == "tinker-executor not found in .claude/agents/; built-in fallback"
    bad = agent_file(root, "AGENT.md", "---\nname: tinker-executor\ntools: [Read\n---\n")
    with pytest.raises(defs.DefinitionError) as info:
        plan_for(make_ctx(root))
    assert info.value.path == bad and "agent 'tinker-executor' cannot be loaded" in info.value.message


def test_two_files_with_one_name_warn_naming_both_and_the_first_wins(root: Path) -> None:
    first = write_agent(root, "a.md", "First.", name="dup")
    second = write_agent(root, "b.md", "Second.", name="dup")
    catalog = defs.load_agents(root)
    assert [a.prompt for a in catalog.items] == ["First."] and catalog.find("b").prompt == "Second."
    [warning] = catalog.warnings
    assert warning.path == second and str(first) in warning.message
    assert "that one is used (the first by file name), this one is ignored" in warning.message
    plan = plan_for(make_ctx(root, [("agent", "dup")]))
    assert plan.agent.path == first and warning in plan.warnings
    assert [a.name for a in plan.subagents].count("dup") == 1


# ------------------------------------------------------------ skills

def test_allowed_tools_are_kept_and_shown_in_the_prompt(root: Path) -> None:
    skill = write_skill(root, "lint", "Lint the code", "Run ruff.")
    skill.write_text("---\nname: lint\ndescription: Lint the code\nallowed-tools: Read, Bash(ruff:*)\n---\nRun ruff.\n")
    write_skill(root, "plain", "No tools given", "Body.")
    [lint] = defs.select_skills(root, ["lint"]).full
    assert lint.allowed_tools == ("Read", "Bash(ruff:*)")
    plan = plan_for(make_ctx(root, [("skills", "lint, plain")]))
    assert "## Skill: lint\nLint the code\nAllowed tools (the skill's allowed-tools): Read, Bash(ruff:*)\n" \
        in plan.system
    assert "## Skill: plain\nNo tools given\n\nBody." in plan.system  # none given: no line


def test_a_skill_only_the_agent_names_is_a_warning_one_the_step_or_cli_names_an_error(root: Path) -> None:
    agent = write_agent(root, "AGENT.md", name="tinker-executor", skills=["present", "absent"])
    write_skill(root, "present", "d", "Present body.")
    plan = plan_for(make_ctx(root))
    assert [s.name for s in plan.full_skills] == ["present"] and "Present body." in plan.system
    [warning] = plan.warnings
    assert warning.path == agent and warning.line == 3  # the 'skills:' line
    assert warning.message.startswith("agent 'tinker-executor' names skill 'absent', which cannot be used: ")
    assert "skill 'absent' not found" in warning.message and warning.message.endswith("the step runs without it")
    with pytest.raises(defs.DefinitionError, match="skill 'absent' not found"):
        plan_for(make_ctx(root, [("skills", "absent")]))
    with pytest.raises(defs.DefinitionError, match="skill 'absent' not found"):
        plan_for(make_ctx(root, cli={"skills": "absent"}))


def test_a_skill_file_that_cannot_load_is_blamed_when_a_step_asks_for_it(root: Path) -> None:
    bad = root / ".claude" / "skills" / "api" / "SKILL.md"
    bad.parent.mkdir(parents=True)
    bad.write_text("---\nname: api\nallowed-tools: [Read\ndescription: a: b\n---\n")
    with pytest.raises(defs.DefinitionError) as info:
        defs.select_skills(root, ["api"])
    assert info.value.path == bad and info.value.message.startswith("skill 'api' cannot be loaded:")
    wild = write_skill(root, "wild", "d", "b")
    wild.write_text("Just text, no frontmatter.\n")
    choice = defs.select_skills(root, ["wild"])
    assert choice.full[0].name == "wild" and choice.warnings[0].path == wild


# ------------------------------------------------------------ surfacing the warnings

def test_definition_warnings_give_one_warning_per_file(root: Path) -> None:
    a = agent_file(root, "a.md", "---\nname: a\ndescription: x: y\nmodel: haiku\nmodel: opus\nskills: gone\n---\n")
    b = write_agent(root, "b.md", name="a")
    c = agent_file(root, "c.md", "---\nname: c\ntools: [Read\n---\n")
    s = write_skill(root, "s", "d", "b")
    s.write_text("no frontmatter\n")
    found = {p.path: p for p in defs.definition_warnings(root)}
    assert set(found) == {a, b, c, s}
    assert found[a].line == 3 and "frontmatter is not valid YAML" in found[a].message
    assert "; line 5: 'model' is set twice" in found[a].message
    assert "; line 6: skill 'gone' is not installed (.claude/skills/gone/SKILL.md)" in found[a].message
    assert "also defined in" in found[b].message
    assert found[c].line == 3 and found[c].message.startswith("cannot be loaded: invalid YAML frontmatter")
    assert found[c].message.endswith("a step that asks for this agent fails")
    assert found[s].show(root).startswith(".claude/skills/s/SKILL.md:1: no frontmatter: the skill is named 's'")
    (root / "empty").mkdir()
    assert defs.definition_warnings(make_project(root / "empty")) == []


def test_open_session_emits_and_logs_the_warnings_of_its_agent(root: Path) -> None:
    agent_file(root, "AGENT.md", "---\nname: tinker-executor\ndescription: Use when: x\n---\nBody\n")
    agent_file(root, "other.md", "---\nname: other\ndescription: also: broken\n---\n")
    emitted: list[str] = []
    open_session(make_ctx(root, emitted=emitted)).close()
    assert emitted == [("[WARN] .claude/agents/AGENT.md:3: frontmatter is not valid YAML (mapping values are not "
                       "allowed here); read line by line as Claude Code does. Quote values that contain ': ' or ' #'")]
    [event] = events(root, "agent_warning")
    assert event["path"] == str(root / ".claude/agents/AGENT.md") and event["line"] == 3
    assert "[warning] .claude/agents/AGENT.md:3: frontmatter is not valid YAML" in render_prompt(make_ctx(root))


def test_open_session_fails_the_step_naming_the_broken_agent(root: Path) -> None:
    bad = agent_file(root, "AGENT.md", "---\nname: tinker-executor\ntools: {a: 1}\n---\n")
    with pytest.raises(BodyFailed) as info:
        open_session(make_ctx(root))
    assert info.value.one_line().startswith(f"{bad}:3: agent 'tinker-executor' cannot be loaded: 'tools' is a "
                                            "dict, not names; write 'tools: Read, Bash'")
