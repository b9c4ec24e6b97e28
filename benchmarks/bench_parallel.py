"""Parallelism: pre-flight checks in a pool, and steps on xdist workers.

1. One step with three pre-flight checks that each take 1 s (``check: sleep 1; ...``):
   ``--check-workers 3`` (the default) vs ``--check-workers 1``. The pre-flight
   time is read from the JUnit property ``seconds_preflight``.
2. Four independent chains of three ``sleep 0.5`` steps (6 s of sleeping in all):
   no xdist, ``-n 1``, ``-n 2`` and ``-n 4``. Chains stay on one worker
   (xdist loadgroup), so four chains can at best finish in 1.5 s of sleeping.
   This machine has 2 cores: each xdist worker is a full pytest process that
   imports and collects, which is what eats into the gain.

Run: ``python benchmarks/bench_parallel.py`` (about 40-60 s here).
"""

from __future__ import annotations

import json
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import header, machine, pytest_cmd, run, table, workdir

PREFLIGHT_PLAN = """\
# Pre-flight

- [ ] **STEP 1**: Three slow checks
  - check: sleep 1; echo a
  - check: sleep 1; echo b
  - check: sleep 1; echo c
  - run: true
"""

REPEATS = 2


def chains_plan(chains: int = 4, length: int = 3, sleep: float = 0.5) -> str:
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
        for _ in range(REPEATS):
            t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", "--no-mark", "--check-workers", str(workers),
                                    "--junitxml", "j.xml"), d)
            assert "1 passed" in res.stdout, res.stdout[-800:]
            props = {p.get("name"): p.get("value") for p in ET.parse(d / "j.xml").iter("property")}
            pre.append(float(props["seconds_preflight"]))
            walls.append(t)
        rows.append([f"--check-workers {workers}", f"{statistics.median(pre):.2f} s",
                     f"{statistics.median(walls):.2f} s"])
    table(rows, ["setting", "pre-flight (seconds_preflight)", "whole pytest run (wall)"])


def xdist(d: Path) -> None:
    header("2. Four independent chains of 3 x `sleep 0.5` (6 s of sleep; 1.5 s per chain)")
    (d / "SPEC.md").write_text(chains_plan())
    rows = []
    base = None
    for label, extra in (("no xdist", []), ("-n 1", ["-n", "1"]), ("-n 2", ["-n", "2"]), ("-n 4", ["-n", "4"])):
        walls, cpus = [], []
        workers_per_chain: set[int] = set()
        for _ in range(REPEATS):
            (d / ".task_execution.log").unlink(missing_ok=True)
            t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", "--no-mark", *extra), d)
            assert "12 passed" in res.stdout, res.stdout[-800:]
            walls.append(t)
            cpus.append(t.cpu)
            starts = [json.loads(x) for x in (d / ".task_execution.log").read_text().splitlines() if x.strip()]
            by_chain: dict[int, set[str]] = {}
            for e in starts:
                if e.get("event") == "start":
                    by_chain.setdefault((e["step"] - 1) // 3, set()).add(str(e.get("worker")))
            workers_per_chain.add(max(len(w) for w in by_chain.values()))
        wall = statistics.median(walls)
        base = base or wall
        rows.append([label, f"{wall:.2f} s", f"{statistics.median(cpus):.2f} s", f"{base / wall:.2f}x",
                     "yes" if workers_per_chain == {1} else "NO"])
    table(rows, ["run", "wall", "cpu (all processes)", "speed-up vs no xdist", "each chain on one worker"])


def main() -> None:
    print("bench_parallel:", machine())
    with workdir() as d:
        run(pytest_cmd("--version"), d)  # warm-up (.pyc caches)
        preflight(d)
        xdist(d)


if __name__ == "__main__":
    main()
