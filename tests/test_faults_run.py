"""The run side of "nothing lost" (issue 12): each fault reproduced, then held off.

* Two runs on one plan: a step executed by one is never executed by the other
  at the same time (claims under ``.dotasks/claims/``).
* Background state deleted (``rm -rf .dotasks``, ``git clean -X``): no second
  copy of a body that still runs; a lost one is marked failed, its orphan stopped.
* ``monitor:`` hazards: a named pipe, a huge existing log, old alerts.
* Output: 5 MB of it is captured as a bounded tail; ``-v`` live lines are throttled.
* A bad ``--task-log``: a usage error before any step runs.

Runs that are killed, concurrent or may hang are real subprocesses with generous
hang guards; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]


def header(text: str, n: int) -> str:
    for line in text.splitlines():
        if re.match(rf"^\s*[-*+] \[[ xX]\] \*\*STEP {n}\*\*", line):
            return line
    raise AssertionError(f"no header for STEP {n}")


def log_entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def wait_for(pred, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def run(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYTEST, *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=False)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


# --------------------------------------------------------------------------- 6. two runs, one plan


def test_two_runs_at_once_never_execute_a_step_twice(pytester: pytest.Pytester) -> None:
    """Both runs select every step. Before: a step could be run by both (19-37 of 200)."""
    steps = 40
    lines = ["# Plan", ""]
    for n in range(1, steps + 1):
        lines += [f"- [ ] **STEP {n}**: Step {n}", "  - needs: none",
                  "  - run: echo $DOTASKS_TASK_ID >> ran-$DOTASKS_STEP.txt; sleep 0.05", ""]
    (pytester.path / "SPEC.md").write_text("\n".join(lines))
    procs = [subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "-q", "-rs"], cwd=pytester.path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        no_traceback(out)
    twice = [n for n in range(1, steps + 1) if len((pytester.path / f"ran-{n}.txt").read_text().split()) != 1]
    assert not twice, f"executed twice: {twice}"
    passed = sum(int(m) for out in outs for m in re.findall(r"(\d+) passed", out))
    assert passed == steps, outs
    text = (pytester.path / "SPEC.md").read_text()
    marks = [e for e in log_entries(pytester.path / ".task_execution.log") if e.get("event") == "marked"]
    assert sorted(e["step"] for e in marks) == list(range(1, steps + 1))
    for e in marks:
        assert f"✓ [task_id: {e['task_id']}]" in header(text, e["step"])
    assert not list((pytester.path / ".dotasks" / "claims").glob("*.json")), "a claim was left behind"


SLOW_ONE = """\
- [ ] **STEP 1**: Slow
  - run: echo $DOTASKS_TASK_ID >> started.txt; [ $(wc -l < started.txt) -gt 1 ] || for i in $(seq 600); do sleep 0.1; done
- [ ] **STEP 2**: Next
  - needs: none
  - run: echo $DOTASKS_TASK_ID >> next.txt
"""


def test_a_step_running_in_another_run_is_skipped_and_a_killed_claim_taken_over(pytester: pytest.Pytester) -> None:
    (pytester.path / "SPEC.md").write_text(SLOW_ONE)
    first = subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "--steps", "1"], cwd=pytester.path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Only the first execution waits (60 s hang guard): a second one would end at once.
        assert wait_for(lambda: (pytester.path / "started.txt").exists()), "STEP 1 never started"
        second = run(pytester.path, "--spec", "SPEC.md", "-rs")
        out = second.stdout
        assert second.returncode == 0, out
        assert f"STEP 1 is running in another pytest process, pid {first.pid}" in out, out
        assert len((pytester.path / "started.txt").read_text().split()) == 1, "STEP 1 ran twice at once"
        assert "✓" in header((pytester.path / "SPEC.md").read_text(), 2)  # the rest of the plan went on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # kill -9 left the claim behind; its owner is dead, so the next run takes it over.
    assert list((pytester.path / ".dotasks" / "claims").glob("SPEC.md.step1.json"))
    third = run(pytester.path, "--spec", "SPEC.md", "--steps", "1")
    assert third.returncode == 0, third.stdout
    assert len((pytester.path / "started.txt").read_text().split()) == 2
    assert "✓" in header((pytester.path / "SPEC.md").read_text(), 1)


REDO = """\
- [ ] **STEP 1**: Slow
  - run: echo $DOTASKS_TASK_ID >> one.txt; for i in $(seq 600); do [ -f go ] && break; sleep 0.1; done
