"""Marking cost as SPEC.md grows (1,000 and 10,000 steps), in-process.

``pytest_dotasks.plan.marking.mark`` re-reads the plan, finds the step's header line
again, rewrites that one line and replaces the file with a compare-and-swap
under a lock (temp file, fsync, check the plan is still what was read, swap
with RENAME_EXCHANGE, check the file swapped out), then journals the mark. It
caches the header line numbers and line offsets of the last text, so a run that
is the only writer parses the plan once and the CAS check re-reads bytes, never
re-parses. Measured:

1. the first mark of a run (empty cache: the plan is parsed with markdown-it);
2. a sequence of marks with a warm cache, for steps near the start, the middle
   and the end of the file (the cost of finding line i must not grow with i
   times the file size);
3. marks when the file changed externally between marks: a person's lines
   appended at the end (header lines kept: no parse), a person's lines inserted
   above the steps (a full re-parse), and another writer's marker (same lines:
   the cached header lines are verified and reused, no re-parse).

Run: ``python benchmarks/bench_marking.py [--sizes 1000,10000]`` (about 30-60 s here).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import header, machine, ms, plan_text, table, workdir

from pytest_dotasks.plan import marking
from pytest_dotasks.plan.model import STATUS_DONE

TS = "2026-11-24T10:30:12"
WARM_MARKS = 5  # consecutive steps marked at each position


def reset_cache() -> None:
    marking.reset_cache()  # what a fresh process starts with


def timed_mark(path: Path, n: int) -> float:
    t0 = time.perf_counter()
    marking.mark(path, n, STATUS_DONE, f"task_{n}_0123abcd", TS)
    return time.perf_counter() - t0


def timed_rewrite(text: str, n: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    new = marking.rewrite_header(text, n, STATUS_DONE, f"task_{n}_0123abcd", TS)
    return time.perf_counter() - t0, new


def positions(n: int) -> dict[str, list[int]]:
    return {
        "start": list(range(1, 1 + WARM_MARKS)),
        "middle": list(range(n // 2, n // 2 + WARM_MARKS)),
        "end": list(range(n - WARM_MARKS + 1, n + 1)),
    }


def bench_size(d: Path, n: int, external: int) -> list[list[str]]:
    path = d / f"SPEC-{n}.md"
    path.write_text(plan_text(n))
    size = path.stat().st_size
    rows: list[list[str]] = []

    reset_cache()
    rows.append([f"{n}", "first mark of a run (cache empty), last step", ms(timed_mark(path, n))])

    # Warm cache: marks at the start, middle and end of the file.
    per_pos: dict[str, float] = {}
    for label, steps in positions(n).items():
        timed_mark(path, steps[0])  # the cache follows our own write
        times = [timed_mark(path, s) for s in steps[1:]]
        per_pos[label] = statistics.median(times)
        note = " (about the I/O floor: read, lock, temp file, fsync, rename)" if label == "start" else ""
        rows.append([f"{n}", f"warm mark, step near the {label}{note}", ms(per_pos[label])])

    # The pure rewrite (no I/O) at the end of the file vs the whole mark: what is I/O.
    text = path.read_text()
    reset_cache()
    marking.rewrite_header(text, 1, STATUS_DONE, "task_1_0123abcd", TS)  # warm the cache on this text
    text = marking._cache.text or text
    rw, _ = timed_rewrite(text, n)
    rows.append([f"{n}", "  of which rewrite_header alone (end step, no I/O)", ms(rw)])

    # Marking every step of the plan in one run, estimated from the three positions
    # (the cost of a mark grows about linearly with the step's position).
    est = n * (per_pos["start"] + per_pos["middle"] + per_pos["end"]) / 3
    rows.append([f"{n}", "estimated: marking all steps once, one writer", f"{est:8.1f} s"])

    # A person's lines appended at the end between marks: header lines still hold.
    times = []
    for k in range(external):
        with path.open("a") as fh:
            fh.write(f"\nA line a person added ({k}).\n")
        times.append(timed_mark(path, n // 2 + 100 + k if n > 300 else k + 1))
    rows.append([f"{n}", f"mark after a person appended lines (median of {external})", ms(statistics.median(times))])

    # A person's lines inserted above the steps: every mark re-parses the plan.
    times = []
    for k in range(external):
        text = path.read_text()
        path.write_text(text.replace("\n", f"\nA line a person inserted ({k}).\n", 1))
        times.append(timed_mark(path, n // 2 + 150 + k if n > 300 else k + 1))
    rows.append([f"{n}", f"mark after a person inserted lines above (median of {external})",
                 ms(statistics.median(times))])

    # Another writer's marks between ours (xdist workers, a second run): same lines.
    times = []
    for k in range(external):
        other = n // 2 + 200 + k if n > 400 else k + 2
        text = path.read_text()
        path.write_text(marking.rewrite_header(text, other, STATUS_DONE, f"task_{other}_0badc0de", TS))
        times.append(timed_mark(path, n // 2 + 300 + k if n > 400 else k + 3))
    rows.append([f"{n}", f"mark after another writer's marker (median of {external})",
                 ms(statistics.median(times))])

    rows.append([f"{n}", "(file size)", f"{size / 1024:8.0f} KiB"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    args = ap.parse_args()
    print("bench_marking:", machine())
    header("Marking cost per mark as the plan grows")
    rows: list[list[str]] = []
    with workdir() as d:
        for n in (int(x) for x in args.sizes.split(",")):
            rows += bench_size(d, n, external=5 if n <= 2000 else 3)
    table(rows, ["steps", "what", "time"])


if __name__ == "__main__":
    main()
