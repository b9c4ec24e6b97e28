"""What a person sees: the summary, a plan's status, --help, skip locations, timeouts, the dry run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_dotasks.settings import OPTIONS
from tests.paths import REPO

pytest_plugins = ["pytester"]

PLAN = """\
- [ ] **STEP 1**: Pending one
  - run: true
- [x] **STEP 2**: Done by hand ✓ [task_id: task_2_aaaaaaaa] [2026-01-01T00:00:00]
  - run: true
- [x] **STEP 3**: Done too ✓ [task_id: task_3_bbbbbbbb] [2026-01-02T00:00:00]
  - run: true
- [ ] **STEP 4**: Fails
  - needs: none
  - run: exit 2
- [ ] **STEP 5**: Next
  - needs: none
  - run: echo hi
"""


def test_summary_gives_time_grep_lines_already_done_and_left_behind(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "continue")
    summary = res.stdout.str().split("dotasks summary")[1]
    assert "SPEC.md: 1 done, 1 failed" in summary
    lines = summary.splitlines()
    step4 = next(i for i, ln in enumerate(lines) if "STEP 4: Fails" in ln)
    assert "task_4_" in lines[step4] and "(failed in main)" in lines[step4]
    assert lines[step4].split("task_4_")[1].split()[1].endswith("s")  # its time
    assert lines[step4 + 1].strip().startswith("grep task_4_") and lines[step4 + 1].strip().endswith(".task_execution.log")
    assert any(ln.strip().startswith("grep task_5_") for ln in lines)
    assert "STEP 1 is not done either: --steps all runs it" in summary


def test_finished_plan_says_already_done(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN.replace("- [ ] **STEP 1**: Pending one", "- [x] **STEP 1**: Pending one ✓ "
                                                "[task_id: task_1_cccccccc] [2026-01-01T00:00:00]"))
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "1-3")
    summary = res.stdout.str().split("dotasks summary")[1]
    assert "SPEC.md: 0 done, 0 failed, 3 already done" in summary
    assert "already done: STEP 1-3 (--redo runs them again)" in summary


def test_skips_point_at_the_steps_line_in_the_plan(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "2-3", "-rs")
    res.stdout.fnmatch_lines(["SKIPPED [[]1[]] SPEC.md:3: STEP 2 already done*", "SKIPPED [[]1[]] SPEC.md:5: STEP 3*"])
    assert "items.py" not in res.stdout.str()


def test_collect_only_shows_each_steps_state(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=PLAN.replace("- [ ] **STEP 4**: Fails", "- [ ] **STEP 4**: Fails ✗ Failed "
                                                "[task_id: task_4_dddddddd] [2026-01-03T00:00:00]"))
    res = pytester.runpytest("--spec", "SPEC.md", "--co")
    res.stdout.fnmatch_lines([
        "*<StepItem step1: Pending one (pending)>",
        "*<StepItem step2: Done by hand (✓ done task_2_aaaaaaaa 2026-01-01T00:00:00)>",
        "*<StepItem step4: Fails (✗ failed task_4_dddddddd 2026-01-03T00:00:00)>",
    ])


def test_status_command_without_pytest(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=PLAN)
    out = subprocess.run([sys.executable, "-m", "pytest_dotasks", "status", str(spec)], capture_output=True, check=False,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "5 steps: 2 done, 0 failed, 0 running, 3 pending" in out.stdout
    assert "STEP 2  ✓ done task_2_aaaaaaaa 2026-01-01T00:00:00" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "pytest_dotasks", "status", "nope.md"], capture_output=True, check=False,
                             text=True, timeout=120, cwd=pytester.path)
    assert missing.returncode == 2 and "nope.md: no such plan file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_every_option_says_its_default_and_durations_are_durations() -> None:
    for opt in OPTIONS:
        assert "default" in opt.help.lower(), opt.flag
    by = {o.flag: o.help for o in OPTIONS}
    assert "duration" in by["--preflight-timeout"] and "Seconds" not in by["--preflight-timeout"]
    assert "all = every step" in by["--steps"] and "continue =" in by["--steps"]
    assert "dry" not in by["--no-mark"].lower()


def test_help_documents_timeout_precedence(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--help")
    out = " ".join(res.stdout.str().split())
    assert "wins over --timeout" in out


def test_timeout_report_is_ours_and_v_shows_each_limit(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Slow
  - run: sleep 30
  - timeout: 1s
- [ ] **STEP 2**: Quick
  - needs: none
  - run: true
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-v", "--timeout", "60", timeout=300)
    res.assert_outcomes(failed=1, passed=1)
    out = res.stdout.str() + res.stderr.str()
    assert "STEP 1: Slow (timeout 1s from its timeout: field, which wins over --timeout)" in out
    assert "STEP 2: Quick (timeout 60s from --timeout or the ini)" in out
    assert "STEP 1 timed out in main: Timeout (>1.0s) from pytest-timeout" in out
    assert "+++++" not in out and "Stack of" not in out  # no thread dump


def test_dry_run_of_a_fresh_quickstart_passes_every_preflight(pytester: pytest.Pytester) -> None:
    from pytest_dotasks.cli import init

    init(pytester.path / "qs")
    res = pytester.runpytest_subprocess("--spec", "qs/SPEC.md", "--dry-run", "-v", timeout=300)
    res.assert_outcomes(skipped=5)
    out = res.stdout.str()
    assert "data/audit.json exists: will be made by STEP 2" in out  # a metrics source is an output
    assert "model/weights.json exists: will be made by STEP 3" in out


def test_silent_step_gets_a_heartbeat_in_ci_and_none_otherwise(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: Quiet\n  - run: sleep 2\n")
    monkeypatch.setenv("CI", "true")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--heartbeat", "0.5s", "--no-mark", timeout=300)
    res.assert_outcomes(passed=1)
    assert "[HEARTBEAT] STEP 1: running" in res.stdout.str()
    monkeypatch.delenv("CI")
    quiet = pytester.runpytest_subprocess("--spec", "SPEC.md", "--heartbeat", "0.5s", "--no-mark", timeout=300)
    quiet.assert_outcomes(passed=1)
    assert "HEARTBEAT" not in quiet.stdout.str()


def test_v_streams_a_commands_output_while_it_runs(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Ticks
  - run: for i in 1 2 3; do echo tick $i; sleep 0.4; done
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-v", "--no-mark", timeout=300)
    res.assert_outcomes(passed=1)
    out = res.stdout.str()
    # Live: the lines come before the step's verdict, not flushed after it.
    assert out.index("→ tick 1") < out.index("→ tick 3") < out.index("PASSED")
