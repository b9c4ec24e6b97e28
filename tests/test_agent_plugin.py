"""An agent step end to end through pytest: the real anthropic SDK against the local stub."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, text, tool_use

pytest_plugins = ["pytester"]

DONE = text("Tested it: python3 hello.py prints hi.\nSTEP RESULT: SUCCESS")

PLAN = """\
- [ ] **STEP 1**: Make the greeting
  Write hello.py that prints a greeting.
  - outputs: hello.py
  - validate: python3 hello.py | grep -q hi
  - retries: 1
"""

AGENT = """\
---
name: tinker-executor
description: Executes plan steps.
tools: Bash, Read, Write, Edit
model: haiku
---
You are the executor. Test before you claim success.
"""


def test_agent_step_runs_retries_and_reports_cost(pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    pytester.mkdir(".claude")
    pytester.mkdir(".claude/agents")
    (pytester.path / ".claude" / "agents" / "AGENT.md").write_text(AGENT)
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

    case = ET.parse(pytester.path / "out.xml").getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["agent"] == "tinker-executor" and props["model"] == "claude-haiku-5-5"
    assert int(props["input_tokens"]) == 1030 and float(props["cost_usd"]) > 0
    task_id = props["task_id"]
    transcript = pytester.path / ".dotasks" / "transcripts" / f"{task_id}.jsonl"
    assert transcript.exists()
    log = (pytester.path / ".task_execution.log").read_text()
    assert any(json.loads(x).get("event") == "retry" for x in log.splitlines())
    res.stdout.fnmatch_lines(["*agent tokens: 1030 in, * out; estimated cost $*"])
    for blob in (log, transcript.read_text(), (pytester.path / "out.xml").read_text(), res.stdout.str()):
        assert API_KEY not in blob


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
