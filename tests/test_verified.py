"""Unverified passes are visible (-v, summary, JUnit), --require-checks refuses them, and --verify
re-checks finished steps as a standing regression suite."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.test_plugin import header

pytest_plugins = ["pytester"]

# An agent that always claims success and writes what it is told to in the step's description.
AGENT_CONFTEST = """
from pathlib import Path
from pytest_dotasks import BodyResult

class Claims:
    def __init__(self, ctx):
        self.ctx = ctx
    def run(self, feedback=None):
        for line in self.ctx.step.description.splitlines():
            if line.startswith("write "):
                Path(self.ctx.root, line.split()[1]).write_text("made\\n")
        return BodyResult(True, "the agent says it is done")
    def close(self):
        pass

def pytest_dotasks_agent_session(ctx):
    return Claims(ctx)
"""

PLAN = """\
- [ ] **STEP 1**: Checked work
  write report.txt
  - outputs: report.txt
- [ ] **STEP 2**: Word only
  write notes.txt
- [ ] **STEP 3**: Shell
  - run: true
"""


def props(xml: str, name: str) -> dict[str, str]:
    for case in ET.fromstring(xml).iter("testcase"):
        if case.get("name") == name:
            return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    raise AssertionError(f"no testcase {name}")


def test_unverified_pass_is_shown_everywhere_but_still_ticked(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(AGENT_CONFTEST)
    spec = pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "-v", "--junitxml=out.xml")
    res.assert_outcomes(passed=3)
    out = res.stdout.str()
    assert "[POST] unverified: no checks, the agent's word only" in out
    res.stdout.fnmatch_lines(["*✓ STEP 2: Word only*(unverified: no checks, the agent's word only)*"])
    assert "(unverified" not in next(ln for ln in out.splitlines() if "STEP 1: Checked work" in ln and "✓" in ln)
    xml = (pytester.path / "out.xml").read_text()
    assert props(xml, "step1")["verified"] == "true"
    assert props(xml, "step2")["verified"] == "false"
    assert props(xml, "step3")["verified"] == "true"  # a command is judged by its exit status
    assert "✓ [task_id: task_2_" in header(spec.read_text(), 2)  # the marker stays ✓


def test_require_checks_refuses_unverified_step_before_the_agent(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(AGENT_CONFTEST)
    spec = pytester.makefile(".md", SPEC=PLAN.replace("  write notes.txt\n", "  write notes.txt\n  - needs: none\n")
                             .replace("- [ ] **STEP 3**: Shell\n", "- [ ] **STEP 3**: Shell\n  - needs: none\n"))
    res = pytester.runpytest("--spec", "SPEC.md", "--require-checks")
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["*STEP 2 is unverified*--require-checks*"])
    assert not (pytester.path / "notes.txt").exists()  # the agent was never called
    assert header(spec.read_text(), 2) == "- [ ] **STEP 2**: Word only"  # nothing marked for a refusal


def test_require_checks_from_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(AGENT_CONFTEST)
    pytester.makeini("[pytest]\ndotasks_require_checks = true\n")
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: Word only\n  write notes.txt\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(errors=1)


DONE_PLAN = """\
- [x] **STEP 1**: Data ✓ [task_id: task_1_aaaaaaaa] [2026-01-01T00:00:00]
  - outputs: data.txt
  - validate: grep -q good data.txt
- [x] **STEP 2**: Model ✓ [task_id: task_2_bbbbbbbb] [2026-01-01T00:00:00]
  - run: echo SHOULD-NOT-RUN > body-ran.txt
  - outputs: model.bin
- [ ] **STEP 3**: Not yet
  - run: echo SHOULD-NOT-RUN > body-ran.txt
  - outputs: eval.txt
- [x] **STEP 4**: No checks ✓ [task_id: task_4_cccccccc] [2026-01-01T00:00:00]
  Done by hand.
- [x] **STEP 5**: A command with nothing to re-check ✓ [task_id: task_5_dddddddd] [2026-01-01T00:00:00]
  - run: echo SHOULD-NOT-RUN > body-ran.txt
"""


def test_verify_reruns_post_validation_only_and_finds_phantoms(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=DONE_PLAN)
    (pytester.path / "data.txt").write_text("good\n")  # model.bin is gone: a phantom completion
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--verify", "-rs", "--junitxml=out.xml")
    res.assert_outcomes(passed=1, failed=1, skipped=3)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    out = res.stdout.str()
    assert "model.bin" in out and "STEP 3 is not done: nothing to re-check" in out
    assert "STEP 4 has no post-validation: nothing to re-check" in out
    assert "STEP 5 has no post-validation: nothing to re-check" in out  # a command's exit was its check
    assert not (pytester.path / "body-ran.txt").exists()
    assert spec.read_bytes() == before  # nothing marked without --verify-mark
    xml = (pytester.path / "out.xml").read_text()
    assert 'failures="1"' in xml


def test_verify_mark_writes_the_verdict(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=DONE_PLAN)
    (pytester.path / "data.txt").write_text("good\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--verify", "--verify-mark")
    res.assert_outcomes(passed=1, failed=1, skipped=3)
    text = spec.read_text()
    # A re-check that passed keeps the marker: its task id still names the run that made the work.
    assert header(text, 1).endswith("✓ [task_id: task_1_aaaaaaaa] [2026-01-01T00:00:00]")
    assert "✗ Failed [task_id: task_2_" in header(text, 2)
    assert header(text, 3) == "- [ ] **STEP 3**: Not yet"
