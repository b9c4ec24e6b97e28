"""Background steps, the dependency graph, xdist chains, timeouts and crash recovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def header(text: str, n: int) -> str:
    for line in text.splitlines():
        if re.match(rf"^\s*[-*+] \[[ xX]\] \*\*STEP {n}\*\*", line):
            return line
    raise AssertionError(f"no header for STEP {n}")


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def wait_for(pred, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


TRAIN = """\
- [ ] **STEP 1**: Train
  - run: for i in 1 2 3 4; do echo "step $i loss 0.$i" >> loss.txt; sleep 0.3; done; {extra} echo weights > model.bin
  - background: yes
  - monitor: loss.txt every 0.2s
  - alert: nan, diverged
  - outputs: model.bin
- [ ] **STEP 2**: Evaluate
  - run: test -s model.bin && echo evaluated > eval.txt
"""


def test_background_runs_detached_monitors_and_dependent_waits(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=TRAIN.format(extra='echo "loss nan" >> loss.txt;'))
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([
        "*[[]BACKGROUND[]] STEP 1 started (pid *)*",
        "*[[]WAIT[]] STEP 1 is still running in the background*",
        "*[[]BACKGROUND[]] ✓ STEP 1 finished in the background: exit 0*",
    ])
    assert "ALERT STEP 1" in res.stdout.str()
    text = spec.read_text()
    assert re.search(r"✓ \[task_id: task_1_[0-9a-f]{8}\]", header(text, 1))
    assert (pytester.path / "eval.txt").exists()
    log = entries(pytester.path / ".task_execution.log")
    monitor = [e for e in log if e.get("event") == "monitor"]
    assert [e["message"] for e in monitor][:2] == ["step 1 loss 0.1", "step 2 loss 0.2"]
    assert any(e.get("event") == "alert" and e["pattern"] == "nan" for e in log)
    assert any(e.get("event") == "marked" and e["status"] == "running" for e in log)
    fin = [e for e in log if e.get("event") == "finished"]
    assert fin and fin[0]["exit_code"] == 0 and fin[0]["ok"] is True


def test_background_failure_is_loud_and_pipeline_goes_on(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train badly
  - run: sleep 0.5; echo boom; exit 3
  - background: yes
- [ ] **STEP 2**: Independent
  - needs: none
  - run: sleep 1.5; echo ok
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--wait-background")
    res.assert_outcomes(passed=2, errors=1)  # STEP 2 ran on; STEP 1's failure still turns the run red
    res.stdout.fnmatch_lines(["*[[]BACKGROUND[]] ✗ STEP 1 finished in the background: exit 3*"])
    assert "✗ Failed [task_id: task_1_" in header(spec.read_text(), 1)
    assert header(spec.read_text(), 1).endswith("(exit 3)")
    assert "✓ [task_id: task_2_" in header(spec.read_text(), 2)


def test_next_run_reconciles_finished_background_step(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Long training
  - run: sleep 2; echo done > out.txt
  - kind: training
  - outputs: out.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*1 running in the background*", "*pid *, output *output.log*"])
    assert "⏳ Running" in header(spec.read_text(), 1)
    # The body outlives pytest; once it ends, any later run settles the marker.
    assert wait_for(lambda: (pytester.path / "out.txt").exists())
    time.sleep(0.3)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "1", "-rs")
    res.assert_outcomes(skipped=1)
    assert "✓ [task_id: task_1_" in header(spec.read_text(), 1)


def test_running_step_is_not_started_twice(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: Train\n  - run: sleep 30\n  - background: yes\n")
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=1)
    first = header(spec.read_text(), 1)
    try:
        res = pytester.runpytest("--spec", "SPEC.md", "-rs")
        res.assert_outcomes(skipped=1)
        res.stdout.fnmatch_lines(["*STEP 1 is still running in the background (pid *)*"])
        assert header(spec.read_text(), 1) == first
    finally:
        _kill_background(pytester.path)


def _kill_background(root: Path, sig: int = signal.SIGKILL) -> list[int]:
    pids = []
    for pid_file in (root / ".dotasks" / "background").glob("*/pid.json"):
        pid = json.loads(pid_file.read_text())["pid"]
        pids.append(pid)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def test_vanished_background_process_is_marked_failed(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="- [ ] **STEP 1**: Train\n  - run: sleep 30\n  - background: yes\n")
    pytester.runpytest("--spec", "SPEC.md").assert_outcomes(passed=1)
    child = json.loads(next((pytester.path / ".dotasks" / "background").glob("*/child.json")).read_text())["pid"]
    assert _kill_background(pytester.path)
    time.sleep(0.3)
    # Any later run settles it, even one that selects nothing.
    res = pytester.runpytest("--spec", "SPEC.md", "-k", "no_such_step")
    line = header(spec.read_text(), 1)
    assert "✗ Failed" in line and line.endswith("(process vanished)")
    # The orphaned body was stopped too: nobody was watching it any more.
    assert wait_for(lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], 5)
    assert res.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_xdist_chains_32_steps_on_4_workers(pytester: pytest.Pytester) -> None:
    lines = ["# Chains", ""]
    for c in range(4):
        lines.append(f"## Chain {c}")
        for k in range(8):
            n = c * 8 + k + 1
            lines.append(f"- [ ] **STEP {n}**: chain {c} step {k}")
            if k == 0:
                lines.append("  - needs: none")
            lines.append(f"  - run: echo $DOTASKS_STEP >> order-{c}.txt")
    spec = pytester.makefile(".md", SPEC="\n".join(lines) + "\n")
    res = pytester.runpytest("--spec", "SPEC.md", "-n", "4")
    res.assert_outcomes(passed=32)
    text = spec.read_text()
    for n in range(1, 33):
        assert len(re.findall(r"[✓✗⏳]", header(text, n))) == 1
        assert f"✓ [task_id: task_{n}_" in header(text, n)
    for c in range(4):
        order = (pytester.path / f"order-{c}.txt").read_text().split()
        assert order == [str(c * 8 + k + 1) for k in range(8)]
    log = entries(pytester.path / ".task_execution.log")  # every line is whole JSON
    starts = [e for e in log if e.get("event") == "start"]
    assert len(starts) == 32 and len({e["task_id"] for e in starts}) == 32
    assert len({e["worker"] for e in starts}) >= 2
    marks = [e for e in log if e.get("event") == "marked"]
    assert len(marks) == 32


def test_timeout_marks_failed_kills_children_and_moves_on(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Hangs
  - run: (sleep 60 & echo $! > grandchild.pid; wait)
  - timeout: 2s
- [ ] **STEP 2**: Next
  - needs: none
  - run: echo next > next.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-p", "timeout", "--timeout-method", "signal",
                                        timeout=60)
    res.assert_outcomes(failed=1, passed=1)
    assert "✗ Failed [task_id: task_1_" in header(spec.read_text(), 1)
    assert (pytester.path / "next.txt").exists()
    pid = int((pytester.path / "grandchild.pid").read_text())
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists()
                    or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 5)


def test_dependency_cycle_and_unknown_are_collection_errors(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - needs: 2\n- [ ] **STEP 2**: b\n  - needs: 1\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.stdout.fnmatch_lines(["*dependency cycle: STEP * -> STEP * -> STEP **line*"])
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - needs: 7\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.stdout.fnmatch_lines(["*SPEC.md:2: STEP 1 needs STEP 7, which is not in the plan*"])
    assert "Traceback" not in res.stdout.str()


def test_kill_9_then_continue_resumes(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: First
  - run: echo one > one.txt
- [ ] **STEP 2**: Slow
  - run: echo started > started.txt; sleep 30; echo two > two.txt
- [ ] **STEP 3**: Third
  - run: echo three > three.txt
""")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "-p", "no:cacheprovider"],
                            cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        assert wait_for(lambda: (pytester.path / "started.txt").exists(), 30)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = spec.read_text()
    assert "✓ [task_id: task_1_" in header(text, 1)
    assert header(text, 2) == "- [ ] **STEP 2**: Slow"  # in progress: never half-marked
    assert not list(pytester.path.glob(".SPEC.md.*dotasks-tmp"))
    (pytester.path / "SPEC.md").write_text(text.replace("sleep 30; ", ""))
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "continue")
    res.assert_outcomes(passed=2, deselected=1)
    assert (pytester.path / "two.txt").exists() and (pytester.path / "three.txt").exists()


