"""Collection: a 5,000-step SPEC.md against 5,000 trivial Python tests.

``pytest --spec SPEC.md --collect-only -q`` vs ``pytest --collect-only -q tests/``
(50 files of 100 ``def test_i(): assert True``). The goal is a ratio of at most
1.0: a plan step should not cost more to collect than a Python test.

Then an in-process breakdown of where a plan's collection time goes (markdown-it,
the fast block reader that replaces it for plain plans, our own pass, field
validation), and with
``--profile`` the top functions of a cProfile'd collection.

Run: ``python benchmarks/bench_collect.py [--steps 5000] [--profile]`` (about 30-60 s here).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    PYTEST_BASE,
    child_env,
    header,
    machine,
    plan_text,
    pytest_cmd,
    python_tests,
    run,
    secs,
    table,
    workdir,
)

REPEATS = 3


def collected_in(out: str) -> float:
    m = re.search(r"collected in ([\d.]+)s", out)
    return float(m.group(1)) if m else float("nan")


def compare(d: Path, n: int) -> None:
    header(f"1. --collect-only: {n} plan steps vs {n} Python tests (median of {REPEATS}, after a warm-up)")
    rows = []
    results = {}
    for label, args in (("SPEC.md steps", ["--spec", "SPEC.md", "--collect-only", "-q"]),
                        ("Python tests", ["--collect-only", "-q", "tests"])):
        samples = []
        inner = []
        run(pytest_cmd(*args), d)
        for _ in range(REPEATS):
            t, res = run(pytest_cmd(*args), d)
            samples.append(t)
            inner.append(collected_in(res.stdout))
            assert f"{n} tests collected" in res.stdout, res.stdout[-500:]
        wall = statistics.median(samples)
        cpu = statistics.median(t.cpu for t in samples)
        results[label] = (wall, cpu, statistics.median(inner))
        rows.append([label, secs(wall), secs(cpu), secs(statistics.median(inner))])
    table(rows, ["what", "wall", "cpu", "pytest's 'collected in'"])
    (sw, sc, si), (pw, pc, pi) = results["SPEC.md steps"], results["Python tests"]
    print(f"  ratio steps/tests: wall {sw / pw:.2f}, cpu {sc / pc:.2f}, 'collected in' {si / pi:.2f} (aim <= 1.0)")
    print(f"  per item: steps {sc / n * 1e6:.0f} us cpu, tests {pc / n * 1e6:.0f} us cpu (whole process, startup included)")


def breakdown(d: Path, n: int) -> None:
    header(f"2. Where a {n}-step plan's collection goes (in-process, best of 3)")
    from markdown_it import MarkdownIt

    from pytest_dotasks.plan.fields import validate_spec
    from pytest_dotasks.plan.specmd import header_lines, parse_text

    text = (d / "SPEC.md").read_text()
    path = d / "SPEC.md"

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    from pytest_dotasks.plan.formats import blocks as blocks_mod
    from pytest_dotasks.plan.formats.fastblocks import fast_read

    n_lines = len(blocks_mod.split_lines(text))
    md_full = best(lambda: MarkdownIt("commonmark").parse(text))
    md_block = best(lambda: MarkdownIt("commonmark").disable(["inline", "text_join"]).parse(text))
    fast = best(lambda: fast_read(text, n_lines))
    answered = fast_read(text, n_lines) is not None
    parse = best(lambda: parse_text(text, path))
    spec = parse_text(text, path)
    validate = best(lambda: validate_spec(spec))
    headers = best(lambda: header_lines(text))
    saved = blocks_mod._REPLAYED
    # blocks() without its fast path
    blocks_mod._REPLAYED = None  # type: ignore[assignment]
    try:
        parse_md = best(lambda: parse_text(text, path))
    finally:
        blocks_mod._REPLAYED = saved
    rows = [
        ["markdown-it parse, commonmark, inline pass included", secs(md_full)],
        ["markdown-it block pass only (what spec.py ran before the fast path)", secs(md_block)],
        [f"formats.fastblocks.fast_read, same result ({'answered' if answered else 'stepped aside'})", secs(fast)],
        ["spec.parse_text (blocks + our pass + validate_spec)", secs(parse)],
        ["  the same with markdown-it instead of the fast path", secs(parse_md)],
        ["  of which our own pass (parse_text - fast_read - validate_spec)", secs(parse - fast - validate)],
        ["fields.validate_spec", secs(validate)],
        ["spec.header_lines (the marker's index; seeded by collection, not run there)", secs(headers)],
    ]
    table(rows, ["part", "seconds"])
    print(f"  the fast path reads this plan's blocks {md_block / fast:.1f}x faster than markdown-it's block pass.")


def profile(d: Path) -> None:
    header("3. cProfile of `pytest --spec SPEC.md --collect-only -q` (top 20 by own time)")
    prof = d / "collect.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pytest", *PYTEST_BASE,
                    "--spec", "SPEC.md", "--collect-only", "-q"], cwd=d, env=child_env(), capture_output=True,
                   check=True)
    import pstats

    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats("pytest_dotasks", 15)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the plan's collection")
    args = ap.parse_args()
    print("bench_collect:", machine())
    with workdir() as d:
        (d / "SPEC.md").write_text(plan_text(args.steps))
        python_tests(d / "tests", args.steps)
        compare(d, args.steps)
        breakdown(d, args.steps)
        if args.profile:
            profile(d)


if __name__ == "__main__":
    main()
