"""Agent and skill definitions, model aliases, the prompts, and the resolved plan of a step."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dotasks.agent import definitions as defs
from pytest_dotasks.agent.prompt import Verdict, parse_verdict, step_prompt, system_prompt
from pytest_dotasks.agent.session import plan_for
from tests.stubs.steps import agent_file, make_ctx, make_project, make_step, write_agent, write_skill


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path)


# ------------------------------------------------------------ agent files

def test_agent_file_in_claude_code_format(root: Path) -> None:
    path = write_agent(root, "AGENT.md", "# Executor\nRun the steps.", name="tinker-executor",
                       description="Runs Tinker training steps", tools="Read, Edit, Task, Bash, Write", model="haiku")
    agent = defs.load_agent(path)
    assert agent.name == "tinker-executor"
    assert agent.description == "Runs Tinker training steps"
    assert agent.tools == ("Read", "Edit", "Task", "Bash", "Write")
    assert agent.model == "haiku"
    assert agent.prompt == "# Executor\nRun the steps."


def test_tools_as_a_yaml_list_and_optional_fields_missing(root: Path) -> None:
    listed = defs.load_agent(write_agent(root, "a.md", name="a", tools=["Read", "Bash"]))
    assert listed.tools == ("Read", "Bash")
    bare = defs.load_agent(write_agent(root, "bare.md", name="bare"))
    assert (bare.tools, bare.model, bare.description, bare.skills) == (None, None, "", ())
    plain = agent_file(root, "plain.md", "Just a prompt, no frontmatter.\n")
    agent = defs.load_agent(plain)
    assert (agent.name, agent.prompt, agent.tools) == ("plain", "Just a prompt, no frontmatter.", None)


def test_unquoted_colons_in_a_description_still_load(root: Path) -> None:
    # Claude Code writes descriptions like this; strict YAML refuses them.
    path = agent_file(root, "reviewer.md", "---\nname: reviewer\ndescription: Use this agent when: code changed. "
                      "Example: a PR\ntools: Read, Bash(git diff:*)\n---\nReview.\n")
    agent = defs.load_agent(path)
    assert agent.description == "Use this agent when: code changed. Example: a PR"
    assert agent.tools == ("Read", "Bash(git diff:*)")


def test_found_by_frontmatter_name_before_file_stem(root: Path) -> None:
    write_agent(root, "AGENT.md", name="tinker-executor")
    write_agent(root, "builder.md", "stem match", name="other")
    write_agent(root, "zz.md", "name match", name="builder")
    assert defs.find_agent(root, "tinker-executor").path == root / ".claude/agents/AGENT.md"
    assert defs.find_agent(root, "builder").prompt == "name match"
    assert defs.find_agent(root, "AGENT").name == "tinker-executor"  # the stem still works


@pytest.mark.parametrize("content, words", [
    ("---\nname: broken\ndescription: never closed\n", "never closed"),
    ("---\nname: broken\ntools: [Read, Bash\n---\nbody\n", "invalid YAML frontmatter"),
    ("---\n- just\n- a list\n---\nbody\n", "not 'key: value' lines"),
])
def test_a_malformed_file_is_a_one_line_error_naming_it(root: Path, content: str, words: str) -> None:
    path = agent_file(root, "broken.md", content)
    with pytest.raises(defs.DefinitionError) as info:
        defs.find_agent(root, "broken")
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text and words in text


def test_a_broken_neighbour_does_not_hide_a_good_agent(root: Path) -> None:
    write_agent(root, "good.md", name="good")
    agent_file(root, "bad.md", "---\nname: [unclosed\n---\n")
    assert defs.find_agent(root, "good").name == "good"
    with pytest.raises(defs.DefinitionError, match="bad.md"):
        defs.find_agent(root, "missing")  # it might have been the broken one: say so


def test_missing_agent_names_what_exists(root: Path) -> None:
    write_agent(root, "one.md", name="one")
    with pytest.raises(defs.DefinitionError, match=r"agent 'two' not found .*defined: one"):
        defs.find_agent(root, "two")


def test_split_names_keeps_commas_inside_bash_rules() -> None:
    assert defs.split_names("Bash(git diff:*, x), Read ,") == ("Bash(git diff:*, x)", "Read")
    assert defs.split_names(["Read, Write", "Bash"]) == ("Read", "Write", "Bash")
    assert defs.split_names(None) == ()


# ------------------------------------------------------------ skills

def test_skills_given_in_full_and_the_rest_listed(root: Path) -> None:
    write_skill(root, "tinker-api", "How to call the Tinker API", "Use forward_backward then optim_step.")
    write_skill(root, "docs", "Writing reports", "Write short reports.")
    (root / ".claude/skills/tinker-api/examples.md").write_text("examples\n")
    choice = defs.select_skills(root, ["tinker-api"])
    full, rest = choice.full, choice.listed
    assert [s.name for s in full] == ["tinker-api"] and [s.name for s in rest] == ["docs"]
    assert full[0].files == [root / ".claude/skills/tinker-api/examples.md"]
    agent = defs.AgentDef("x", "", "Agent body.")
    text = system_prompt(agent, full, rest, root=root, tool_names=["Read"])
    assert "Use forward_backward then optim_step." in text
    assert ".claude/skills/tinker-api/examples.md" in text
    assert "- docs: Writing reports (.claude/skills/docs/SKILL.md)" in text
    assert "Write short reports." not in text  # listed, not given in full


def test_skill_found_by_folder_name_and_missing_skill_error(root: Path) -> None:
    write_skill(root, "folder-name", "d", "b", name="Pretty Name")
    assert defs.select_skills(root, ["folder-name"]).full[0].name == "Pretty Name"
    with pytest.raises(defs.DefinitionError, match=r"skill 'nope' not found .*defined: Pretty Name"):
        defs.select_skills(root, ["nope"])


# ------------------------------------------------------------ models

def test_aliases_resolve_from_the_table_and_ids_pass_through() -> None:
    assert defs.resolve_model("haiku") == defs.MODEL_ALIASES["haiku"] == "claude-haiku-5-5"
    assert defs.resolve_model("Sonnet") == defs.MODEL_ALIASES["sonnet"] == "claude-sonnet-5-5"
    assert defs.resolve_model("opus") == defs.MODEL_ALIASES["opus"] == "claude-opus-5-5"
    assert defs.resolve_model("claude-3-5-haiku-20241022") == "claude-3-5-haiku-20241022"
    assert defs.resolve_model(None) == defs.MODEL_ALIASES[defs.DEFAULT_MODEL]


def test_ini_lines_override_and_extend_the_aliases() -> None:
    lines = ["# newer opus", "opus = claude-opus-4-5", "fast=claude-haiku-4-5", ""]
    assert defs.resolve_model("opus", lines) == "claude-opus-4-5"
    assert defs.resolve_model("fast", lines) == "claude-haiku-4-5"
    assert defs.resolve_model("sonnet", lines) == "claude-sonnet-5-5"
    with pytest.raises(defs.DefinitionError, match="alias = model-id"):
        defs.parse_alias_lines(["opus claude-opus-4-5"])


# ------------------------------------------------------------ prompts

def test_step_prompt_carries_the_step_and_the_testing_rule(root: Path) -> None:
    step = make_step(root, [("inputs", "config.yaml, data/raw.jsonl"), ("outputs", "data/train.jsonl"),
                            ("validate", "python check.py data/train.jsonl --min 50"),
                            ("metrics", "consistency >= 0.9"), ("timeout", "15m")], number=8,
                     title="Generate the dataset", description="Use the teacher model.\n- keep it small")
    text = step_prompt(step, "task_8_12345678")
    for part in ("STEP 8", "Generate the dataset", "Use the teacher model.\n- keep it small", "- config.yaml",
                 "- data/raw.jsonl", "- data/train.jsonl", "`python check.py data/train.jsonl --min 50`",
                 "consistency >= 0.9", "15m", "task_8_12345678", "TESTED", "STEP RESULT"):
        assert part in text


@pytest.mark.parametrize("text, verdict", [
    ("done\nSTEP RESULT: SUCCESS", Verdict(True, "")),
    ("**STEP RESULT: SUCCESS**", Verdict(True, "")),
    ("tried\nSTEP RESULT: FAILURE: the data file is missing", Verdict(False, "the data file is missing")),
    ("step result: failed - quota", Verdict(False, "quota")),
    ("STEP RESULT: FAILURE: first\nfixed it\nSTEP RESULT: SUCCESS", Verdict(True, "")),
    ("all good, I think", None),
    ("    STEP RESULT: SUCCESS", None),  # our own indented instructions, echoed, declare nothing
])
def test_parse_verdict(text: str, verdict: Verdict | None) -> None:
    assert parse_verdict(text) == verdict


# ------------------------------------------------------------ the plan of a step

def test_step_fields_override_agent_model_and_skills(root: Path) -> None:
    write_agent(root, "AGENT.md", "Main body.", name="tinker-executor", model="opus", skills="tinker-api")
    write_agent(root, "fast.md", "Fast body.", name="fast", model="haiku", tools="Read, Grep")
    for folder in ("tinker-api", "docs", "extra"):
        write_skill(root, folder, f"{folder} description", f"{folder} BODY")
    plan = plan_for(make_ctx(root, cli={"skills": "extra"}))
    assert (plan.agent.name, plan.model) == ("tinker-executor", "claude-opus-5-5")
    assert [s.name for s in plan.full_skills] == ["tinker-api", "extra"]
    assert "tinker-api BODY" in plan.system and "extra BODY" in plan.system and "docs BODY" not in plan.system
    plan = plan_for(make_ctx(root, [("agent", "fast"), ("skills", "docs")]))
    assert (plan.agent.name, plan.model) == ("fast", "claude-haiku-5-5")
    assert plan.grants.names == ("Read",) and plan.grants.ignored == ("Grep",)
    assert "docs BODY" in plan.system
    # step model: beats --agent-model, which beats the agent file
    assert plan_for(make_ctx(root, cli={"agent_model": "sonnet"})).model == "claude-sonnet-5-5"
    assert plan_for(make_ctx(root, [("model", "claude-3-5-haiku-latest")],
                             cli={"agent_model": "sonnet"})).model == "claude-3-5-haiku-latest"


def test_alias_overrides_reach_the_plan(root: Path) -> None:
    write_agent(root, "AGENT.md", name="tinker-executor", model="opus")
    ctx = make_ctx(root)
    ctx.extra["model_aliases"] = ["opus = claude-opus-4-5"]
    assert plan_for(ctx).model == "claude-opus-4-5"


def test_default_agent_missing_uses_the_builtin_but_a_named_one_must_exist(root: Path) -> None:
    plan = plan_for(make_ctx(root))
    assert plan.agent.name == "dotasks-executor" and "tinker-executor" in plan.note
    with pytest.raises(defs.DefinitionError, match="agent 'helper' not found"):
        plan_for(make_ctx(root, [("agent", "helper")]))
    with pytest.raises(defs.DefinitionError, match="agent 'tinker-executor' not found"):
        plan_for(make_ctx(root, cli={"agent": "tinker-executor"}))
