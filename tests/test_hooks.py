"""The hooks a conftest implements: step finished, agent session, prompt adjustment."""

from __future__ import annotations

import pytest

from tests.stubs.anthropic_stub import AnthropicStub, text

pytest_plugins = ["pytester"]


def test_step_finished_sees_every_outcome(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        SEEN = []
        def pytest_dotasks_step_finished(step, task_id, outcome, phase, properties, config):
            SEEN.append((step.number, outcome, phase, task_id == properties.get("task_id")))
        def pytest_sessionfinish(session):
            print("SEEN", sorted(SEEN))
    """)
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: ok
  - run: true
- [ ] **STEP 2**: body fails
  - needs: none
  - run: exit 2
- [ ] **STEP 3**: pre-flight fails
  - needs: none
  - inputs: nothing-here.txt
  - run: true
- [ ] **STEP 4**: background
  - needs: none
  - run: sleep 0.2
  - background: yes
- [ ] **STEP 5**: after the background step
  - needs: 4
  - run: true
""")
    res = pytester.runpytest("--spec", "SPEC.md", "-s")
    res.assert_outcomes(passed=3, failed=1, errors=1)
    # STEP 5 waits for STEP 4, whose end is reported in phase "background".
    res.stdout.fnmatch_lines([("*SEEN [[](1, 'passed', 'main', True), (2, 'failed', 'main', True), "
                               "(3, 'failed', 'preflight', True), (4, 'passed', 'background', False), "
                               "(4, 'running', 'main', True), (5, 'passed', 'main', True)[]]")])
    calls = pytester.inline_run("--spec", "SPEC.md", "--redo", "--steps", "1-3").getcalls(
        "pytest_dotasks_step_finished")
    assert [(c.step.number, c.outcome) for c in calls] == [(1, "passed"), (2, "failed"), (3, "failed")]


def test_conftest_supplies_the_agent_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from pytest_dotasks import BodyResult

        class EchoAgent:
            def __init__(self, ctx):
                self.ctx = ctx
                self.calls = []
            def run(self, feedback=None):
                self.calls.append(feedback)
                (self.ctx.root / "made.txt").write_text(str(len(self.calls)))
                ok = len(self.calls) == 2  # fails once, then the retry succeeds
                return BodyResult(ok, "echo agent " + ("ok" if ok else "failed"), properties={"agent": "echo"})
            def close(self):
                pass

        def pytest_dotasks_agent_session(ctx):
            return EchoAgent(ctx)
    """)
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: by agent\n  - retries: 1\n  - outputs: made.txt\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml")
    res.assert_outcomes(passed=1)
    assert (pytester.path / "made.txt").read_text() == "2"
    assert 'name="agent" value="echo"' in (pytester.path / "out.xml").read_text()


def test_adjust_prompt_hook_changes_what_the_agent_receives(pytester: pytest.Pytester,
                                                           anthropic_stub: AnthropicStub) -> None:
    pytester.makeconftest("""
        def pytest_dotasks_adjust_prompt(ctx, prompt):
            return prompt + "\\nHOUSE RULE: write tests first."
    """)
    anthropic_stub.reply(text("Nothing to do, checked.\nSTEP RESULT: SUCCESS"))
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: by agent\n  Say hello.\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=1)
    first = anthropic_stub.message_requests[0].body["messages"][0]["content"][0]["text"]
    assert "Say hello." in first and first.rstrip().endswith("HOUSE RULE: write tests first.")
    assert anthropic_stub.violations == []
