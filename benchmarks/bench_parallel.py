"""Parallelism: pre-flight checks in a pool, and steps on xdist workers.

1. One step with three pre-flight checks that each take 1 s (``check: sleep 1; ...``):
   ``--check-workers 3`` (the default) vs ``--check-workers 1``. The pre-flight
   time is read from the JUnit property ``seconds_preflight``.
2. Four independent chains of two ``sleep 0.5`` steps (4 s of sleeping in all):
   no xdist, ``-n 1``, ``-n 2`` and ``-n 4``. Chains stay on one worker
   (xdist loadgroup), so four chains can at best finish in 1 s of sleeping.
   This machine has 2 cores: each xdist worker is a full pytest process that
   imports and collects, which is what eats into the gain.
3. Marking under xdist: 300 independent ``run: true`` steps, with and without
   ``--no-mark``, in one process and on ``-n 2``. Each process caches the plan's
   header lines keyed by the file's text; a mark by another worker changes the
   text, so the next mark (and the next step's setup) parses the plan again.

4. A Spec Kit plan: a setup task, four ``[P]`` tasks of ``sleep 3`` and a task after them
   (13 s of sleeping; 4 s at best, with the four ``[P]`` tasks on four workers): the ``[P]``
   tasks are chains of their own, and the last task waits for all four on the run's board.
   Each xdist worker is a whole pytest process: on 2 cores, starting four costs seconds.

Run: ``python benchmarks/bench_parallel.py`` (about 90 s here).
"""

from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import header, machine, plan_text, pytest_cmd, run, table, workdir

PREFLIGHT_PLAN = """\
# Pre-flight

- [ ] **STEP 1**: Three slow checks
  - check: sleep 1; echo a
  - check: sleep 1; echo b
  - check: sleep 1; echo c
  - run: true
"""

REPEATS = 2
PREFLIGHT_REPEATS = 1  # sleep-bound: steady to the hundredth


CHAINS, LENGTH = 4, 2


def chains_plan(chains: int = CHAINS, length: int = LENGTH, sleep: float = 0.5) -> str:
    lines = ["# Chains", ""]
    n = 0
    for c in range(chains):
        lines += [f"## Chain {c + 1}", ""]
        for k in range(length):
            n += 1
            lines.append(f"- [ ] **STEP {n}**: chain {c + 1} step {k + 1}")
            if k == 0:
                lines.append("  - needs: none")
            lines.append(f"  - run: sleep {sleep}")
        lines.append("")
    return "\n".join(lines)


def preflight(d: Path) -> None:
    header("1. Three 1 s pre-flight checks: --check-workers 3 vs 1")
    (d / "SPEC.md").write_text(PREFLIGHT_PLAN)
    rows = []
    for workers in (3, 1):
        pre, walls = [], []
        for _ in range(PREFLIGHT_REPEATS):
            t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", "--no-mark", "--check-workers", str(workers),
                                    "--junitxml", "j.xml"), d)
            assert "1 passed" in res.stdout, res.stdout[-800:]
            props = {p.get("name"): p.get("value") for p in ET.parse(d / "j.xml").iter("property")}
            pre.append(float(props.get("seconds_preflight") or "nan"))
            walls.append(t)
        rows.append([f"--check-workers {workers}", f"{statistics.median(pre):.2f} s",
                     f"{statistics.median(walls):.2f} s"])
    table(rows, ["setting", "pre-flight (seconds_preflight)", "whole pytest run (wall)"])


