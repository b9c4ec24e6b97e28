"""run.board: step outcomes shared by one run's xdist workers, and the wait that cannot hang."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_dotasks.plan.graph import chains
from pytest_dotasks.run.board import Board, Stuck, remove_old_runs


def board(tmp_path: Path, worker: str = "gw0") -> Board:
    return Board(tmp_path / ".dotasks", "run1", "SPEC.md", worker)


def test_outcome_round_trip_and_controller_never_overwrites(tmp_path: Path) -> None:
    b = board(tmp_path)
    assert b.get(3) is None
    b.put(3, "running", "task_3_ab")
    assert b.get(3) == ("running", "task_3_ab")
    board(tmp_path, "controller").put_if_absent(3, "failed")
    assert b.get(3) == ("running", "task_3_ab")
    board(tmp_path, "controller").put_if_absent(4, "failed")
    assert b.get(4) == ("failed", None)


def test_a_torn_or_foreign_file_is_no_outcome(tmp_path: Path) -> None:
    b = board(tmp_path)
    b.folder.mkdir(parents=True)
    (b.folder / "5.json").write_text('{"outcome": ')
    (b.folder / "6.json").write_text('["passed"]')
    assert b.get(5) is None and b.get(6) is None


def test_wait_returns_what_another_process_writes(tmp_path: Path) -> None:
    me = board(tmp_path, "gw0")
    me.register()
    other = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from pytest_dotasks.run.board import Board\n"
        f"b = Board(Path({str(tmp_path / '.dotasks')!r}), 'run1', 'SPEC.md', 'gw1'); b.register()\n"
        "time.sleep(0.5); b.put(2, 'passed')\n"
        "time.sleep(30)")])
    try:
        assert me.wait(2, stuck_after=20) == ("passed", None)
    finally:
        other.kill()
        other.wait()


def test_every_live_worker_waiting_is_stuck_not_a_hang(tmp_path: Path) -> None:
    # Two workers, each waiting for a step nobody will run (the run stopped short): both
    # waits end with Stuck (the first one's worker then exits, and the second one follows).
    code = (
        "import sys; from pathlib import Path; from pytest_dotasks.run.board import Board, Stuck\n"
        f"b = Board(Path({str(tmp_path / '.dotasks')!r}), 'run1', 'SPEC.md', sys.argv[1]); b.register()\n"
        "try:\n    b.wait(int(sys.argv[2]), stuck_after=0.5)\nexcept Stuck:\n    sys.exit(3)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, w, n]) for w, n in (("gw0", "7"), ("gw1", "8"))]
    try:
        assert [p.wait(timeout=60) for p in procs] == [3, 3]
    finally:
        for p in procs:
            p.kill()
    assert not list((tmp_path / ".dotasks" / "runs" / "run1" / "waiting").iterdir())  # no trace left


def test_a_live_worker_not_waiting_keeps_the_wait_going(tmp_path: Path) -> None:
    me = board(tmp_path, "gw0")
    me.register()
    busy = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from pytest_dotasks.run.board import Board\n"
        f"b = Board(Path({str(tmp_path / '.dotasks')!r}), 'run1', 'SPEC.md', 'gw1'); b.register()\n"
        "time.sleep(1.5); b.put(9, 'failed', None); time.sleep(30)")])
    try:
        registered = me.run_root / "workers" / "gw1.json"
        for _ in range(600):  # the busy worker has started (hang guard 60 s)
            if registered.exists():
                break
            time.sleep(0.1)
        # stuck_after is far shorter than the busy worker's step: still no Stuck.
        assert me.wait(9, stuck_after=0.2) == ("failed", None)
    finally:
        busy.kill()
        busy.wait()


def test_a_dead_workers_registration_does_not_count(tmp_path: Path) -> None:
    me = board(tmp_path, "gw0")
    me.register()
    gone = subprocess.run([sys.executable, "-c", (
        "from pathlib import Path; from pytest_dotasks.run.board import Board\n"
        f"Board(Path({str(tmp_path / '.dotasks')!r}), 'run1', 'SPEC.md', 'gw1').register()")], check=True)
    assert gone.returncode == 0
    with pytest.raises(Stuck):
        me.wait(1, stuck_after=0.3)


def test_a_worker_still_starting_keeps_the_wait_going_until_it_is_down(tmp_path: Path) -> None:
    # A replacement for a crashed worker boots for seconds: the controller stands in for it
    # (expect) until it registers, and takes it off when xdist reports it down (gone).
    me = board(tmp_path, "gw0")
    me.register()
    controller = board(tmp_path, "controller")
    controller.expect("gw2")
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(me.wait(1, stuck_after=0.3)))
    waiter.start()
    time.sleep(1.0)  # more than stuck_after: without the stand-in this wait is over
    board(tmp_path, "gw2").put(1, "passed")
    waiter.join(timeout=60)
    assert got == [("passed", None)]
    controller.gone("gw2")
    with pytest.raises(Stuck):
        me.wait(2, stuck_after=0.3)


def test_remove_and_old_runs(tmp_path: Path) -> None:
    b = board(tmp_path)
    b.put(1, "passed")
    b.remove()
    assert not b.run_root.exists()
    old = board(tmp_path)
    old.put(1, "passed")
    fresh = Board(tmp_path / ".dotasks", "run2", "SPEC.md", "gw0")
    fresh.put(1, "passed")
    past = time.time() - 3 * 86400
    os.utime(old.run_root, (past, past))
    remove_old_runs(tmp_path / ".dotasks")
    assert not old.run_root.exists() and fresh.run_root.exists()


# ---------------------------------------------------------------- plan.graph.chains


def test_chains_keep_lines_together_and_split_fan_outs() -> None:
    # 1 -> (2, 3 in parallel) -> 4 -> 5; 6 alone
    needs = {1: [], 2: [1], 3: [1], 4: [2, 3], 5: [4], 6: []}
    got = chains(needs, [1, 2, 3, 4, 5, 6])
    assert got[1] == 1
    assert got[2] == 2 and got[3] == 3  # a fan-out: each on its own
    assert got[4] == 4 and got[5] == 4  # 5 is 4's only dependent and needs only 4
    assert got[6] == 6


def test_chains_of_a_plain_line_are_one() -> None:
    needs = {n: ([n - 1] if n > 1 else []) for n in range(1, 9)}
    assert set(chains(needs, list(range(1, 9))).values()) == {1}


def test_a_forward_need_keeps_its_part_on_one_worker() -> None:
    # 2 needs 4, later in the file: no waiting across workers for it; 1..4 stay one unit.
    needs = {1: [], 2: [1, 4], 3: [1], 4: [3], 5: []}
    got = chains(needs, [1, 2, 3, 4, 5])
    assert {got[n] for n in (1, 2, 3, 4)} == {1}
    assert got[5] == 5


def test_every_chain_starts_after_the_steps_it_waits_for() -> None:
    # The property the deadlock-freedom of run.board rests on: a need in another chain is
    # earlier in the file than the first step of the waiting step's chain.
    import random

    rnd = random.Random(4)
    for _ in range(300):
        n = rnd.randint(1, 12)
        needs = {i: rnd.sample(range(1, i), rnd.randint(0, min(3, i - 1))) for i in range(1, n + 1)}
        got = chains(needs, list(range(1, n + 1)))
        for step, deps in needs.items():
            for d in deps:
                if got[d] != got[step]:
                    assert d < got[step] == step
                else:
                    assert d < step
