"""Agent definitions from the wild, the agent label and spending limits, through real pytest runs
(pytester) with the real anthropic SDK against the local stub."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.agent.helpers import SUCCESS, events
from tests.stubs.anthropic_stub import AnthropicStub, text, tool_use
from tests.stubs.steps import agent_file

DONE = text(SUCCESS)

GOOD_AGENT = """\
---
name: tinker-executor
description: Executes plan steps.
tools: Bash, Read, Write, Edit
skills: not-installed
---
You are the executor.
"""

# Seen in real files: an unquoted ': ' in the description makes it invalid YAML, next to a flow list,
# a key written twice and an inline comment.
WILD_AGENT = """\
---
name: reviewer
description: Use this agent when: code changed. Example: a PR
tools: ["Read", "Bash"]  # what it needs
model: haiku
model: sonnet
---
You review.
"""

BROKEN_AGENT = "---\nname: broken\ndescription: x: y\ntools: [Read, Bash\n---\nBody.\n"


def _agents(pytester: pytest.Pytester, **files: str) -> None:
    for name, content in files.items():
        agent_file(pytester.path, f"{name}.md", content)


def _plan(*steps: str) -> str:
    return "".join(textwrap.dedent(s) for s in steps)


STEP1 = """\
- [ ] **STEP 1**: Make the greeting
  - needs: none
  - validate: true
"""
STEP2 = """\
- [ ] **STEP 2**: Review it
  - needs: none
  - agent: {agent}
  - validate: true
"""
STEP2_DEFAULT_AGENT = """\
- [ ] **STEP 2**: Review it
  - needs: none
  - validate: true