- [x] **STEP 2**: Done before ✓ [task_id: task_2_00000000] [2026-01-01T00:00:00]
  - needs: none
  - run: echo $DOTASKS_TASK_ID >> two.txt
"""


def test_redo_does_not_redo_what_another_run_just_did(pytester: pytest.Pytester) -> None:
    """Two ``--redo`` runs: the one that reaches STEP 2 second finds it re-done since it read the plan."""
    (pytester.path / "SPEC.md").write_text(REDO)
    first = subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "--redo", "-rs"], cwd=pytester.path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: (pytester.path / "one.txt").exists()), "STEP 1 never started"
        second = run(pytester.path, "--spec", "SPEC.md", "--redo", "-rs")  # skips 1 (held), redoes 2
        assert second.returncode == 0, second.stdout
        assert len((pytester.path / "two.txt").read_text().split()) == 1
        (pytester.path / "go").touch()
        out = first.communicate(timeout=120)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out
    assert "STEP 2 was done meanwhile by another run" in out, out
    assert len((pytester.path / "two.txt").read_text().split()) == 1, "STEP 2 was redone twice"


# --------------------------------------------------------------------------- 7. background state deleted


def _kill_copies(root: Path) -> None:
    """Stop every copy a test started: each body's group and its supervisor (the body's parent)."""
    for pid in (int(x) for x in (root / "copies.txt").read_text().split() if x.strip()):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            ppid = 0
        for kill, target in ((os.killpg, pid), (os.kill, ppid)):
            try:
                if target > 1:
                    kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


TRAIN = """\
- [ ] **STEP 1**: Train
  - run: echo $$ >> copies.txt; sleep 60
  - background: yes
