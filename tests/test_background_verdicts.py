"""A background step's real outcome reaches pytest: exit status, JUnit, metrics (CI is never green over
a failed training run)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.test_plugin import header

pytest_plugins = ["pytester"]

TRAIN_FAILS = """\
- [ ] **STEP 1**: Train
  - run: sleep 0.3; echo loss nan > loss.txt; exit 3
  - background: yes
- [ ] **STEP 2**: Evaluate
  - run: echo evaluated > eval.txt
"""


def cases(xml: str, name: str) -> list[ET.Element]:
    return [c for c in ET.fromstring(xml).iter("testcase") if c.get("name") == name]


def test_failed_background_step_turns_the_run_red_when_a_dependent_waited(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=TRAIN_FAILS)
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml")
    # STEP 2 waited for STEP 1, which failed: STEP 2 is skipped, STEP 1's late error turns the run red.
    res.assert_outcomes(passed=1, skipped=1, errors=1)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*STEP 1 finished in the background: exit 3 - FAILED*"])
    xml = (pytester.path / "out.xml").read_text()
    root = ET.fromstring(xml)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    errors = [c for c in cases(xml, "step1") if c.find("error") is not None]
    assert len(errors) == 1 and "exit 3" in (errors[0].find("error").get("message") or "")  # type: ignore[union-attr]
    assert "✗ Failed" in header(spec.read_text(), 1)
    summary = res.stdout.str().split("dotasks summary")[1]
    assert "✗ STEP 1: Train" in summary and "(failed in background)" in summary


def test_wait_background_reports_each_final_outcome_with_metrics(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train
  - run: sleep 1.2; echo '{"loss_ratio": 0.42}' > metrics.json
  - background: yes
  - metrics: metrics.json
  - metrics: loss_ratio <= 0.5
- [ ] **STEP 2**: Independent
  - needs: none
  - run: true
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--wait-background", "--heartbeat", "0.3s", "--junitxml=out.xml")
    res.assert_outcomes(passed=2)
    assert res.ret == pytest.ExitCode.OK
    out = res.stdout.str()
    assert "--wait-background: waiting for 1 background step" in out
    assert "still running in the background" in out  # the heartbeat
    xml = (pytester.path / "out.xml").read_text()
    props = {p.get("name"): p.get("value") for c in cases(xml, "step1") for p in c.iter("property")}
    assert props.get("metric.loss_ratio") == "0.42"
    assert props.get("background_outcome") == "passed"
    assert props.get("check.loss_ratio <= 0.5") == "ok"


FAILING_TRAINING = """\
- [ ] **STEP 1**: Train
  - run: sleep 0.5; exit 3
  - background: yes
- [ ] **STEP 2**: Independent
  - needs: none
  - run: true
"""


def test_wait_background_fails_the_run_when_training_fails(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=FAILING_TRAINING)
    res = pytester.runpytest("--spec", "SPEC.md", "--wait-background")
    res.assert_outcomes(passed=2, errors=1)
    assert res.ret == pytest.ExitCode.TESTS_FAILED


def test_wait_background_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=FAILING_TRAINING)
    pytester.makeini("[pytest]\ndotasks_wait_background = true\n")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "--junitxml=out.xml", timeout=300)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.assert_outcomes(passed=2, errors=1)
    assert 'errors="1"' in (pytester.path / "out.xml").read_text()


def test_without_waiting_a_running_step_stays_running_and_green(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train
  - run: sleep 30
  - background: yes
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=1)
    assert "⏳ Running" in header(spec.read_text(), 1)
    import os
    import signal

    pid = int(res.stdout.str().split("started (pid ")[1].split(")")[0]) if "started (pid " in res.stdout.str() else None
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def test_no_mark_keeps_background_dependencies_in_the_runs_memory(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train
  - run: sleep 0.5; echo w > weights.txt
  - background: yes
- [ ] **STEP 2**: Evaluate
  - run: test -f weights.txt
""")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--no-mark")
    res.assert_outcomes(passed=2)  # STEP 2 waited for STEP 1, known from memory, not from SPEC.md
    assert spec.read_bytes() == before


def test_no_mark_still_reports_a_failed_background_step(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train
  - run: sleep 0.3; exit 4
  - background: yes
""")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--no-mark", "--wait-background")
    res.assert_outcomes(passed=1, errors=1)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    assert spec.read_bytes() == before


def test_xdist_dependent_waiting_for_a_background_step_is_no_internal_error(pytester: pytest.Pytester) -> None:
    """A worker must never send a report for another test id mid-run (xdist's bookkeeping breaks)."""
    ran = pytester.path / "ran.txt"
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train
  - run: sleep 1; exit 3
  - background: yes
- [ ] **STEP 2**: Evaluate
  - needs: 1
  - run: echo two >> ran.txt
- [ ] **STEP 3**: Independent later
  - needs: none
  - run: sleep 1; echo three >> ran.txt
- [ ] **STEP 4**: After three
  - needs: 3
  - run: echo four >> ran.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "--junitxml=out.xml", timeout=300)
    out = res.stdout.str() + res.stderr.str()
    assert "INTERNALERROR" not in out
    assert res.ret == pytest.ExitCode.TESTS_FAILED  # STEP 1's failure, told by the controller
    res.assert_outcomes(passed=3, skipped=1, errors=1)
    assert ran.read_text().split() == ["three", "four"]
    assert 'errors="1"' in (pytester.path / "out.xml").read_text()
