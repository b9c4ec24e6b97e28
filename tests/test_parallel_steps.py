"""Steps that can run at once run on different xdist workers, and wait for each other there.

A Spec Kit plan's ``[P]`` tasks (and STEP chains that need nothing of each other) go to
different workers; a step that needs a step of another worker waits for its outcome on the
run's board (run/board.py). The parallel tasks prove they ran at the same time by meeting:
each one waits for the other's file, so run one after the other they fail (hang guard 30 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

MEET = ("touch {me}.started; for i in $(seq 300); do [ -e {other}.started ] && break; sleep 0.1; done; "
        "[ -e {other}.started ] && echo {me} >> done.txt")

SPECKIT = f"""\
# Tasks: meeting

## Phase 1: Setup

- [ ] T001 Create the project
  - run: echo T001 >> done.txt

## Phase 2: Parallel work

- [ ] T002 [P] [US1] First half in a.py
  - run: {MEET.format(me="a", other="b")}
- [ ] T003 [P] [US1] Second half in b.py
  - run: {MEET.format(me="b", other="a")}
- [ ] T004 Join both halves
  - run: {{join}}
"""

JOIN_OK = "grep -qx a done.txt && grep -qx b done.txt && echo T004 >> done.txt"


def poll(condition: str, tenths: int = 300) -> str:
    """Shell: wait until ``condition`` holds, looking every 0.1 s; the count is only a hang guard."""
    return f"for i in $(seq {tenths}); do {condition} && break; sleep 0.1; done"


def entries(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def plan(pytester: pytest.Pytester, join: str = JOIN_OK) -> Path:
    folder = pytester.path / "specs" / "001-meet"
    folder.mkdir(parents=True)
    path = folder / "tasks.md"
    path.write_text(SPECKIT.replace("{join}", join))
    return path


def test_parallel_tasks_run_on_two_workers_at_once_and_the_join_waits(pytester: pytest.Pytester) -> None:
    path = plan(pytester)
    res = pytester.runpytest_subprocess("--spec", str(path), "-n", "2", "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=4)
    done = (path.parent / "done.txt").read_text().split()
    assert done[0] == "T001" and sorted(done[1:3]) == ["a", "b"] and done[3] == "T004"
    log = entries(path.parent / ".task_execution.log")
    workers = {e["step"]: e["worker"] for e in log if e.get("event") == "start"}
    assert workers["T002"] != workers["T003"]
    text = path.read_text()
    assert text.count("- [X] T00") == 4
    assert not list((path.parent / ".dotasks" / "runs").iterdir())  # the run's board is gone


def test_a_failed_parallel_task_blocks_the_join_on_another_worker(pytester: pytest.Pytester) -> None:
    path = plan(pytester)
    text = path.read_text().replace(MEET.format(me="b", other="a"), "touch b.started; exit 7")
    path.write_text(text)
    res = pytester.runpytest_subprocess("--spec", str(path), "-n", "2", "-rs", "-p", "no:cacheprovider",
                                        timeout=120)
    # T002 meets a partner that started and failed; T004 needs both.
    res.assert_outcomes(passed=2, failed=1, skipped=1)
    res.stdout.fnmatch_lines(["*STEP T003 failed in this run; STEP T004 needs it*"])
    assert "- [ ] T004" in path.read_text()


def test_without_xdist_the_same_plan_runs_in_file_order(pytester: pytest.Pytester) -> None:
    path = plan(pytester, join="echo T004 >> done.txt")
    text = path.read_text()
    for me in "ab":  # no partner to meet in one process
        other = "b" if me == "a" else "a"
        text = text.replace(MEET.format(me=me, other=other), f"echo {me} >> done.txt")
    path.write_text(text)
    res = pytester.runpytest_subprocess("--spec", str(path), "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=4)
    assert (path.parent / "done.txt").read_text().split() == ["T001", "a", "b", "T004"]
    assert not (path.parent / ".dotasks" / "runs").exists() or not list((path.parent / ".dotasks" / "runs").iterdir())


# Steps poll the run's board instead of sleeping for a time that a loaded machine may overrun:
# STEP 1's outcome is on it (.dotasks/runs/<run>/<plan>/1.json), so STEP 1 has failed;
AFTER_ONE = poll("ls .dotasks/runs/*/*/1.json >/dev/null 2>&1")
# a step of some worker waits on it for another's (.dotasks/runs/<run>/waiting/<worker>.json).
UNTIL_A_WAIT = poll("ls .dotasks/runs/*/waiting/*.json >/dev/null 2>&1")
STOPPED = f"""\
- [ ] **STEP 1**: Fails at once
  - needs: none
  - run: exit 1