"""


def test_deleted_state_of_a_running_step_never_starts_a_second_copy(pytester: pytest.Pytester) -> None:
    spec = pytester.path / "SPEC.md"
    spec.write_text(TRAIN)
    try:
        assert run(pytester.path, "--spec", "SPEC.md").returncode == 0
        assert wait_for(lambda: (pytester.path / "copies.txt").exists())
        marked = header(spec.read_text(), 1)
        shutil.rmtree(pytester.path / ".dotasks")  # what `git clean -X` does
        res = run(pytester.path, "--spec", "SPEC.md", "-rs")
        assert res.returncode == 0, res.stdout
        time.sleep(0.5)  # a second copy, if started, has written its line
        assert len((pytester.path / "copies.txt").read_text().split()) == 1, "a second copy was started"
        assert re.search(r"STEP 1 is still running in the background \(pid \d+\); its state under "
                         r"\.dotasks/ was lost", res.stdout), res.stdout
        assert header(spec.read_text(), 1) == marked
    finally:
        _kill_copies(pytester.path)


def test_killed_supervisor_and_deleted_state_stop_the_orphan_and_mark_failed(pytester: pytest.Pytester) -> None:
    """Before: the marker stayed ``⏳ Running`` forever and the orphaned body ran on, unwatched."""
    spec = pytester.path / "SPEC.md"
    spec.write_text(TRAIN)
    try:
        assert run(pytester.path, "--spec", "SPEC.md").returncode == 0
        assert wait_for(lambda: (pytester.path / "copies.txt").exists())
        state = next((pytester.path / ".dotasks" / "background").iterdir())
        task_id = state.name
        supervisor = json.loads((state / "pid.json").read_text())["pid"]
        body = int((pytester.path / "copies.txt").read_text().split()[0])
        os.kill(supervisor, signal.SIGKILL)
        shutil.rmtree(pytester.path / ".dotasks")
        assert alive(body)
        res = run(pytester.path, "--spec", "SPEC.md", "-k", "no_such_step")  # any later run sees it
        no_traceback(res.stdout + res.stderr)
        line = header(spec.read_text(), 1)
        assert f"✗ Failed [task_id: {task_id}]" in line and line.endswith("(state lost)"), line
        assert wait_for(lambda: not alive(body), 10), "the orphaned body still runs"
        assert "was deleted" in res.stdout and f"pid {body}" in res.stdout, res.stdout
        lost = [e for e in log_entries(pytester.path / ".task_execution.log") if e.get("event") == "state_lost"]
        assert len(lost) == 1 and lost[0]["task_id"] == task_id and body in lost[0]["orphans"]
        # Nothing is left running: the next run executes the step normally.
        spec.write_text(spec.read_text().replace("sleep 60", "true"))
        again = run(pytester.path, "--spec", "SPEC.md")
        assert again.returncode == 0, again.stdout
        assert task_id not in header(spec.read_text(), 1) and "Failed" not in header(spec.read_text(), 1)
    finally:
        _kill_copies(pytester.path)


def test_running_marker_without_state_or_process_is_failed_state_lost(pytester: pytest.Pytester) -> None:
    """A plan cloned elsewhere, or .dotasks cleaned after its body ended: nothing to wait for."""
    spec = pytester.path / "SPEC.md"
    spec.write_text("- [ ] **STEP 1**: Train ⏳ Running [task_id: task_1_0badc0de] [2026-01-01T00:00:00]\n"
                    "  - run: true\n  - background: yes\n")
    res = run(pytester.path, "--spec", "SPEC.md", "--no-mark", "-v")
    assert res.returncode == 0, res.stdout
    assert "STEP 1: its background state" in res.stdout and "no process of it is running" in res.stdout
    assert "task_1_0badc0de" in header(spec.read_text(), 1)  # --no-mark: untouched
    res = run(pytester.path, "--spec", "SPEC.md", "-k", "no_such_step")
    line = header(spec.read_text(), 1)
    assert "✗ Failed [task_id: task_1_0badc0de]" in line and line.endswith("(state lost)"), line


def test_state_deleted_while_a_dependent_waits_keeps_the_real_verdict(pytester: pytest.Pytester) -> None:
    """The supervisor writes its state back when the body ends: the dependent gets the real result.

    Before: the waiting dependent found no state (blocked as failed) and the body's
    success was recorded as "process vanished".
    """
    spec = pytester.path / "SPEC.md"
    spec.write_text("""\
- [ ] **STEP 1**: Train
  - run: while [ ! -f go ]; do sleep 0.1; done; echo weights > model.bin
  - background: yes
  - timeout: 120s
  - outputs: model.bin
- [ ] **STEP 2**: Clean the folder mid-run
  - needs: none
  - run: rm -rf .dotasks && touch go
- [ ] **STEP 3**: Evaluate
  - needs: 1
  - run: cat model.bin > eval.txt
