"""The anthropic backend with the real anthropic SDK against the local API stub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_dotasks.agent import anthropic_api
from pytest_dotasks.agent.anthropic_api import AnthropicSession
from pytest_dotasks.agent.launch import open_session
from pytest_dotasks.errors import BodyFailed
from tests.agent.helpers import DONE, agent_project, events, tool_results, transcript
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, text, tool_use
from tests.stubs.steps import make_ctx, write_agent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


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
    ctx = make_ctx(root, [("env", "ANTHROPIC_API_KEY")])  # named in env: the step's commands see the key
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
    monkeypatch.setattr(anthropic_api, "API_MAX_RETRIES", 1)
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


def test_stub_rejects_malformed_histories() -> None:
    from tests.stubs.anthropic_stub import validate

    body = {"model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "s"}],
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [tool_use("Bash", {"command": "x"}, id="t1")]},
                         {"role": "user", "content": [text("no result")]}]}
    problems = validate(body)
    assert any("do not answer the previous tool_use ids ['t1']" in p for p in problems)
    assert any("no cache_control on the stable prefix" in p for p in problems)


def test_stub_serves_the_models_probe_to_the_real_sdk(anthropic_stub: AnthropicStub) -> None:
    import anthropic

    client = anthropic.Anthropic(max_retries=0)
    assert [m.id for m in client.models.list()] == ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
    bad = anthropic.Anthropic(api_key="sk-ant-nope-000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.models.list()
    assert anthropic_stub.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert anthropic_stub.violations == []


# ------------------------------------------------------------ the guard and odd inputs

def test_a_sub_agents_bash_is_guarded_too(root: Path, anthropic_stub: AnthropicStub) -> None:
    write_agent(root, "helper.md", "You are the helper.", name="helper", tools="Bash")
    task = tool_use("Task", {"description": "d", "prompt": "Tick the box.", "subagent_type": "helper"})
    tick = tool_use("Bash", {"command": "sed -i 's/\\[ \\]/[x]/' SPEC.md"})
    anthropic_stub.reply(task).reply(tick).reply("Ticked.").reply(DONE)
    before = (root / "SPEC.md").read_text()
    assert open_session(make_ctx(root)).run().ok
    assert (root / "SPEC.md").read_text() == before
    res = tool_results(anthropic_stub.message_requests[2])[tick["id"]]
    assert res["is_error"] and "SPEC.md: changed, restored" in res["content"]
    assert [e["agent"] for e in events(root, "agent_guard")] == ["helper"]


def test_replies_the_sdk_cannot_parse_are_asked_for_again_then_fail_in_one_line(
        root: Path, anthropic_stub: AnthropicStub) -> None:
    bad = tool_use("Write", {"file_path": "a.txt", "content": "\udc80"})  # the SDK cannot parse its escape
    anthropic_stub.reply(bad).reply(bad).reply(bad)
    with pytest.raises(BodyFailed, match="not valid JSON 3 times in a row") as info:
        open_session(make_ctx(root)).run()
    assert "\n" not in str(info.value) and len(anthropic_stub.message_requests) == 3
    assert len(events(root, "agent_error")) == 3 and not (root / "a.txt").exists()