- [ ] **STEP 2**: Slow enough for STEP 1 to stop the run
  - needs: none
  - run: {AFTER_ONE}
- [ ] **STEP 3**: Never runs: its worker stopped after STEP 1
  - needs: none
  - run: echo three > three.txt
- [ ] **STEP 4**: Needs STEP 2 and STEP 3
  - needs: 2, 3
  - run: echo four > four.txt
"""


def test_waiting_for_a_step_no_worker_will_run_ends_instead_of_hanging(pytester: pytest.Pytester) -> None:
    # -x: gw0 stops after STEP 1 fails and never runs STEP 3 (its chain was queued behind
    # STEP 1); gw1 runs STEP 2, then STEP 4 waits for STEP 3. Without the stuck check this
    # waits forever (the hang guard below fails the test).
    spec = pytester.makefile(".md", SPEC=STOPPED)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-x", "-p", "no:cacheprovider",
                                        timeout=120)
    out = res.stdout.str()
    assert "STEP 4 needs STEP 3, which no worker of this run will run now" in out
    assert not (pytester.path / "four.txt").exists()
    # It did not fail, it did not run (as the steps one process never reaches after -x):
    # a skip, no ✗ Failed marker, and not one more failure for -x/--maxfail to count.
    res.assert_outcomes(failed=1, passed=1, skipped=1)
    text = spec.read_text()
    assert "task_id" not in text.splitlines()[9]  # STEP 4's header is not marked


def test_many_independent_chains_spread_and_keep_their_order(pytester: pytest.Pytester) -> None:
    # A line of steps gains nothing from another worker: it stays on one, in order.
    lines = []
    for c in range(3):
        for k in range(4):
            n = c * 4 + k + 1
            lines.append(f"- [ ] **STEP {n}**: chain {c} step {k}")
            if k == 0:
                lines.append("  - needs: none")
            lines.append(f"  - run: echo $DOTASKS_STEP >> order-{c}.txt")
    lines += ["- [ ] **STEP 13**: After every chain", "  - needs: 4, 8, 12",
              "  - run: cat order-0.txt order-1.txt order-2.txt > all.txt"]
    pytester.makefile(".md", SPEC="\n".join(lines) + "\n")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "3", "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=13)
    for c in range(3):
        assert (pytester.path / f"order-{c}.txt").read_text().split() == [str(c * 4 + k + 1) for k in range(4)]
    assert len((pytester.path / "all.txt").read_text().split()) == 12
    log = entries(pytester.path / ".task_execution.log")
    by_step = {e["step"]: e["worker"] for e in log if e.get("event") == "start"}
    for c in range(3):
        assert len({by_step[c * 4 + k + 1] for k in range(4)}) == 1


def test_a_background_step_on_one_worker_is_awaited_by_a_step_on_another(pytester: pytest.Pytester) -> None:
    # STEP 1 trains in the background on one worker; STEP 3 needs it and STEP 2 (two needs:
    # its own chain), so it may be on the other worker: it learns STEP 1's task id from the
    # board and waits for the background outcome, as in one process.
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Train in the background
  - needs: none
  - run: sleep 1; echo weights > model.bin
  - background: yes
  - outputs: model.bin
- [ ] **STEP 2**: Something else meanwhile
  - needs: none
  - run: echo other > other.txt
- [ ] **STEP 3**: Evaluate
  - needs: 1, 2
  - run: test -s model.bin && echo evaluated > eval.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "--wait-background",
                                        "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=3)
    assert (pytester.path / "eval.txt").read_text().strip() == "evaluated"
    header = next(x for x in spec.read_text().splitlines() if "**STEP 3**" in x)
    assert "✓ [task_id: task_3_" in header


def test_a_worker_killed_mid_step_fails_it_for_the_steps_waiting_on_other_workers(pytester: pytest.Pytester) -> None:
    # STEP 1 kills its own worker (kill -9 of the process running it). xdist reports the
    # crash; the controller puts STEP 1 on the board as failed, and STEP 3 (waiting on the
    # other worker) is blocked with the reason instead of waiting for an outcome that no
    # worker will ever write.
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Kills its worker
  - needs: none
  - run: sleep 1; kill -9 $PPID
- [ ] **STEP 2**: Something else meanwhile
  - needs: none
  - run: echo other > other.txt
- [ ] **STEP 3**: Needs both
  - needs: 1, 2
  - run: echo three > three.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-rs", "-p", "no:cacheprovider",
                                        timeout=120)
    res.assert_outcomes(failed=1, passed=1, skipped=1)  # STEP 1 is not run a second time
    out = res.stdout.str()
    assert "SPEC.md: 1 done, 1 failed, 1 skipped" in out
    crash = "*✗ STEP 1: Kills its worker  (worker 'gw*' crashed while running *; no marker was written, the next run*"
    res.stdout.fnmatch_lines([crash])
    assert "STEP 1 failed in this run; STEP 3 needs it" in out
    assert not (pytester.path / "three.txt").exists()
    assert "- [ ] **STEP 1**" in (pytester.path / "SPEC.md").read_text()


def test_after_a_crash_the_replacement_worker_runs_the_rest(pytester: pytest.Pytester) -> None:
    # pytest-xdist 3.8's loadgroup hangs here (#1323, #1327): the replacement worker gets one
    # step and waits for a second one forever. scheduling.ChainScheduling tells it to finish.
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Kills its worker
  - needs: none
  - run: kill -9 $PPID
- [ ] **STEP 2**: Independent
  - needs: none
  - run: echo two > two.txt
- [ ] **STEP 3**: Independent too
  - needs: none
  - run: echo three > three.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "1", "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(failed=1, passed=2)
    assert (pytester.path / "two.txt").exists() and (pytester.path / "three.txt").exists()


# Chains [1] (or [1, 2]) and [3] go to one worker, [2] (or [4]) and the next one to the other,
# the rest to whichever asks first. STEP 1 kills its worker while STEP 5 waits on the other
# worker for a step the dead worker had queued (STEP 1 sees STEP 5's wait on the board). xdist 3.8 (and our first scheduler) put the dead worker's unfinished chains back
# on the queue and handed them to the live worker, behind the waiting STEP 5: a wait for a
# step queued behind it, which ended as "stuck" (a pre-flight error and a ✗ Failed marker).
# The replacement worker takes them over instead, as if it were the worker that died.
CRASH_BEHIND_A_WAIT = """\
- [ ] **STEP 1**: Kills its worker
  - needs: none
  - run: {until_a_wait}; kill -9 $PPID