""")
    res = run(pytester.path, "--spec", "SPEC.md", "-rs")
    assert res.returncode == 0, res.stdout
    text = spec.read_text()
    assert "✓ [task_id: task_1_" in header(text, 1), header(text, 1)
    assert "✓ [task_id: task_3_" in header(text, 3), res.stdout
    assert (pytester.path / "eval.txt").read_text() == "weights\n"


# --------------------------------------------------------------------------- 9. monitor hazards


def test_a_named_pipe_as_monitor_file_does_not_hang(pytester: pytest.Pytester) -> None:
    """Before: the monitor's open() of the FIFO blocked forever, and pytest with it."""
    os.mkfifo(pytester.path / "loss.fifo")
    (pytester.path / "SPEC.md").write_text("""\
- [ ] **STEP 1**: Train
  - run: sleep 1
  - background: yes
  - monitor: loss.fifo every 0.1s
- [ ] **STEP 2**: After
  - run: true
""")
    try:
        res = run(pytester.path, "--spec", "SPEC.md", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("pytest hung on a named pipe as monitor file")
    assert res.returncode == 0, res.stdout
    assert "loss.fifo is a named pipe, not a regular file" in res.stdout, res.stdout
    entries = log_entries(pytester.path / ".task_execution.log")
    assert [e["event"] for e in entries if e.get("event") == "monitor_refused"] == ["monitor_refused"]


def _maxrss_kib(root: Path, *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run pytest in a fresh interpreter that reports its child's peak resident size (KiB)."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stdout.write(r.stdout); print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", wrapper, *PYTEST, *args], cwd=root, capture_output=True,
                         text=True, timeout=180, check=False)
    found = re.search(r"^MAXRSS (\d+)$", res.stdout, re.MULTILINE)
    assert found, res.stdout[-2000:] + res.stderr[-2000:]
    return int(found.group(1)), res


def test_a_huge_existing_monitor_file_is_neither_read_whole_nor_replayed(pytester: pytest.Pytester) -> None:
    """60 MB of an earlier run's log (ending in an old 'nan' alert) before the step starts.

    Before: the whole file was read at the first look (hundreds of MB resident)
    and its last old lines were logged and alerted as this run's.
    """
    old = b"old run: step 123 loss 0.4567 lr 3e-4 and some more text to fill the line\n" * 800_000
    (pytester.path / "train.log").write_bytes(old + b"old run: loss nan\n" * 5)
    (pytester.path / "SPEC.md").write_text("""\
- [ ] **STEP 1**: Train
  - run: echo "fresh 1" >> train.log; sleep 0.5; echo "fresh 2" >> train.log
  - background: yes
  - monitor: train.log every 0.1s
  - alert: nan
- [ ] **STEP 2**: After
  - run: true
""")
    rss, res = _maxrss_kib(pytester.path, "--spec", "SPEC.md")
    assert "2 passed" in res.stdout, res.stdout[-3000:]
    assert "ALERT" not in res.stdout, "an old alert was replayed"
    entries = log_entries(pytester.path / ".task_execution.log")
    assert [e["message"] for e in entries if e.get("event") == "monitor"] == ["fresh 1", "fresh 2"]
    assert not [e for e in entries if e.get("event") == "alert"]
    assert rss < 120 * 1024, f"peak resident size {rss // 1024} MB with a 60 MB monitor file"


# --------------------------------------------------------------------------- 10. output


def test_big_output_is_captured_as_a_bounded_tail(pytester: pytest.Pytester) -> None:
    """5 MB of output from a failing step. Before: all of it in the failure report."""
    (pytester.path / "SPEC.md").write_text(
        "- [ ] **STEP 1**: Loud\n  - run: yes 'a line of output' | head -c 5000000; echo the last words; exit 3\n")
    res = run(pytester.path, "--spec", "SPEC.md")
    assert res.returncode == 1, res.stdout[-2000:]
    assert len(res.stdout) < 200_000, f"{len(res.stdout):,} characters of report"
    assert "bytes of earlier output not shown here" in res.stdout
    assert "the last words" in res.stdout
    out_file = next((pytester.path / ".dotasks" / "output").glob("task_1_*.log"))
    assert out_file.stat().st_size == 5_000_000 + len("the last words\n")  # the whole output is kept


def test_live_lines_under_v_are_throttled(pytester: pytest.Pytester) -> None:
    """200,000 lines under -v. Before: 200,000 terminal lines."""
    (pytester.path / "SPEC.md").write_text("- [ ] **STEP 1**: Chatty\n  - run: seq 200000\n")
    res = run(pytester.path, "--spec", "SPEC.md", "-v")
    assert res.returncode == 0, res.stdout[-2000:]
    live = [ln for ln in res.stdout.splitlines() if "→" in ln]
    assert len(live) < 2000, f"{len(live)} live lines"
    assert any("lines not shown" in ln for ln in live), live[-5:]
    assert live[-1].endswith("→ 200000"), live[-3:]  # the last lines always come through


# --------------------------------------------------------------------------- 11a. a bad --task-log


PLAN = "- [ ] **STEP 1**: One\n  - run: echo one > one.txt\n"


def _usage_error(res: subprocess.CompletedProcess[str], path: str, spec: Path) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == 4, out
    no_traceback(out)
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and path in errors[0] and "--task-log" in errors[0], out
    assert spec.read_text() == PLAN
    assert not (spec.parent / "one.txt").exists()


def test_task_log_that_is_a_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """Before: every step ran, then was marked ✗ Failed for a log it could not write."""
    spec = pytester.path / "SPEC.md"
    spec.write_text(PLAN)
    (pytester.path / "logs").mkdir()
    _usage_error(run(pytester.path, "--spec", "SPEC.md", "--task-log", "logs"), "logs", spec)
    assert not list((pytester.path / "logs").iterdir())


def test_task_log_under_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    spec = pytester.path / "SPEC.md"
    spec.write_text(PLAN)
    _usage_error(run(pytester.path, "--spec", "SPEC.md", "--task-log", "SPEC.md/log.jsonl"), "SPEC.md/log.jsonl",
                 spec)


def _without_dac_override() -> list[str] | None:
    """A prefix running a child as root without the capabilities that ignore file modes (see test_faults)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "print(1)"], capture_output=True, text=True, check=False)
    return prefix if probe.returncode == 0 else None


def test_unwritable_task_log_is_a_usage_error(pytester: pytest.Pytester) -> None:
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
    spec = pytester.path / "SPEC.md"
    spec.write_text(PLAN)
    log = pytester.path / "ro.log"
    log.write_text("")
    log.chmod(0o444)
    locked = pytester.mkdir("locked")
    locked.chmod(0o555)
    try:
        for path in ("ro.log", "locked/new.log"):
            res = subprocess.run([*prefix, *PYTEST, "--spec", "SPEC.md", "--task-log", path], cwd=pytester.path,
                                 capture_output=True, text=True, timeout=120, check=False)
            _usage_error(res, path, spec)
        assert log.read_text() == "" and not list(locked.iterdir())
    finally:
        locked.chmod(0o755)
        log.chmod(0o644)


def test_kill_9_of_pytest_mid_step_then_rerun_never_runs_the_command_twice_at_once(tmp_path: Path) -> None:
    """Found by a hostile try: the killed run's command lived on, the rerun's stale-claim takeover
    ran the step again beside it, and both wrote the step's files. The takeover now stops what the
    dead holder was running (it carries the old task id) before the step runs again."""
    (tmp_path / "SPEC.md").write_text(
        "- [ ] **STEP 1**: Long\n  - run: echo start >> ran.txt; sleep 6; echo end >> ran.txt\n")
    ran = tmp_path / "ran.txt"
    first = subprocess.Popen([*PYTEST, "--spec", "SPEC.md", "-q"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120  # hang guard only
        while not (ran.exists() and "start" in ran.read_text()):
            assert time.monotonic() < deadline, "the first run never started its step"
            time.sleep(0.05)
    finally:
        first.kill()  # kill -9 of pytest alone: its command, in its own session, survives it
        first.wait()
    res = subprocess.run([*PYTEST, "--spec", "SPEC.md", "-q"], cwd=tmp_path, capture_output=True, text=True, check=False,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    time.sleep(1)  # the old command, had it lived, would have written its "end" by now
    assert ran.read_text().split() == ["start", "start", "end"]
