"""An agent step end to end through pytest: the real anthropic SDK against the local stub."""

from __future__ import annotations

import json
import re

import pytest

from tests.agent.helpers import AGENT, greeting, log, properties, results, transcript, write_executor
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, text, tool_use

pytest_plugins = ["pytester"]

DONE = text("Tested it: python3 hello.py prints hi.\nSTEP RESULT: SUCCESS")

PLAN = greeting(extra="  - retries: 1\n")


def test_agent_step_runs_retries_and_reports_cost(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    write_executor(pytester.path)
    # First attempt writes a script that fails validation; the failure goes back
    # into the same conversation and the second attempt fixes it.
    (anthropic_stub
     .reply(tool_use("Write", {"file_path": "hello.py", "content": "print('bye')\n"}),
            usage={"input_tokens": 900, "cache_creation_input_tokens": 2000})
     .reply(DONE, usage={"input_tokens": 40, "output_tokens": 20, "cache_read_input_tokens": 2000})
     .reply(tool_use("Edit", {"file_path": "hello.py", "old_string": "bye", "new_string": "hi"}),
            usage={"input_tokens": 60, "cache_read_input_tokens": 2000})
     .reply(DONE, usage={"input_tokens": 30, "output_tokens": 10, "cache_read_input_tokens": 2000}))
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml", "-v")
    res.assert_outcomes(passed=1)
    assert anthropic_stub.violations == []
    reqs = anthropic_stub.message_requests
    assert len(reqs) == 4
    assert reqs[0].body["model"] == "claude-haiku-5-5"  # alias resolved from the agent's frontmatter
    feedback = json.dumps(reqs[2].body["messages"])
    assert "post-validation failed" in feedback and "python3 hello.py | grep -q hi" in feedback
    assert (pytester.path / "hello.py").read_text() == "print('hi')\n"
    assert "✓ [task_id: task_1_" in spec.read_text()

    props = properties(pytester.path / "out.xml")
    assert props["agent"] == "tinker-executor" and props["model"] == "claude-haiku-5-5"
    assert int(props["input_tokens"]) == 1030 and float(props["cost_usd"]) > 0
    task_id = props["task_id"]
    assert transcript(pytester.path, task_id)
    assert any(e.get("event") == "retry" for e in log(pytester.path))
    res.stdout.fnmatch_lines(["*agent tokens: 1030 in*, * out; estimated cost $*"])
    for name in (".task_execution.log", f".dotasks/transcripts/{task_id}.jsonl", "out.xml"):
        assert API_KEY not in (pytester.path / name).read_text(), name
    assert API_KEY not in res.stdout.str()


def test_invalid_key_fails_in_one_line(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000000000")
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 1.*rejected the key \(401.*\[task_1_", out, re.IGNORECASE), out
    assert "Traceback" not in out and "sk-ant-wrong-key" not in out


def test_dry_run_shows_prompt_without_calling(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "--dry-run", "-v")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*Make the greeting*"])
    assert anthropic_stub.message_requests == []


# ------------------------------------------------------------ agents cannot change the rules

RULES_PLAN = greeting(validate=None, extra="- [ ] **STEP 9**: Ship it\n  - run: false\n")


def _agent_project(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=RULES_PLAN)
    pytester.makeini("[pytest]\naddopts = -p no:randomly\n")
    pytester.makeconftest("# the project's own hooks\n")
    write_executor(pytester.path)


def test_bash_cannot_mark_steps_or_change_the_rules(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agent_project(pytester)
    spec, ini, conftest = (pytester.path / n for n in ("SPEC.md", "tox.ini", "conftest.py"))  # makeini: tox.ini
    ini_before, conftest_before = ini.read_text(), conftest.read_text()
    cheat = tool_use("Bash", {"command": (
        "echo '- [x] **STEP 9**: Ship it ✓ [task_id: task_9_00000000]' >> SPEC.md; "
        f"echo '[pytest]' > {ini.name}; echo 'collect_ignore_glob = [\"*\"]' >> conftest.py; "
        "echo 'tools: Bash' >> .claude/agents/AGENT.md; echo '{}' > .claude/settings.json; "
        "echo junk >> .task_execution.log; echo made > hello.py")})
    (anthropic_stub
     .reply(cheat)
     .reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"}))
     .reply(DONE))
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "1", "-v")
    res.assert_outcomes(passed=1)
    assert anthropic_stub.violations == []
    # the model was told, in the result of the very call
    [result] = results(anthropic_stub.message_requests[1])
    assert result["is_error"] and "were put back" in result["content"]
    for name in ("SPEC.md: changed, restored", f"{ini.name}: changed, restored", "conftest.py: changed, restored",
                 ".claude/agents/AGENT.md: changed, restored", ".claude/settings.json: created, restored",
                 ".task_execution.log: appended, restored"):
        assert name in result["content"], result["content"]
    # the rules are as they were; the plugin still marked STEP 1 and logged the whole story
    text = spec.read_text()
    assert text.startswith("- [x] **STEP 1**: Make the greeting ✓ [task_id: task_1_")
    assert text.endswith("- [ ] **STEP 9**: Ship it\n  - run: false") and "task_9_00000000" not in text
    assert ini.read_text() == ini_before and conftest.read_text() == conftest_before
    assert (pytester.path / ".claude" / "agents" / "AGENT.md").read_text() == AGENT
    assert not (pytester.path / ".claude" / "settings.json").exists()
    entries = log(pytester.path)  # every line still parses: the guard's restores and the plugin's appends
    assert [e["tool"] for e in entries if e.get("event") == "agent_tool"] == ["Bash", "Write"]
    guard = [e for e in entries if e.get("event") == "agent_guard"]
    assert len(guard) == 1 and len(guard[0]["changes"]) == 6
    assert any(e.get("phase") == "mark" for e in entries)
    task_id = guard[0]["task_id"]
    kinds = [x["type"] for x in transcript(pytester.path, task_id)]
    assert kinds.count("tool_result") == 2 and kinds[-1] == "end"
    kept = pytester.path / ".dotasks" / "guard" / task_id
    assert any(p.read_text().endswith("task_9_00000000]\n") for p in kept.rglob("SPEC.md"))


def test_the_agents_commands_do_not_see_its_key(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agent_project(pytester)
    dump = tool_use("Bash", {"command": "env > env.txt; echo \"key=[$ANTHROPIC_API_KEY]\""})
    anthropic_stub.reply(dump).reply(tool_use("Write", {"file_path": "hello.py", "content": "1"})).reply(DONE)
    pytester.runpytest("--spec", "SPEC.md", "--steps", "1").assert_outcomes(passed=1)
    env = (pytester.path / "env.txt").read_text()
    assert API_KEY not in env and "ANTHROPIC_API_KEY" not in env and "DOTASKS_TASK_ID=task_1_" in env
    [result] = results(anthropic_stub.message_requests[1])
    assert result["content"] == "key=[]"


def test_a_step_that_names_the_key_in_env_gets_it(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agent_project(pytester)
    (pytester.path / "SPEC.md").write_text(RULES_PLAN.replace("  - outputs: hello.py\n",
                                                              "  - outputs: hello.py\n  - env: ANTHROPIC_API_KEY\n"))
    dump = tool_use("Bash", {"command": "env > env.txt; echo \"key=[$ANTHROPIC_API_KEY]\""})
    anthropic_stub.reply(dump).reply(tool_use("Write", {"file_path": "hello.py", "content": "1"})).reply(DONE)
    pytester.runpytest("--spec", "SPEC.md", "--steps", "1").assert_outcomes(passed=1)
    assert f"ANTHROPIC_API_KEY={API_KEY}" in (pytester.path / "env.txt").read_text()
    [result] = results(anthropic_stub.message_requests[1])
    assert result["content"] == "key=[***]"  # passed to the command, never shown to the model or logged
    assert API_KEY not in (pytester.path / ".task_execution.log").read_text()


def test_odd_tool_inputs_never_fail_the_step(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agent_project(pytester)
    (pytester.path / "hello.py").write_text("print('hello')\n")
    odd = [
        tool_use("Read", {"file_path": "x" * 5000}),
        tool_use("Read", {"file_path": "hello\x00.py"}),
        tool_use("Read", {"file_path": "hello.py", "offset": float("inf")}),
        tool_use("Bash", {"command": "echo a\x00b"}),
        tool_use("Bash", {"command": "echo hi", "timeout": float("-inf")}),
        tool_use("Edit", {"file_path": "hello.py", "old_string": "hello", "new_string": "hi",
                          "replace_all": {"yes": 1}}),
    ]
    (anthropic_stub
     .reply(*odd)
     # a lone surrogate's escape in the tool input: the SDK cannot parse that reply; it is asked for again
     .reply(tool_use("Edit", {"file_path": "hello.py", "old_string": "hello", "new_string": "\ud800"}))
     .reply(tool_use("Edit", {"file_path": "hello.py", "old_string": "hello", "new_string": "hi"}))
     .reply(DONE))
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "1")
    res.assert_outcomes(passed=1)
    assert "Traceback" not in res.stdout.str()
    assert anthropic_stub.violations == []
    blocks = results(anthropic_stub.message_requests[1])
    assert len(blocks) == len(odd) and all(r["is_error"] for r in blocks)
    assert [r["content"] for r in blocks] == [
        "file_path is 5,000 bytes long; paths are limited to 4,096",
        "Read: 'file_path' holds a NUL byte; no file name can contain one",
        "Read: 'offset' must be an integer",
        "command holds a NUL byte at 6; no shell command can carry one",
        "Bash: 'timeout' must be a number of milliseconds",
        "Edit: 'replace_all' must be true or false"]
    assert (pytester.path / "hello.py").read_text() == "print('hi')\n"
    assert [e["event"] for e in log(pytester.path) if e.get("event") == "agent_error"] == ["agent_error"]