- [ ] **STEP 2**: {two}
  - needs: {two_needs}
  - run: echo two > two.txt
- [ ] **STEP 3**: Queued behind STEP 1 on its worker
  - needs: none
  - run: echo three > three.txt
- [ ] **STEP 4**: Quick
  - needs: none
  - run: echo four > four.txt
- [ ] **STEP 5**: Needs {needs}
  - needs: {needs}
  - run: echo five > five.txt
- [ ] **STEP 6**: Slow: done only once STEP 3 has run
  - needs: none
  - run: {until_three}
- [ ] **STEP 7**: Slow: done only once STEP 3 has run
  - needs: none
  - run: {until_three}
""".replace("{until_a_wait}", UNTIL_A_WAIT).replace("{until_three}", poll("[ -e three.txt ]"))


def test_a_chain_left_by_a_crashed_worker_is_not_queued_behind_a_step_waiting_for_it(
        pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=CRASH_BEHIND_A_WAIT.format(needs="3, 4", two="Independent",
                                                                              two_needs="none"))
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-rs", "-p", "no:cacheprovider",
                                        timeout=120)
    res.assert_outcomes(failed=1, passed=6)
    assert "no worker of this run will run now" not in res.stdout.str()
    assert (pytester.path / "five.txt").exists()
    header = next(x for x in spec.read_text().splitlines() if "**STEP 5**" in x)
    assert "✓ [task_id: task_5_" in header


def test_the_rest_of_a_crashed_chain_blocks_a_step_waiting_on_another_worker(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=CRASH_BEHIND_A_WAIT.format(needs="2, 4", two="Same chain as STEP 1",
                                                                              two_needs="1"))
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-rs", "-p", "no:cacheprovider",
                                        timeout=120)
    res.assert_outcomes(failed=1, passed=4, skipped=2)
    res.stdout.fnmatch_lines(["*STEP 2 did not run; STEP 5 needs it*"])
    assert "no worker of this run will run now" not in res.stdout.str()
    header = next(x for x in spec.read_text().splitlines() if "**STEP 5**" in x)
    assert "task_id" not in header


WAIT_UNDER_TIMEOUT = f"""\
- [ ] **STEP 1**: Quick
  - needs: none
  - run: echo one > one.txt
