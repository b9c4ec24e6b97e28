"""The claude-code backend without Claude Code: options, result mapping, and a stand-in SDK.

(``test_claude_code.py`` drives the real Claude Agent SDK and CLI end to end.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dotasks.agent.claude_code import ClaudeCodeSession, claude_code_outcome
from pytest_dotasks.agent.launch import open_session
from pytest_dotasks.agent.session import Usage, plan_for
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import agent_project, events
from tests.stubs.steps import make_ctx, write_agent


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


def _fake_claude_agent_sdk() -> Any:
    """A stand-in with the documented surface of claude_agent_sdk (types.py, query.py, _errors.py).

    It proves our handling of Claude Code's messages, options and errors; it
    does not prove the integration with the real SDK and CLI, which this
    environment cannot run.
    """
    import dataclasses
    import types

    mod = types.ModuleType("claude_agent_sdk")

    @dataclasses.dataclass
    class ClaudeAgentOptions:
        tools: list[str] | None = None
        allowed_tools: list[str] = dataclasses.field(default_factory=list)
        system_prompt: Any = None
        permission_mode: str | None = None
        resume: str | None = None
        max_turns: int | None = None
        model: str | None = None
        cwd: str | None = None
        setting_sources: list[str] | None = None
        env: dict[str, str] = dataclasses.field(default_factory=dict)

    @dataclasses.dataclass
    class TextBlock:
        text: str

    @dataclasses.dataclass
    class ToolUseBlock:
        id: str
        name: str
        input: dict[str, Any]

    @dataclasses.dataclass
    class AssistantMessage:
        content: list[Any]
        model: str

    @dataclasses.dataclass
    class ResultMessage:
        subtype: str
        duration_ms: int
        duration_api_ms: int
        is_error: bool
        num_turns: int
        session_id: str
        total_cost_usd: float | None = None
        usage: dict[str, Any] | None = None
        result: str | None = None

    class ClaudeSDKError(Exception):
        pass

    class CLINotFoundError(ClaudeSDKError):
        pass

    calls: list[tuple[str, Any]] = []

    async def query(*, prompt: str, options: Any = None) -> Any:
        calls.append((prompt, options))
        if len(calls) == 1:
            yield AssistantMessage([TextBlock("Writing it."), ToolUseBlock("t1", "Write", {"file_path": "a"})], "m")
            yield ResultMessage("success", 10, 8, False, 3, "sess-1", 0.0123,
                                {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 400}, "Tests fail.\nSTEP RESULT: FAILURE: tests fail")
        else:
            yield AssistantMessage([TextBlock("Fixed.")], "m")
            yield ResultMessage("success", 10, 8, False, 2, "sess-1", 0.01, {"input_tokens": 10, "output_tokens": 5},
                                "Fixed.\nSTEP RESULT: SUCCESS")

    for obj in (ClaudeAgentOptions, TextBlock, ToolUseBlock, AssistantMessage, ResultMessage, ClaudeSDKError,
                CLINotFoundError, query):
        setattr(mod, obj.__name__, obj)
    mod.calls = calls  # type: ignore[attr-defined]
    return mod


def test_claude_code_session_maps_messages_and_resumes_on_retry(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = _fake_claude_agent_sdk()
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", sdk)
    write_agent(root, "AGENT.md", "You are the executor.", name="tinker-executor", tools="Read, Bash(git status:*)")
    session = open_session(make_ctx(root, cli={"agent_backend": "claude-code", "agent_model": "haiku"}))
    first = session.run()
    assert not first.ok and first.summary == "tinker-executor declared FAILURE: tests fail"
    assert (first.properties["input_tokens"], first.properties["cache_read_tokens"]) == (100, 400)
    assert first.properties["cost_usd"] == pytest.approx(0.0123) and first.properties["turns"] == 3
    prompt, options = sdk.calls[0]
    assert prompt.startswith("Execute STEP 1 of SPEC.md")
    assert options.tools == ["Bash", "Read"] and options.allowed_tools == ["Read", "Bash(git status:*)"]
    assert options.system_prompt["preset"] == "claude_code" and "You are the executor." in options.system_prompt["append"]
    assert (options.model, options.cwd, options.resume) == ("claude-haiku-5-5", str(root), None)
    assert options.env["DOTASKS_TASK_ID"] == "task_1_0badc0de"
    second = session.run("post-validation failed: x")
    assert second.ok and second.properties["turns"] == 5
    prompt, options = sdk.calls[1]
    assert options.resume == "sess-1" and "post-validation failed: x" in prompt
    kinds = [json.loads(x)["type"] for x in (root / ".dotasks/transcripts/task_1_0badc0de.jsonl").read_text().splitlines()]
    assert kinds.count("message") == 4 and kinds.count("end") == 2
    assert [e["tool"] for e in events(root, "agent_tool")] == ["Write"]
