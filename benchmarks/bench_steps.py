"""Per-step overhead on ``run: true`` steps, against a shell loop running the same commands.

Plans of N_SMALL and N_LARGE ``run: true`` steps (a default chain: each needs the
previous one), run with ``--no-mark`` and with marking. The per-step cost is the
slope ``(T(N_LARGE) - T(N_SMALL)) / (N_LARGE - N_SMALL)``, so pytest's start-up and
collection drop out; the plugin's overhead is that minus what one command costs on
its own (``sh -c true`` started by a shell loop, and by Python's subprocess).
The aim is under 5 ms per step.

``--profile`` adds a cProfile of the marking run, summed per step.

Run: ``python benchmarks/bench_steps.py [--profile]`` (about 40-60 s here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import PYTEST_BASE, child_env, header, machine, ms, plan_text, pytest_cmd, run, table, workdir

N_SMALL, N_LARGE = 50, 300
REPEATS = 3


def shell_loop(d: Path, n: int) -> float:
    t, _ = run(["sh", "-c", f"i=0; while [ $i -lt {n} ]; do sh -c true; i=$((i+1)); done"], d)
    return t / n


def python_spawn(d: Path, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run("true", shell=True, cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, start_new_session=True, check=True)
    return (time.perf_counter() - t0) / n


def timed_plan(d: Path, n: int, extra: list[str]) -> tuple[float, float]:
    """(wall, cpu) of one run over a fresh plan of ``n`` steps."""
    (d / "SPEC.md").write_text(plan_text(n, fields=False, phases=0))
    for leftover in (d / ".task_execution.log",):
        leftover.unlink(missing_ok=True)
    t, res = run(pytest_cmd("--spec", "SPEC.md", "-q", *extra), d)
    assert f"{n} passed" in res.stdout, res.stdout[-800:]
    return t, t.cpu


def per_step(d: Path, extra: list[str]) -> tuple[float, float, float, float]:
    small = [timed_plan(d, N_SMALL, extra) for _ in range(REPEATS)]
    large = [timed_plan(d, N_LARGE, extra) for _ in range(REPEATS)]
    med = statistics.median
    wall = (med(x[0] for x in large) - med(x[0] for x in small)) / (N_LARGE - N_SMALL)
    cpu = (med(x[1] for x in large) - med(x[1] for x in small)) / (N_LARGE - N_SMALL)
    return wall, cpu, med(x[0] for x in large), med(x[0] for x in small)


def profile(d: Path) -> None:
    header(f"3. cProfile of a marking run of {N_LARGE} steps, per step (functions of interest)")
    (d / "SPEC.md").write_text(plan_text(N_LARGE, fields=False, phases=0))
    (d / ".task_execution.log").unlink(missing_ok=True)
    prof = d / "steps.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pytest", *PYTEST_BASE,
                    "--spec", "SPEC.md", "-q"], cwd=d, env=child_env(), capture_output=True, check=True)
    import pstats

    st = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    wanted = {
        "posix.fsync (marking: fsync of the temp file)": ("~", 0, "<built-in method posix.fsync>"),
        "posix.replace (marking: rename over SPEC.md)": ("~", 0, "<built-in method posix.replace>"),
        "_posixsubprocess.fork_exec (starting sh)": ("~", 0, "<built-in method _posixsubprocess.fork_exec>"),
    }
    rows = []
    for label, key in wanted.items():
        if key in st:
            rows.append([label, ms(st[key][3] / N_LARGE)])
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in sorted(st.items(), key=lambda kv: -kv[1][3]):
        if "pytest_dotasks" in file and func in {"mark", "_mark_locked", "_rewrite", "read_marker", "write",
                                                  "run_shell", "setup", "runtest", "preflight", "post",
                                                  "pytest_runtest_makereport", "_skip_if_done_or_blocked"}:
            rows.append([f"{Path(file).name}:{func} (cumulative)", ms(ct / N_LARGE)])
    table(rows, ["where", "per step"])
    log = [json.loads(x) for x in (d / ".task_execution.log").read_text().splitlines() if x.strip()]
    print(f"  task log: {len(log) / N_LARGE:.1f} lines per step, each appended with its own open/write/close")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    print("bench_steps:", machine())
    with workdir() as d:
        timed_plan(d, 5, [])  # warm-up (.pyc caches)
        header("1. One command on its own (the floor)")
        sh = statistics.median(shell_loop(d, 300) for _ in range(3))
        py = statistics.median(python_spawn(d, 200) for _ in range(3))
        table([["sh loop: sh -c true", ms(sh)], ["python subprocess.run('true', shell=True)", ms(py)]],
              ["command", "per command"])
        header(f"2. Plugin per step: slope between {N_SMALL} and {N_LARGE} `run: true` steps (median of {REPEATS})")
        rows = []
        for label, extra in (("--no-mark", ["--no-mark"]), ("marking", [])):
            wall, cpu, t_large, t_small = per_step(d, extra)
            rows.append([label, f"{t_small:.2f} s", f"{t_large:.2f} s", ms(wall), ms(cpu), ms(wall - sh),
                         ms(wall - py)])
        table(rows, ["mode", f"{N_SMALL} steps", f"{N_LARGE} steps", "per step (wall)", "per step (cpu)",
                     "overhead vs sh loop", "overhead vs python spawn"])
        print("  cpu = user+sys of pytest and its children (the sh processes included).")
        if args.profile:
            profile(d)


if __name__ == "__main__":
    main()
