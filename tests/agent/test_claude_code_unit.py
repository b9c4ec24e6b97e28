"""The claude-code backend's pure parts: result mapping, the file-tool guard, the Bash prefix.

``test_claude_code.py`` drives the real Claude Agent SDK and its bundled CLI end to end.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dotasks.agent.claude_code import ClaudeCodeSession, claude_code_outcome
from pytest_dotasks.agent.claude_code_guard import file_refusal, shell_prefix
from pytest_dotasks.agent.launch import open_session
from pytest_dotasks.agent.session import Usage, plan_for
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import agent_project
from tests.stubs.steps import make_ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


def test_claude_code_backend_without_the_extra_says_how_to_install(root: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", None)  # as if not installed
    session = open_session(make_ctx(root, cli={"agent_backend": "claude-code"}))
    assert isinstance(session, ClaudeCodeSession)
    with pytest.raises(BodyFailed) as info:
        session.run()
    assert "Claude Agent SDK" in info.value.message
    assert info.value.fix == "pip install 'pytest-dotasks[claude-code]'"
    assert "\n" not in str(info.value)


def test_claude_code_system_prompt_leaves_tools_to_claude_code(root: Path) -> None:
    plan = plan_for(make_ctx(root, cli={"agent_backend": "claude-code"}), native_tools=True)
    assert "STEP RESULT: SUCCESS" in plan.system and "File tools refuse" not in plan.system


@pytest.mark.parametrize("result, expected", [
    (None, (False, "Claude Code ended without a result")),
    (SimpleNamespace(subtype="error_max_turns", is_error=True), (False, "a ran out of turns (5 per attempt)")),
    (SimpleNamespace(subtype="error_during_execution", is_error=True, errors=["API Error: 401"], result=None),
     (False, "Claude Code stopped with an error: API Error: 401")),
    (SimpleNamespace(subtype="success", is_error=False, result="did it\nSTEP RESULT: SUCCESS"),
     (True, "a declared SUCCESS")),
    (SimpleNamespace(subtype="success", is_error=False, result="STEP RESULT: FAILURE: quota"),
     (False, "a declared FAILURE: quota")),
    (SimpleNamespace(subtype="success", is_error=False, result="done"), (None, "a stopped without declaring")),
])
def test_claude_code_result_mapping(result: Any, expected: tuple[bool | None, str]) -> None:
    ok, summary = claude_code_outcome(result, "", "a", Usage(), budget=10_000, max_turns=5)
    assert ok is expected[0] and summary.startswith(expected[1])


def test_claude_code_token_budget_is_checked_after_the_fact() -> None:
    usage = Usage()
    usage.add("claude-sonnet-5-5", {"input_tokens": 900, "output_tokens": 200})
    ok, summary = claude_code_outcome(SimpleNamespace(subtype="success", is_error=False,
                                                      result="STEP RESULT: SUCCESS"), "", "a", usage, 1000, 5)
    assert ok is False and "token budget (1,100 of 1,000" in summary


def test_file_refusal_confines_file_tools_and_protects_the_run(root: Path, tmp_path: Path) -> None:
    real = Path(os.path.realpath(root))
    protected = [real / "SPEC.md", real / ".dotasks"]
    (real / "data.txt").write_text("x")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    os.link(outside, real / "linked.txt")
    (real / "sym.txt").symlink_to(outside)
    assert file_refusal("Write", {"file_path": "data.txt"}, real, protected) is None
    assert file_refusal("Read", {"file_path": "SPEC.md"}, real, protected) is None  # reading stays allowed
    assert str(file_refusal("Edit", {"file_path": "SPEC.md"}, real, protected)).startswith("refused: SPEC.md: ")
    assert "outside the project root" in str(file_refusal("Read", {"file_path": str(outside)}, real, protected))
    assert "outside the project root" in str(file_refusal("Write", {"file_path": "sym.txt"}, real, protected))
    assert "hard link" in str(file_refusal("Write", {"file_path": "linked.txt"}, real, protected))
    assert "conftest.py" in str(file_refusal("Write", {"file_path": "sub/conftest.py"}, real, protected))
    assert file_refusal("Glob", {"pattern": "*.py"}, real, protected) is None  # no path: the root


def test_claude_codes_bash_prefix_unsets_the_agents_credentials(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "tok")
    script = shell_prefix(make_ctx(root, cli={"agent_backend": "claude-code"})).read_text()
    unset = next(ln for ln in script.splitlines() if ln.startswith("unset "))
    assert {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"} <= set(unset.split()[1:])
    assert script.rstrip().endswith('-c "$@"') and "sk-ant-x" not in script


def test_every_backend_tells_the_agent_that_runs(tmp_path: Path) -> None:
    from tests.stubs.steps import make_project

    (tmp_path / "bare").mkdir()
    bare = make_project(tmp_path / "bare")  # no .claude/agents: the built-in agent runs
    for backend in ("anthropic", "claude-code", "command"):
        session = open_session(make_ctx(bare, cli={"agent_backend": backend}))
        assert session.agent_name == "dotasks-executor", backend  # type: ignore[attr-defined]
        assert session.note == "tinker-executor not found in .claude/agents/; built-in fallback"  # type: ignore[attr-defined]


def test_claude_code_is_given_what_the_step_may_still_spend(root: Path) -> None:
    import claude_agent_sdk

    from pytest_dotasks.agent.claude_code import claude_code_options

    ctx = make_ctx(root, cli={"agent_backend": "claude-code", "max_cost": 2.0, "max_run_cost": 5.0})
    ctx.extra["run_id"] = "r"
    plan = plan_for(ctx, native_tools=True)
    assert claude_code_options(claude_agent_sdk, ctx, plan, None, budget_usd=1.25).max_budget_usd == 1.25
    session = ClaudeCodeSession(ctx, plan)
    session.usage.cost_usd = 0.5
    assert session.limits.remaining(session.usage.cost_usd) == 1.5  # the step's limit is the nearer
    session.limits.record(4.0)  # another step of the run
    assert session.limits.remaining(session.usage.cost_usd) == 1.0  # now the run's is
    assert claude_code_options(claude_agent_sdk, ctx, plan, None).max_budget_usd is None  # no limit: none