"""


# ------------------------------------------------------------ A: definitions as found in the wild

def test_a_broken_agent_file_does_not_break_steps_that_do_not_use_it(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agents(pytester, AGENT=GOOD_AGENT, reviewer=WILD_AGENT, broken=BROKEN_AGENT)
    pytester.makefile(".md", SPEC=_plan(STEP1, STEP2.format(agent="reviewer")))
    anthropic_stub.reply(DONE).reply(DONE)
    res = pytester.runpytest("--spec", "SPEC.md", "-v", "-p", "no:randomly")
    res.assert_outcomes(passed=2)
    out = res.stdout.str()
    # the wild file loaded as Claude Code reads it: a flow list, the later 'model', the comment dropped
    review = anthropic_stub.message_requests[1].body
    assert review["model"] == "claude-sonnet-5-5" and [t["name"] for t in review["tools"]] == ["Bash", "Read"]
    # each step says what it survived, naming file and line: a live line and a task-log event
    assert re.search(r"\[WARN\] \.claude/agents/AGENT\.md:5: agent 'tinker-executor' names skill "
                     r"'not-installed', which cannot be used: .*; the step runs without it", out), out
    assert re.search(r"\[WARN\] \.claude/agents/reviewer\.md:3: frontmatter is not valid YAML", out), out
    assert "[WARN] .claude/agents/reviewer.md:6: 'model' is set twice (lines 5 and 6)" in out
    warned = [(e["task_id"][:6], e["message"]) for e in events(pytester.path, "agent_warning")]
    assert [t for t, _ in warned] == ["task_1", "task_2", "task_2"], warned
    # Nobody asked for it: the run passes, and the file is named once, as a collection warning.
    assert "DotasksWarning: .claude/agents/broken.md:4: cannot be loaded" in out
    assert "error" not in out.split("warnings summary")[0].lower()
    assert anthropic_stub.violations == []


def test_a_step_asking_for_an_agent_that_cannot_load_fails_before_the_run_naming_its_file(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agents(pytester, AGENT=GOOD_AGENT, aaa=BROKEN_AGENT.replace("name: broken", "name: other"),
            broken=BROKEN_AGENT)
    pytester.makefile(".md", SPEC=_plan(STEP1, STEP2.format(agent="broken")))
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == 4  # readiness: one usage error before any step runs
    err = res.stderr.str()
    assert re.search(r"STEP 2: .*broken\.md:4: agent 'broken' cannot be loaded: invalid YAML frontmatter .*"
                     r"'tools' on line 4 is an unclosed list; write 'tools: Read, Bash'", err), err
    assert "aaa.md" not in err  # the other broken file is not blamed
    assert "STEP 1" not in err and anthropic_stub.message_requests == []


def test_a_skill_the_step_names_must_exist_one_the_agent_names_need_not(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agents(pytester, AGENT=GOOD_AGENT)
    pytester.makefile(".md", SPEC=_plan(STEP1 + "  - skills: also-missing\n"))
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == 4
    err = res.stderr.str()
    assert "skill 'also-missing' not found" in err and "not-installed" not in err, err


# ------------------------------------------------------------ B: the agent that actually runs

@pytest.mark.parametrize("backend", ["anthropic", "command"])
def test_the_live_line_names_the_built_in_agent_when_the_default_is_not_defined(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, backend: str) -> None:
    pytester.makefile(".md", SPEC=STEP1)
    anthropic_stub.reply(DONE)
    res = pytester.runpytest("--spec", "SPEC.md", "-v", "--agent-backend", backend,
                             "--agent-command", "echo 'STEP RESULT: SUCCESS'")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([("*[[]MAIN] Executing with dotasks-executor agent "
                              "(tinker-executor not found in .claude/agents/; built-in fallback)...*")])
    assert "Executing with tinker-executor" not in res.stdout.str()


def test_the_live_line_names_the_defined_agent_and_the_one_a_hook_session_was_asked_for(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    _agents(pytester, AGENT=GOOD_AGENT.replace("skills: not-installed\n", ""))
    pytester.makefile(".md", SPEC=_plan(STEP1, STEP2.format(agent="helper")))
    anthropic_stub.reply(DONE)
    pytester.makeconftest("""
        from pytest_dotasks.run.context import BodyResult

        class Plain:  # a session of the user's own: no agent_name, no note
            def run(self, feedback=None):
                return BodyResult(True, "done")
            def close(self):
                pass

        def pytest_dotasks_agent_session(ctx):
            if ctx.step.number == 2:
                return Plain()
    """)
    res = pytester.runpytest("--spec", "SPEC.md", "-v", "-p", "no:randomly")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["*[[]MAIN] Executing with tinker-executor agent...*",
                              "*[[]MAIN] Executing with helper agent...*"])


# ------------------------------------------------------------ C: spending limits

def _dollars(amount: float) -> dict[str, int]:
    """claude-sonnet-5-5 (the default model): $15 per million output tokens."""
    return {"input_tokens": 0, "output_tokens": round(amount / 15 * 1_000_000)}


def test_the_run_limit_from_the_ini_stops_the_next_step_and_the_summary_shows_the_spend(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    pytester.makeini("[pytest]\ndotasks_max_run_cost = 3\n")
    spec = pytester.makefile(".md", SPEC=_plan(STEP1, STEP2_DEFAULT_AGENT))
    anthropic_stub.reply(DONE, usage=_dollars(3)).reply(DONE)
    res = pytester.runpytest("--spec", "SPEC.md", "-p", "no:randomly")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 2: stopped before its next request to the model: the run has spent \$3\.0000 \(all "
                     r"steps and workers\), reaching its limit dotasks_max_run_cost \$3\.00 \[task_2_", out), out
    assert "spent $3.0000 of --max-run-cost $3.00" in out
    assert len(anthropic_stub.message_requests) == 1
    text = spec.read_text()
    assert "✓ [task_id: task_1_" in text and re.search(r"STEP 2\*\*: Review it ✗", text), text
    assert "Traceback" not in out


def test_the_step_limit_fails_the_step_after_the_reply_that_reached_it(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub) -> None:
    pytester.makefile(".md", SPEC=STEP1 + "  - retries: 2\n")
    anthropic_stub.reply(tool_use("Bash", {"command": "echo hi"}), usage=_dollars(0.75)).reply(DONE)
    res = pytester.runpytest("--spec", "SPEC.md", "--max-cost", "0.5", "--junitxml=out.xml")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "the step has spent $0.7500, reaching its limit --max-cost $0.50" in out, out
    assert "spent $0.7500 of --max-cost $0.50 per step" in out
    assert len(anthropic_stub.message_requests) == 1  # and retries sent nothing more
    assert not events(pytester.path, "retry")
    assert 'name="cost_usd" value="0.75"' in (pytester.path / "out.xml").read_text()


def test_under_xdist_the_workers_share_the_run_limit(pytester: pytest.Pytester,
                                                     anthropic_stub: AnthropicStub) -> None:
    # STEP 2 runs on the other worker; its pre-flight waits (hang guard: 100 s) until STEP 1's
    # spend is in the run's ledger, so its first request would be the one to refuse.
    pytester.makepyfile(wait_for_spend="""
        import glob, json, time
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:
            spent = sum(json.loads(line)["cost_usd"] for path in glob.glob(".dotasks/spend/*.jsonl")
                        for line in open(path) if line.strip())
            if spent >= 3:
                break
            time.sleep(0.1)
    """)
    pytester.makefile(".md", SPEC=_plan(STEP1, STEP2_DEFAULT_AGENT + "  - check: python3 wait_for_spend.py\n"))
    anthropic_stub.reply(DONE, usage=_dollars(3))
    res = pytester.runpytest("--spec", "SPEC.md", "-n", "2", "--max-run-cost", "3", "--preflight-timeout", "120s")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "STEP 2: stopped before its next request to the model: the run has spent $3.0000" in out, out
    assert len(anthropic_stub.message_requests) == 1
    starts = {e["step"]: e.get("worker") for e in events(pytester.path, "start")}
    assert starts[1] != starts[2] and None not in starts.values(), starts  # two processes, one ledger
    ledgers = list((pytester.path / ".dotasks" / "spend").glob("*.jsonl"))
    assert len(ledgers) == 1


def test_a_bad_price_table_is_a_usage_error_before_any_step(pytester: pytest.Pytester,
                                                            anthropic_stub: AnthropicStub) -> None:
    pytester.makefile(".md", SPEC=STEP1)
    pytester.makefile(".json", prices='{"families": {"claude-sonnet-5": {"input": 1}}}')
    res = pytester.runpytest("--spec", "SPEC.md", "--prices", "prices.json")
    assert res.ret == 4
    err = res.stderr.str()
    assert "prices.json: 'claude-sonnet-5' needs input, output, cache_write, cache_read" in err, err
    assert anthropic_stub.message_requests == []
