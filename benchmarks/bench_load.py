"""Plugin load cost: what installing pytest-dotasks costs a plain ``pytest`` run.

1. ``python -X importtime``: the import of the entry point ``pytest_dotasks.plugin``
   (after ``pytest``, which pytest has loaded anyway) and what it pulls in.
2. ``pytest --version`` and ``pytest --co -q`` in an empty folder, plugin enabled
   vs ``-p no:dotasks`` (interleaved repeats; median and min of the difference).
3. Proof that a plain ``pytest`` run that collects ordinary tests leaves the heavy
   modules (``anthropic``, ``tinker``, ``markdown_it``, ``yaml``, ``filelock``)
   unimported: a conftest dumps ``sys.modules`` at session finish.

Run: ``python benchmarks/bench_load.py`` (about 40-60 s here).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import Timing, child_env, header, machine, ms, pytest_cmd, python_tests, run, table, workdir

HEAVY = ("anthropic", "tinker", "markdown_it", "yaml", "filelock")
REPEATS = 7
STARTUP_REPEATS = 15


def _importtime(code: str, after: str) -> tuple[list[float], dict[str, int]]:
    """Cumulative seconds of the top-level imports that follow ``after`` in ``code``, per run;
    and the self time of each module the last run imported."""
    cumulative: list[float] = []
    modules: dict[str, int] = {}
    for k in range(REPEATS + 1):
        res = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=child_env(),
                             capture_output=True, text=True, check=True)
        total = 0
        seen_pytest = False
        for line in res.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            self_us, cum_us, name = line[len("import time:"):].split("|")
            name = name.rstrip()
            level = (len(name) - len(name.lstrip()) - 1) // 2  # one space, then two per level
            bare = name.strip()
            if level == 0 and bare == after:
                seen_pytest = True
                continue
            if not seen_pytest:
                continue
            if level == 0:
                total += int(cum_us)
            if k == REPEATS:  # last run: list the modules it imported
                modules[bare] = int(self_us)
        if k:  # first run warms the .pyc caches
            cumulative.append(total / 1e6)
    return cumulative, modules


def importtime() -> None:
    header("1. python -X importtime: import pytest_dotasks.plugin (pytest already imported)")
    cumulative, modules = _importtime("import pytest; import pytest_dotasks.plugin", "pytest")
    print(f"  import of pytest_dotasks.plugin after pytest: median {ms(statistics.median(cumulative))}, "
          f"min {ms(min(cumulative))} ({REPEATS} runs)")
    print("  modules it imports that pytest had not (self time, last run):")
    for name, us in sorted(modules.items(), key=lambda kv: -kv[1]):
        print(f"    {name:40s} {us / 1000:7.2f} ms")
    cumulative, modules = _importtime("import pytest, pytest_dotasks.plugin; import pytest_dotasks.items",
                                      "pytest_dotasks.plugin")
    print(f"  then pytest_dotasks.items (what pytest_collect_file imports for every collected file, "
          f"even in a plain run): median {ms(statistics.median(cumulative))}, min {ms(min(cumulative))}")
    print(f"    it pulls in: {', '.join(sorted(modules))}")


def _compare(d: Path, args: list[str]) -> list[str]:
    on: list[Timing] = []
    off: list[Timing] = []
    run(pytest_cmd(*args), d)  # warm-up (.pyc caches)
    run(pytest_cmd("-p", "no:dotasks", *args), d)
    for _ in range(STARTUP_REPEATS):  # interleaved, so drift in machine load hits both sides
        on.append(run(pytest_cmd(*args), d)[0])
        off.append(run(pytest_cmd("-p", "no:dotasks", *args), d)[0])
    med = statistics.median
    cpu_on = [t.cpu for t in on]
    cpu_off = [t.cpu for t in off]
    return [ms(med(off)), ms(med(on)), ms(med(on) - med(off)),
            ms(med(cpu_off)), ms(med(cpu_on)), ms(med(cpu_on) - med(cpu_off)), ms(min(cpu_on) - min(cpu_off))]


def startup() -> None:
    header("2. pytest in a folder: plugin enabled vs -p no:dotasks (medians of interleaved runs)")
    rows = []
    with workdir() as d:
        rows.append(["pytest --version (empty folder)", *_compare(d, ["--version"])])
        rows.append(["pytest --co -q (empty folder)", *_compare(d, ["--co", "-q"])])
        python_tests(d / "tests", 200)
        rows.append(["pytest -q tests/ (200 plain tests)", *_compare(d, ["-q", "tests"])])
    table(rows, ["command", "wall off", "wall on", "wall diff", "cpu off", "cpu on", "cpu diff",
                 "cpu diff of mins"])
    print("  off = -p no:dotasks; cpu = user+sys of the pytest process (steadier than wall on a busy machine)")
    print("  pytest 9 answers --version before loading pytest11 plugins: that row is a control (0 expected)")


CONFTEST = """\
import json, sys

def pytest_sessionfinish(session):
    with open("modules.json", "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def modules_after_plain_run() -> None:
    header("3. sys.modules after a plain `pytest` run collecting ordinary tests")
    with workdir() as d:
        (d / "conftest.py").write_text(CONFTEST)
        (d / "test_plain.py").write_text("".join(f"def test_{i}():\n    assert {i} == {i}\n\n" for i in range(20)))
        # A markdown file with a step in it: plain pytest must still not look at it.
        (d / "README.md").write_text("# Plan\n\n- [ ] **STEP 1**: Hello\n  - run: echo hi\n")
        plain = [sys.executable, "-m", "pytest", "-q"]
        _, res = run(plain, d)
        print("  $ pytest -q   ->", res.stdout.strip().splitlines()[-1])
        with_plugin = set(json.loads((d / "modules.json").read_text()))
        run(plain + ["-p", "no:dotasks"], d)
        without = set(json.loads((d / "modules.json").read_text()))
    rows = []
    for mod in HEAVY:
        loaded = sorted(m for m in with_plugin if m == mod or m.startswith(mod + "."))
        rows.append([mod, "LOADED: " + ", ".join(loaded[:3]) if loaded else "not imported"])
    table(rows, ["module", "after plain pytest (plugin enabled)"])
    ours = sorted(m for m in with_plugin if m.startswith("pytest_dotasks"))
    print(f"  pytest_dotasks modules loaded: {', '.join(ours)}")
    added = sorted(with_plugin - without)
    print(f"  modules present only because the plugin is enabled ({len(added)}): {', '.join(added)}")
    bad = [r[0] for r in rows if r[1].startswith("LOADED")]
    print("  RESULT:", "heavy modules stay unimported" if not bad else f"PROBLEM: {', '.join(bad)} imported")


def main() -> None:
    print("bench_load:", machine())
    importtime()
    startup()
    modules_after_plain_run()


if __name__ == "__main__":
    main()