- [ ] **STEP 2**: Slower than --timeout, with a timeout of its own
  - needs: none
  - run: {UNTIL_A_WAIT}; sleep 3.5; echo two > two.txt
  - timeout: 60s
- [ ] **STEP 3**: Waits for STEP 2 on the other worker, then takes no time
  - needs: 1, 2
  - run: echo three > three.txt
"""


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_time_spent_waiting_for_another_worker_is_not_the_steps_timeout(pytester: pytest.Pytester,
                                                                        method: str) -> None:
    # In one process STEP 3 starts after STEP 2 and passes under --timeout 3; under -n 2 it
    # waited for STEP 2 inside its own limit: "timed out in main" (signal) or a killed worker
    # (thread). pytest-timeout's timer is paused while a step waits on the board. STEP 2 ends
    # 3.5 s after STEP 3's wait began (it sees it on the board): STEP 3 waits longer than 3 s.
    pytester.makefile(".md", SPEC=WAIT_UNDER_TIMEOUT)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "--timeout", "3", "--timeout-method",
                                        method, "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=3)
    assert (pytester.path / "three.txt").exists()


def test_a_failed_need_ends_the_wait_for_another_need_at_once(pytester: pytest.Pytester) -> None:
    # STEP 5 needs STEP 1 (long, other worker) and STEP 2 (fails at once). It used to wait for
    # STEP 1 first, holding its worker; now it is blocked as soon as STEP 2 has failed, and its
    # worker goes on to STEP 6, which STEP 1 waits for (so STEP 1 passes only if it does).
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Long, and passes only if STEP 6 runs meanwhile
  - needs: none
  - run: for i in $(seq 300); do [ -e six.txt ] && break; sleep 0.1; done; test -e six.txt
- [ ] **STEP 2**: Fails at once
  - needs: none
  - run: exit 1
- [ ] **STEP 3**: Filler
  - needs: none
  - run: echo three > three.txt
- [ ] **STEP 4**: Filler
  - needs: none
  - run: echo four > four.txt
- [ ] **STEP 5**: Needs STEP 1 and STEP 2
  - needs: 1, 2
  - run: echo five > five.txt
- [ ] **STEP 6**: Independent
  - needs: none
  - run: echo six > six.txt
""")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-rs", "-p", "no:cacheprovider",
                                        timeout=120)
    res.assert_outcomes(passed=4, failed=1, skipped=1)
    res.stdout.fnmatch_lines(["*STEP 2 failed in this run; STEP 5 needs it*"])
    assert not (pytester.path / "five.txt").exists()


