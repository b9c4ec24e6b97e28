"""Output throughput of a ``run:`` step: 20 MB of output through the plugin against plain ``sh``.

A step whose command prints a lot (a data job, a verbose build) must not be slowed
down by the plugin passing its output on: to ``.dotasks/output/TASK.log`` (the
whole output), to the task log and the failure report (a tail), to pytest's
captured output (a bounded tail) and, under ``-v``, to the terminal (throttled).
Measured, for one command printing SIZE bytes of lines:

1. plain: ``sh -c 'CMD > file'`` (the floor);
2. the command's own time through the plugin: the ``seconds`` of its
   ``command_end`` event in the task log (process start to last byte read);
3. the whole step through pytest: a run of the plan minus a run of the same
   plan with ``run: true`` (start-up, collection and marking drop out),
   with ``-q`` and with ``-v`` (live lines).

The ratio of 2 (and of 3) to 1 is the figure to watch; the aim is under 2x.

Run: ``python benchmarks/bench_output.py [--mb 20]`` (about 10-30 s here).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import header, machine, pytest_cmd, run, secs, table, workdir

REPEATS = 3
LINE = "step 123456 loss 0.4567 lr 3e-4 tokens/s 98765 - a line of the kind a training job prints"


def command(size: int) -> str:
    return f"yes '{LINE}' | head -c {size}"


def plain(d: Path, size: int) -> float:
    t, _ = run(["sh", "-c", f"{command(size)} > plain.out"], d)
    return float(t)


def plan(d: Path, cmd: str) -> None:
    (d / "SPEC.md").write_text(f"# Output\n\n- [ ] **STEP 1**: Print a lot\n  - run: {cmd}\n")
    (d / ".task_execution.log").unlink(missing_ok=True)


def through_pytest(d: Path, cmd: str, extra: list[str]) -> tuple[float, float]:
    """(pytest wall seconds, the command's own seconds from the task log)."""
    plan(d, cmd)
    t, res = run(pytest_cmd("--spec", "SPEC.md", "--no-mark", *extra), d)
    assert "1 passed" in res.stdout, res.stdout[-800:]
    entries = [json.loads(x) for x in (d / ".task_execution.log").read_text().splitlines() if x.strip()]
    own = next(e["seconds"] for e in entries if e.get("event") == "command_end")
    return float(t), float(own)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0, help="megabytes of output (default 20)")
    args = ap.parse_args()
    size = int(args.mb * 1_000_000)
    print("bench_output:", machine())
    med = statistics.median
    with workdir() as d:
        through_pytest(d, "true", ["-q"])  # warm-up (.pyc caches)
        floor = med(plain(d, size) for _ in range(REPEATS))
        empty = med(through_pytest(d, "true", ["-q"])[0] for _ in range(REPEATS))
        header(f"{args.mb:g} MB of output (median of {REPEATS}); pytest start-up with `run: true`: {secs(empty)}")
        rows = [["plain: sh -c 'CMD > file'", secs(floor), "1.0x"]]
        for label, extra in (("plugin, -q", ["-q"]), ("plugin, -v (live lines)", ["-v"])):
            samples = [through_pytest(d, command(size), extra) for _ in range(REPEATS)]
            own = med(s[1] for s in samples)
            step = med(s[0] for s in samples) - empty
            rows.append([f"{label}: the command (task log seconds)", secs(own), f"{own / floor:.1f}x"])
            rows.append([f"{label}: the step (pytest run - empty run)", secs(step), f"{step / floor:.1f}x"])
        out = sorted((d / ".dotasks" / "output").glob("*.log"))
        kept = out[-1].stat().st_size if out else 0
        table(rows, ["what", "seconds", "ratio to plain"])
        print(f"  the output file kept {kept:,} of {size:,} bytes (the whole output)")


if __name__ == "__main__":
    main()