def xdist(d: Path) -> None:
    header(f"2. {CHAINS} independent chains of {LENGTH} x `sleep 0.5` ({CHAINS * LENGTH * 0.5:g} s of sleep; "
           f"{LENGTH * 0.5:g} s per chain)")
    (d / "SPEC.md").write_text(chains_plan())
    rows = []
    base = None
    for label, extra in (("no xdist", []), ("-n 1", ["-n", "1"]), ("-n 2", ["-n", "2"]), ("-n 4", ["-n", "4"])):
        walls, cpus = [], []
        workers_per_chain: set[int] = set()
        for _ in range(REPEATS):
            (d / ".task_execution.log").unlink(missing_ok=True)
            t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", "--no-mark", *extra), d)
            assert f"{CHAINS * LENGTH} passed" in res.stdout, res.stdout[-800:]
            walls.append(t)
            cpus.append(t.cpu)
            starts = [json.loads(x) for x in (d / ".task_execution.log").read_text().splitlines() if x.strip()]
            by_chain: dict[int, set[str]] = {}
            for e in starts:
                if e.get("event") == "start":
                    by_chain.setdefault((e["step"] - 1) // LENGTH, set()).add(str(e.get("worker")))
            workers_per_chain.add(max(len(w) for w in by_chain.values()))
        wall = statistics.median(walls)
        base = base or wall
        rows.append([label, f"{wall:.2f} s", f"{statistics.median(cpus):.2f} s", f"{base / wall:.2f}x",
                     "yes" if workers_per_chain == {1} else "NO"])
    table(rows, ["run", "wall", "cpu (all processes)", "speed-up vs no xdist", "each chain on one worker"])


# Counts full parses of the plan (spec.header_lines, what the marker's cache calls on a
# miss) per process; a conftest is loaded by every xdist worker too.
COUNTING_CONFTEST = """\
import os
import pytest_dotasks.plan.specmd as _spec

_calls = [0]
_original = _spec.header_lines


def _counting(text):
    _calls[0] += 1
    return _original(text)


_spec.header_lines = _counting


def pytest_sessionfinish(session):
    who = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(f"parses-{who}.txt", "w") as fh:
        fh.write(str(_calls[0]))
"""


def xdist_marking(d: Path, n: int = 300) -> None:
    header(f"3. Marking under xdist: {n} independent `run: true` steps")
    rows = []
    results = {}
    (d / "conftest.py").write_text(COUNTING_CONFTEST)
    try:
        for label, extra in (("one process, --no-mark", ["--no-mark"]), ("one process, marking", []),
                             ("-n 2, --no-mark", ["-n", "2", "--no-mark"]), ("-n 2, marking", ["-n", "2"])):
            (d / "SPEC.md").write_text(plan_text(n, chain=False))
            (d / ".task_execution.log").unlink(missing_ok=True)
            for old in d.glob("parses-*.txt"):
                old.unlink()
            t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", *extra), d)
            assert f"{n} passed" in res.stdout, res.stdout[-800:]
            results[label] = t
            parses = sum(int(p.read_text()) for p in d.glob("parses-*.txt"))
            rows.append([label, f"{t:.2f} s", f"{t.cpu:.2f} s", str(parses)])
    finally:
        (d / "conftest.py").unlink()
    table(rows, ["run", "wall", "cpu (all processes)", "header_lines parses (all processes)"])
    one = results["one process, marking"] - results["one process, --no-mark"]
    two = results["-n 2, marking"] - results["-n 2, --no-mark"]
    print(f"  marking costs {one / n * 1000:.1f} ms per step in one process and {two / n * 1000:.1f} ms per step "
          "on -n 2 (the parses column: a full markdown parse after another worker's mark shows up there)")


SPECKIT_PLAN = """\
# Tasks: parallel

## Phase 1: Setup

- [ ] T001 Set up
  - run: sleep 0.5

## Phase 2: Four at once

- [ ] T002 [P] Part a
  - run: sleep 3
- [ ] T003 [P] Part b
  - run: sleep 3
- [ ] T004 [P] Part c
  - run: sleep 3
- [ ] T005 [P] Part d
  - run: sleep 3
- [ ] T006 Join
  - run: sleep 0.5
"""


def speckit_parallel(d: Path) -> None:
    header("4. Spec Kit [P] tasks: setup 0.5 s, four [P] tasks of 3 s, join 0.5 s (13 s in one process)")
    folder = d / "specs" / "001-par"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tasks.md").write_text(SPECKIT_PLAN)
    rows = []
    base = None
    for label, extra in (("no xdist", []), ("-n 2", ["-n", "2"]), ("-n 4", ["-n", "4"])):
        walls = []
        workers: set[int] = set()
        for _ in range(REPEATS):
            log = folder / ".task_execution.log"
            log.unlink(missing_ok=True)
            t, res = run(pytest_cmd("--spec", str(folder / "tasks.md"), "-q", "--no-mark", *extra), d)
            assert "6 passed" in res.stdout, res.stdout[-800:]
            walls.append(t)
            events = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            workers.add(len({e.get("worker") for e in events if e.get("event") == "start"
                             and e.get("step") in ("T002", "T003", "T004", "T005")}))
        wall = statistics.median(walls)
        base = base or wall
        rows.append([label, f"{wall:.2f} s", f"{base / wall:.2f}x", ",".join(map(str, sorted(workers)))])
    table(rows, ["run", "wall", "speed-up vs no xdist", "workers the [P] tasks ran on"])


def main() -> None:
    print("bench_parallel:", machine())
    with workdir() as d:
        run(pytest_cmd("--version"), d)  # warm-up (.pyc caches)
        preflight(d)
        xdist(d)
        xdist_marking(d)
        speckit_parallel(d)


if __name__ == "__main__":
    main()
