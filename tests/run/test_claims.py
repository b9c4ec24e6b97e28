"""Claims (run/claims.py): one process executes a step; stale claims are taken over."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_dotasks.run import claims

pytest_plugins = ["pytester"]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "SPEC.md"
    path.write_text("- [ ] **STEP 1**: One\n  - run: true\n")
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(spec: Path, number: int, **data: object) -> Path:
    path = claims.claim_path(spec, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": claims._HOST, "task_id": "task_1_00000000", **data}))
    return path


def test_take_writes_owner_and_release_removes_it(spec: Path) -> None:
    claim = claims.take(spec, 1, "task_1_aaaaaaaa")
    assert claim is not None
    data = json.loads(claims.claim_path(spec, 1).read_text())
    assert data["pid"] == os.getpid() and data["task_id"] == "task_1_aaaaaaaa"
    assert data["starttime"] == Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert claims.held_by(spec, 1) == claim
    claim.release()
    assert not claims.claim_path(spec, 1).exists()
    assert not [p for p in claims.claims_dir(spec).iterdir() if p.name.endswith(".tmp")]
    claim.release()  # twice is harmless


def test_a_live_claim_of_another_process_is_held(spec: Path) -> None:
    parent = os.getppid()
    _write_claim(spec, 1, pid=parent, starttime=claims.proc_start(parent))
    with pytest.raises(claims.Held) as info:
        claims.take(spec, 1, "task_1_bbbbbbbb")
    assert info.value.holder.pid == parent
    assert str(info.value) == f"pid {parent} [task_id: task_1_00000000]"


@pytest.mark.parametrize("why", ["dead", "reused", "earlier_session"])
def test_a_stale_claim_is_taken_over(spec: Path, why: str) -> None:
    if why == "dead":
        _write_claim(spec, 1, pid=_dead_pid(), starttime="1")
    elif why == "reused":  # the pid lives, but it is another process than the one that claimed
        _write_claim(spec, 1, pid=os.getppid(), starttime="1")
    else:  # our own pid, left by an earlier in-process session (pytester)
        _write_claim(spec, 1, pid=os.getpid(), starttime=claims.proc_start(os.getpid()))
    claim = claims.take(spec, 1, "task_1_cccccccc")
    assert claim is not None and claim.task_id == "task_1_cccccccc"
    assert json.loads(claims.claim_path(spec, 1).read_text())["task_id"] == "task_1_cccccccc"
    claim.release()


def test_another_hosts_claim_holds(spec: Path) -> None:
    _write_claim(spec, 1, pid=_dead_pid(), starttime="1", host="elsewhere")
    with pytest.raises(claims.Held) as info:
        claims.take(spec, 1, "task_1_dddddddd")
    assert "on elsewhere" in str(info.value)


def test_the_same_step_twice_in_one_process_is_held(spec: Path) -> None:
    claim = claims.take(spec, 1, "task_1_eeeeeeee")
    assert claim is not None
    with pytest.raises(claims.Held):
        claims.take(spec, 1, "task_1_ffffffff")
    claim.release()


def test_a_read_only_folder_runs_unclaimed(spec: Path) -> None:
    (spec.parent / ".dotasks").write_text("not a folder")  # mkdir fails whatever our privileges
    assert claims.take(spec, 1, "task_1_12345678") is None


def _contend(args: tuple[str, int]) -> str:
    spec, n = args
    try:
        claim = claims.take(Path(spec), n, f"task_{n}_{os.getpid():08x}")
    except claims.Held:
        return "held"
    return "took" if claim is not None else "none"


def test_one_of_many_takers_of_a_stale_claim_wins(spec: Path) -> None:
    _write_claim(spec, 1, pid=_dead_pid(), starttime="1")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        results = pool.map(_contend, [(str(spec), 1)] * 12)
    assert results.count("took") == 1, results
    assert results.count("held") == 11, results


def test_xdist_workers_own_their_claims(pytester: pytest.Pytester) -> None:
    """Each worker claims the steps it runs; the controller never does. The claim names the
    process that starts the body (the body's parent)."""
    lines = []
    for n in range(1, 7):
        lines += [f"- [ ] **STEP {n}**: s{n}", "  - needs: none",
                  (f"  - run: cp .dotasks/claims/SPEC.md.step{n}.json claim-{n}.json; echo $PPID > parent-{n}.txt; "
                   f"echo $DOTASKS_TASK_ID > tid-{n}.txt")]
    pytester.makefile(".md", SPEC="\n".join(lines) + "\n")
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "-n", "2", timeout=120)
    res.assert_outcomes(passed=6)
    owners = set()
    for n in range(1, 7):
        claim = json.loads((pytester.path / f"claim-{n}.json").read_text())
        assert claim["pid"] == int((pytester.path / f"parent-{n}.txt").read_text())
        assert claim["task_id"] == (pytester.path / f"tid-{n}.txt").read_text().strip()
        owners.add(claim["pid"])
    assert os.getpid() not in owners
    assert not list((pytester.path / ".dotasks" / "claims").glob("*.json"))
