"""Agent sessions with the real anthropic SDK against the local API stub, and the CLI backends."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_dotasks.agent import session as agent_mod
from pytest_dotasks.agent.cli_backends import ClaudeCodeSession, CommandSession, claude_code_outcome, render_command
from pytest_dotasks.agent.session import AnthropicSession, Usage, model_family, open_session
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.run.tasklog import read_log
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, text, tool_use
from tests.stubs.steps import make_ctx, make_project, write_agent

pytest_plugins = ["tests.stubs.fixtures"]

DONE = "Ran it: prints hi.\nSTEP RESULT: SUCCESS"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = make_project(tmp_path)
    write_agent(r, "AGENT.md", "You are the executor.", name="tinker-executor",
                description="Executes plan steps", tools="Read, Edit, Task, Bash, Write")
    return r


def events(root: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_log(root / ".task_execution.log") if e.get("event") == name]


def transcript(root: Path, task_id: str = "task_1_0badc0de") -> list[dict[str, Any]]:
    path = root / ".dotasks" / "transcripts" / f"{task_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def tool_results(request: Any) -> dict[str, dict[str, Any]]:
    """tool_use_id -> tool_result block, in the last user message of a recorded request."""
    content = request.messages[-1]["content"]
    return {b["tool_use_id"]: b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"}


# ------------------------------------------------------------ the anthropic backend

def test_success_path_really_changes_files(root: Path, anthropic_stub: AnthropicStub) -> None:
    emitted: list[str] = []
    ctx = make_ctx(root, [("outputs", "hello.py"), ("validate", "python3 hello.py")], emitted=emitted)
    write = tool_use("Write", {"file_path": "hello.py", "content": "print('hello')\n"})
    run1 = tool_use("Bash", {"command": "python3 hello.py"})
    read = tool_use("Read", {"file_path": "hello.py"})
    edit = tool_use("Edit", {"file_path": "hello.py", "old_string": "hello", "new_string": "hi"})
    run2 = tool_use("Bash", {"command": "python3 hello.py"})
    (anthropic_stub
     .reply("I will write the script.", write, usage={"input_tokens": 1200, "cache_creation_input_tokens": 3000})
     .reply(run1, usage={"input_tokens": 50, "cache_read_input_tokens": 3000})
     .reply(read, edit, usage={"input_tokens": 60, "cache_read_input_tokens": 3100})
     .reply(run2, usage={"input_tokens": 40, "cache_read_input_tokens": 3200})
     .reply(DONE, usage={"input_tokens": 30, "output_tokens": 15, "cache_read_input_tokens": 3300}))
    session = open_session(ctx)
    assert isinstance(session, AnthropicSession)
    result = session.run()
    session.close()

    assert anthropic_stub.violations == []
    assert result.ok and result.summary == "tinker-executor declared SUCCESS"
    assert (root / "hello.py").read_text() == "print('hi')\n"
    reqs = anthropic_stub.message_requests
    assert len(reqs) == 5
    assert tool_results(reqs[2])[run1["id"]]["content"] == "hello"
    assert tool_results(reqs[3])[read["id"]]["content"] == "     1\tprint('hello')"
    assert tool_results(reqs[4])[run2["id"]]["content"] == "hi"
    first = reqs[0].body
    assert first["model"] == "claude-sonnet-5-5" and first["stream"] is True
    assert [t["name"] for t in first["tools"]] == ["Bash", "Read", "Write", "Edit", "Task"]
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    prompt = first["messages"][0]["content"][0]["text"]
    assert "Execute STEP 1 of SPEC.md: Make the greeting" in prompt and "- hello.py" in prompt
    assert "You are the executor." in first["system"][0]["text"]
    # the stable prefix is byte-identical on every turn, so it is read from the cache
    assert all(r.body["system"] == first["system"] and r.body["tools"] == first["tools"] for r in reqs)

    p = result.properties
    assert (p["agent"], p["model"], p["turns"]) == ("tinker-executor", "claude-sonnet-5-5", 5)
    assert (p["input_tokens"], p["output_tokens"]) == (1380, 95)
    assert (p["cache_read_tokens"], p["cache_write_tokens"]) == (12600, 3000)
    expected = (1380 * 3 + 95 * 15 + 3000 * 3.75 + 12600 * 0.30) / 1e6
    assert p["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert ctx.properties["cost_usd"] == p["cost_usd"]
    turns = events(root, "agent_turn")
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5]
    assert turns[0]["cache_write_tokens"] == 3000 and turns[1]["cache_read_tokens"] == 3000
    assert turns[0]["task_id"] == "task_1_0badc0de" and turns[0]["phase"] == "main"
    assert [e["tool"] for e in events(root, "agent_tool")] == ["Write", "Bash", "Read", "Edit", "Bash"]
    assert "  → Bash: python3 hello.py" in emitted


def test_transcript_has_every_exchange_and_no_key(root: Path, anthropic_stub: AnthropicStub) -> None:
    leak = tool_use("Bash", {"command": "echo key=$ANTHROPIC_API_KEY"})
    anthropic_stub.reply(leak).reply(DONE)
    ctx = make_ctx(root)
    result = open_session(ctx).run()
    assert result.ok and anthropic_stub.violations == []
    lines = transcript(root)
    assert [x["type"] for x in lines] == ["session", "request", "response", "tool_result", "request",
                                          "response", "end"]
    assert lines[3]["content"] == "key=***"
    assert lines[4]["new_messages"][-1]["content"][0]["content"] == "key=***"
    assert ctx.properties["transcript"].endswith(".dotasks/transcripts/task_1_0badc0de.jsonl")
    # the key reached neither the model, the transcript, the log nor the result
    assert tool_results(anthropic_stub.message_requests[1])[leak["id"]]["content"] == "key=***"
    for path in (root / ".dotasks" / "transcripts" / "task_1_0badc0de.jsonl", root / ".task_execution.log"):
        assert API_KEY not in path.read_text()
    assert API_KEY not in result.output + result.summary + json.dumps(result.properties)


def test_task_hands_work_to_a_sub_agent_one_level_deep(root: Path, anthropic_stub: AnthropicStub) -> None:
    write_agent(root, "helper.md", "You are the helper.", name="helper", description="Writes data files",
                tools="Write, Read, Task", model="haiku")
    task = tool_use("Task", {"description": "write data", "prompt": "Create data.txt containing 42.",
                             "subagent_type": "helper"})
    sub_write = tool_use("Write", {"file_path": "data.txt", "content": "42\n"})
    (anthropic_stub
     .reply("Delegating.", task)
     .reply(sub_write)                             # the helper's first turn
     .reply("Wrote data.txt with 42.")             # the helper's report
     .reply(DONE))
    result = open_session(make_ctx(root)).run()
    assert anthropic_stub.violations == []
    assert result.ok and (root / "data.txt").read_text() == "42\n"
    main1, sub1, _sub2, main2 = anthropic_stub.message_requests
    assert "Writes data files" in next(t for t in main1.body["tools"] if t["name"] == "Task")["description"]
    assert sub1.body["model"] == "claude-haiku-5-5"
    assert "You are the helper." in sub1.body["system"][0]["text"]
    assert [t["name"] for t in sub1.body["tools"]] == ["Read", "Write"]  # no Task for a sub-agent
    assert sub1.messages == [{"role": "user", "content": [{"type": "text", "text": "Create data.txt containing 42.",
                                                           "cache_control": {"type": "ephemeral"}}]}]
    assert tool_results(main2)[task["id"]]["content"] == "Wrote data.txt with 42."
    assert result.properties["turns"] == 4
    assert [e["agent"] for e in events(root, "agent_turn")] == ["tinker-executor", "helper", "helper",
                                                                 "tinker-executor"]


def test_task_to_an_unknown_agent_is_an_error_result(root: Path, anthropic_stub: AnthropicStub) -> None:
    task = tool_use("Task", {"description": "x", "prompt": "y", "subagent_type": "ghost"})
    anthropic_stub.reply(task).reply(DONE)
    assert open_session(make_ctx(root)).run().ok
    res = tool_results(anthropic_stub.message_requests[1])[task["id"]]
    assert res["is_error"] and "no agent 'ghost'; available: tinker-executor, general-purpose" in res["content"]


def test_tools_are_limited_to_the_agents_tools(root: Path, anthropic_stub: AnthropicStub) -> None:
    write_agent(root, "reader.md", "Read only.", name="reader", tools="Read")
    bash = tool_use("Bash", {"command": "touch pwned.txt"})
    anthropic_stub.reply(bash).reply("Could not.\nSTEP RESULT: FAILURE: no Bash")
    result = open_session(make_ctx(root, [("agent", "reader")])).run()
    assert anthropic_stub.violations == []
    assert [t["name"] for t in anthropic_stub.message_requests[0].body["tools"]] == ["Read"]
    res = tool_results(anthropic_stub.message_requests[1])[bash["id"]]
    assert res["is_error"] and "not available to this agent (its tools: Read)" in res["content"]
    assert not (root / "pwned.txt").exists()
    assert not result.ok and result.summary == "reader declared FAILURE: no Bash"


def test_declared_failure_fails_with_the_reason(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.reply("I looked for data/raw.jsonl.\nSTEP RESULT: FAILURE: the input data is missing")
    result = open_session(make_ctx(root)).run()
    assert not result.ok and result.summary == "tinker-executor declared FAILURE: the input data is missing"
    assert "I looked for data/raw.jsonl." in result.output


def test_out_of_turns_then_a_retry_continues_the_same_conversation(root: Path, anthropic_stub: AnthropicStub) -> None:
    ctx = make_ctx(root, cli={"agent_max_turns": "2"})
    calls = [tool_use("Bash", {"command": f"echo {i}"}) for i in range(3)]
    anthropic_stub.reply("Step one.", calls[0]).reply("Still working on it.", calls[1])
    session = open_session(ctx)
    result = session.run()
    assert not result.ok
    assert result.summary == "tinker-executor ran out of turns (2 per attempt); last words: Still working on it."
    # the plugin sends the failure back: the history ended with tool results, and stays valid
    anthropic_stub.reply(calls[2]).reply(DONE)
    result = session.run("The step failed: ran out of turns")
    assert result.ok and anthropic_stub.violations == []
    last = anthropic_stub.message_requests[2]
    assert len(last.messages) == 5  # prompt, call, results, call, results + the feedback
    assert last.messages[0]["content"].startswith("Execute STEP 1")
    assert last.messages[-1]["content"][0]["type"] == "tool_result"
    assert "The step failed: ran out of turns" in last.messages[-1]["content"][-1]["text"]
    assert result.properties["turns"] == 4


def test_retry_sends_the_failure_back_with_the_whole_history(root: Path, anthropic_stub: AnthropicStub) -> None:
    ctx = make_ctx(root, [("validate", "python3 check.py")])
    anthropic_stub.reply(tool_use("Write", {"file_path": "out.txt", "content": "x"}))
    anthropic_stub.reply("Wrote it.\nSTEP RESULT: SUCCESS")
    session = open_session(ctx)
    assert session.run().ok
    anthropic_stub.reply("Fixed.\nSTEP RESULT: SUCCESS")
    feedback = "The work finished but post-validation failed:\n  ✗ python3 check.py: exit 1"
    assert session.run(feedback).ok
    assert anthropic_stub.violations == []
    third = anthropic_stub.message_requests[2]
    roles = [m["role"] for m in third.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert third.messages[3]["content"] == [{"type": "text", "text": "Wrote it.\nSTEP RESULT: SUCCESS"}]
    assert "post-validation failed" in third.messages[4]["content"][0]["text"]
    assert [x["type"] for x in transcript(root)].count("feedback") == 1
    assert [e["attempt"] for e in events(root, "agent_end")] == [1, 2]
    assert len(events(root, "agent_feedback")) == 1


def test_token_budget_stops_the_agent(root: Path, anthropic_stub: AnthropicStub) -> None:
    ctx = make_ctx(root, cli={"agent_max_tokens": "1000"})
    a, b = tool_use("Bash", {"command": "echo a"}), tool_use("Bash", {"command": "echo b"})
    anthropic_stub.reply("Working.", a, usage={"input_tokens": 400}).reply("More.", b, usage={"input_tokens": 700})
    session = open_session(ctx)
    result = session.run()
    assert not result.ok
    assert result.summary.startswith("tinker-executor spent its token budget (1,140 of 1,000 tokens)")
    assert result.summary.endswith("last words: More.")
    assert len(anthropic_stub.message_requests) == 2  # the second call was not run either
    assert result.properties["input_tokens"] == 1100
    # a retry has no budget left: it fails at once, without calling the API
    result = session.run("try again")
    assert not result.ok and "token budget" in result.summary and len(anthropic_stub.message_requests) == 2


def test_undeclared_result_is_asked_for_once_then_fails(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.reply("All done I think.").reply("Yes, it is all done.")
    result = open_session(make_ctx(root)).run()
    assert not result.ok
    assert result.summary == "tinker-executor stopped without declaring a result; last words: Yes, it is all done."
    assert "declaring the step's result" in anthropic_stub.message_requests[1].messages[-1]["content"][0]["text"]
    assert anthropic_stub.violations == []


def test_an_invalid_key_fails_fast_in_one_line(root: Path, anthropic_stub: AnthropicStub,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000")
    anthropic_stub.reply(DONE)
    ctx = make_ctx(root)
    with pytest.raises(BodyFailed) as info:
        open_session(ctx).run()
    exc = info.value
    assert len(anthropic_stub.requests) == 1  # a 401 is not retried
    assert exc.phase == "main" and "\n" not in str(exc)
    assert "rejected the key (401 authentication_error: invalid x-api-key)" in exc.message
    assert "ANTHROPIC_API_KEY" in (exc.fix or "")
    assert exc.__cause__ is None and exc.__suppress_context__  # no SDK traceback attached
    assert "sk-ant-wrong-key-000000" not in (root / ".task_execution.log").read_text()


def test_a_missing_key_fails_before_any_request(root: Path, anthropic_stub: AnthropicStub,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(BodyFailed, match="needs ANTHROPIC_API_KEY, which is not set") as info:
        open_session(make_ctx(root)).run()
    assert "export ANTHROPIC_API_KEY" in (info.value.fix or "")
    assert anthropic_stub.requests == []


def test_overloaded_is_retried_by_the_sdk(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.fail(529).fail(429).reply(DONE)
    result = open_session(make_ctx(root)).run()
    assert result.ok and len(anthropic_stub.message_requests) == 3
    assert anthropic_stub.violations == []


def test_transient_errors_that_persist_fail_the_step(root: Path, anthropic_stub: AnthropicStub,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "API_MAX_RETRIES", 1)
    anthropic_stub.fail(500).fail(500)
    with pytest.raises(BodyFailed) as info:
        open_session(make_ctx(root)).run()
    assert len(anthropic_stub.message_requests) == 2
    assert "Anthropic API error (500 api_error" in str(info.value) and "\n" not in str(info.value)
    assert transcript(root)[-1]["type"] == "error"


def test_an_unknown_model_says_how_to_choose_another(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.fail(404, "model: claude-nope")
    with pytest.raises(BodyFailed, match="model 'claude-nope' not found") as info:
        open_session(make_ctx(root, [("model", "claude-nope")])).run()
    assert "dotasks_model_aliases" in (info.value.fix or "")


def test_a_broken_agent_file_fails_the_body_naming_it(root: Path) -> None:
    bad = root / ".claude" / "agents" / "AGENT.md"
    bad.write_text("---\nname: tinker-executor\n")
    with pytest.raises(BodyFailed, match="never closed") as info:
        open_session(make_ctx(root))
    assert str(bad) in str(info.value)


def test_model_family_prices_and_limits() -> None:
    assert model_family("claude-opus-4-1").input == 15.0
    assert model_family("claude-opus-4-5-20251101").input == 5.0
    assert model_family("claude-haiku-4-5").output == 5.0
    assert model_family("anthropic.claude-3-5-haiku-20241022-v1:0").max_output == 8192
    assert model_family("some-other-model").max_output == 8192
    assert model_family("claude-sonnet-5-5").input == 3.0  # a tier fallback
    u = Usage()
    u.add("claude-haiku-4-5", {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    assert u.cost_usd == pytest.approx(6.0) and u.total == 2_000_000


# ------------------------------------------------------------ the command backend

@pytest.fixture
def cli_agent(tmp_path: Path) -> Path:
    """A tiny CLI agent: writes its prompt to a file, obeys a line in it, prints a result."""
    script = tmp_path / "fake-agent"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        "prompt = sys.argv[1]\n"
        "pathlib.Path('seen-prompt.txt').write_text(prompt)\n"
        "if 'post-validation failed' in prompt:\n"
        "    print('fixed it'); print('STEP RESULT: SUCCESS'); sys.exit(0)\n"
        "mode = pathlib.Path('mode.txt').read_text().strip() if pathlib.Path('mode.txt').exists() else 'ok'\n"
        "if mode == 'crash':\n"
        "    print('Traceback: boom', file=sys.stderr); sys.exit(2)\n"
        "if mode == 'declare-failure':\n"
        "    print('STEP RESULT: FAILURE: no GPU'); sys.exit(0)\n"
        "pathlib.Path('hello.py').write_text('print(1)\\n')\n"
        "print('wrote hello.py')\n"
        "print('STEP RESULT: SUCCESS')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_command_backend_runs_a_cli_agent(root: Path, cli_agent: Path) -> None:
    ctx = make_ctx(root, [("outputs", "hello.py")], cli={"agent_backend": "command",
                                                          "agent_command": f"{cli_agent} {{prompt}}"})
    session = open_session(ctx)
    assert isinstance(session, CommandSession)
    result = session.run()
    assert result.ok and result.summary == "agent command exited 0 and declared SUCCESS"
    assert (root / "hello.py").exists() and "wrote hello.py" in result.output
    seen = (root / "seen-prompt.txt").read_text()
    assert "You are the executor." in seen and "Execute STEP 1 of SPEC.md" in seen and "- hello.py" in seen
    # a retry runs it again with the failure in the prompt
    result = session.run("The work finished but post-validation failed: x")
    assert result.ok and "post-validation failed" in (root / "seen-prompt.txt").read_text()
    assert [e["attempt"] for e in events(root, "agent_end")] == [1, 2]


@pytest.mark.parametrize("mode, summary", [
    ("crash", "agent command exited 2: Traceback: boom"),
    ("declare-failure", "agent command declared FAILURE: no GPU"),
])
def test_command_backend_failures(root: Path, cli_agent: Path, mode: str, summary: str) -> None:
    (root / "mode.txt").write_text(mode)
    ctx = make_ctx(root, cli={"agent_backend": "command", "agent_command": f"{cli_agent} {{prompt}}"})
    result = open_session(ctx).run()
    assert not result.ok and result.summary == summary


def test_command_backend_needs_a_command(root: Path) -> None:
    with pytest.raises(BodyFailed, match="needs --agent-command"):
        open_session(make_ctx(root, cli={"agent_backend": "command"})).run()


def test_render_command_quotes_the_prompt() -> None:
    assert render_command("agent -p {prompt}", "it's $HOME; rm -rf /", "/p.md") == \
        "agent -p 'it'\"'\"'s $HOME; rm -rf /'"
    assert render_command("agent --file {prompt_file}", "x", "/tmp/a b.md") == "agent --file '/tmp/a b.md'"
    assert render_command("agent", "do it", "/p.md") == "agent 'do it'"


# ------------------------------------------------------------ the claude-code backend

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
    plan = agent_mod.plan_for(make_ctx(root, cli={"agent_backend": "claude-code"}), native_tools=True)
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


def test_stub_rejects_malformed_histories() -> None:
    from tests.stubs.anthropic_stub import validate

    body = {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [tool_use("Bash", {"command": "x"}, id="t1")]},
                         {"role": "user", "content": [text("no result")]}]}
    problems = validate(body)
    assert any("do not answer the previous tool_use ids ['t1']" in p for p in problems)
    assert any("no cache_control on the stable prefix" in p for p in problems)


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


def test_stub_serves_the_models_probe_to_the_real_sdk(anthropic_stub: AnthropicStub) -> None:
    import anthropic

    client = anthropic.Anthropic(max_retries=0)
    assert [m.id for m in client.models.list()] == ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
    bad = anthropic.Anthropic(api_key="sk-ant-nope-000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.models.list()
    assert anthropic_stub.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert anthropic_stub.violations == []