def test_a_board_that_cannot_be_written_is_a_usage_error_not_an_internal_error(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=STOPPED)
    (pytester.path / ".dotasks").mkdir()
    (pytester.path / ".dotasks" / "runs").write_text("not a folder")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-p", "no:cacheprovider", timeout=120)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*-n needs the run's board in *runs, which cannot be written (Not a directory)*"])
    assert "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
    assert "task_id" not in spec.read_text()


# The leftover command of the test below still runs (a process, and not a zombie nobody reaps).
LEFT_LIVES = "grep -qs '^[0-9]* (.*) [^Z]' /proc/$(cat left.pid)/stat"
LEFT_BEHIND = f"""\
- [ ] **STEP 1**: Leaves a command behind, then kills its worker
  - needs: none
  - run: sh -c 'echo $$ > left.pid; {poll("[ -e go ]", 600)}; echo late > late.txt' & sleep 0.5; kill -9 $PPID
- [ ] **STEP 2**: Outlasts the leftover command
  - needs: none
  - run: {poll(f"[ -s left.pid ] && ! {LEFT_LIVES}", 600)}; if {LEFT_LIVES}; then touch go; \
{poll("[ -e late.txt ]", 300)}; fi; echo two > two.txt
"""


def test_a_crashed_workers_commands_are_stopped_by_the_controller(pytester: pytest.Pytester) -> None:
    # STEP 1 leaves a command behind, then its worker dies. Without the controller stopping it
    # (run.claims.stop_orphans, by the task id of the dead worker's claim), late.txt appears
    # while STEP 2 still runs: work of a step already reported failed. The leftover writes it
    # once told to go; STEP 2 tells it if it still lives 60 s on (and waits for late.txt), and
    # ends at once when it is gone (no sleeps for a loaded machine to overrun).
    pytester.makefile(".md", SPEC=LEFT_BEHIND)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(failed=1, passed=1)
    assert (pytester.path / "two.txt").exists()
    claims = {p.name: p.read_text() for p in (pytester.path / ".dotasks" / "claims").glob("*.json")}
    assert not (pytester.path / "late.txt").exists(), f"the leftover was not stopped; claims {claims}\n{res.stdout.str()}"


def test_a_need_later_in_the_file_is_named_as_such(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Needs a later step
  - needs: 3
  - run: true
- [ ] **STEP 2**: Plain
  - needs: none
  - run: true
- [ ] **STEP 3**: Later
  - needs: none
  - run: true
""")
    before = (pytester.path / "SPEC.md").read_text()
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-p", "no:cacheprovider", timeout=120)
    assert res.ret == pytest.ExitCode.USAGE_ERROR  # found before any step runs
    later = ("*SPEC.md:1: STEP 1 needs STEP 3, which comes after it in the plan (steps run in file order); "
             "fix: move STEP 3 above STEP 1, or run it first (--steps 3)*")
    res.stderr.fnmatch_lines([later])
    assert (pytester.path / "SPEC.md").read_text() == before
    assert not (pytester.path / ".task_execution.log").exists()


def test_a_plan_warning_is_said_once_under_xdist(pytester: pytest.Pytester) -> None:
    # Every worker collects the plan; pytest listed the warning's place once per worker.
    folder = pytester.path / "specs" / "001-dup"
    folder.mkdir(parents=True)
    (folder / "tasks.md").write_text("## Phase 1: Setup\n- [ ] T001 One\n  - run: true\n"
                                     "- [ ] T001 Again\n  - run: true\n")
    res = pytester.runpytest_subprocess(str(folder / "tasks.md"), "-n", "3", "--no-mark", "-p", "no:cacheprovider",
                                        timeout=120)
    res.assert_outcomes(passed=2)
    places = [ln for ln in res.stdout.lines if ln.strip() == "specs/001-dup/tasks.md:4"]
    assert len(places) == 1, res.stdout.str()
    assert "this one runs as T001-2" in res.stdout.str()