def test_background_timeout_is_whole_step_limit(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train forever
  - run: sleep 60
  - background: yes
  - timeout: 1s
- [ ] **STEP 2**: After
  - run: echo after > after.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md", "-rs")
    res.assert_outcomes(passed=1, skipped=1, errors=1)  # STEP 1's late error: its timeout
    res.stdout.fnmatch_lines(["*STEP 1 failed in the background; STEP 2 needs it*"])
    assert header(spec.read_text(), 1).endswith("(timed out after 1s)")
    assert not (pytester.path / "after.txt").exists()


def test_blocked_chain_skips_all_the_way_down(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: a\n  - run: exit 1\n- [ ] **STEP 2**: b\n  - run: true\n"
                                   "- [ ] **STEP 3**: c\n  - run: true\n")
    res = pytester.runpytest("--spec", "SPEC.md", "-rs")
    res.assert_outcomes(failed=1, skipped=2)
    res.stdout.fnmatch_lines(["*STEP 1 failed in this run; STEP 2 needs it*", "*STEP 2 did not run; STEP 3 needs it*"])


def test_pytest_timeout_report_is_short(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: Slow\n  - run: sleep 30\n")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--timeout", "1", "--timeout-method", "signal",
                                        timeout=60)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*STEP 1 timed out in main: Timeout (>1.0s) from pytest-timeout.*task_1_*"])
    assert "def runtest" not in res.stdout.str() and "Traceback" not in res.stdout.str()
