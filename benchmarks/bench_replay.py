"""Replaying a plan against recording it: wall time of ``--replay`` vs ``--record`` (and a plain run).

A plan of N_STEPS agent steps (the anthropic backend, the real SDK), each making three tool calls
(Write, Bash, Read) before it declares success, runs against the project's local Messages stub
(tests/stubs/anthropic_stub.py, in this process: zero latency, no tokens generated):

* plain:  no cassette, straight to the stub (what the proxy adds is the difference to "record");
* record: ``--record``, through the recording proxy to the stub;
* replay: ``--replay``, no key, ANTHROPIC_BASE_URL pointing where nothing listens.

The aim is replay <= record. Against the real API the recording run also waits for the model,
so the ratio there is far lower than against a zero-latency stub. Also printed: how long the
proxy takes to start and stop (it must start in milliseconds).

Run: ``python benchmarks/bench_replay.py [--repeats N]`` (about a minute here with the default 3).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import child_env, header, machine, ms, pytest_cmd, run, table, workdir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.stubs, pytest_dotasks

from pytest_dotasks.cassette.proxy import Proxy
from tests.agent.helpers import AGENT  # the executor the agent tests use
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, Reply, text, tool_use

N_STEPS = 8
REPEATS = 3


def plan() -> str:
    return "".join(f"- [ ] **STEP {n}**: Make file {n}\n  Write out{n}.txt and check it.\n  - needs: none\n"
                   f"  - outputs: out{n}.txt\n  - validate: grep -q {n} out{n}.txt\n" for n in range(1, N_STEPS + 1))


def respond(body: dict[str, Any]) -> Reply:
    found = re.search(r"Execute STEP (\d+)", json.dumps(body["messages"][0]))
    n = int(found.group(1)) if found else 0
    turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
    calls = [tool_use("Write", {"file_path": f"out{n}.txt", "content": f"{n}\n" * 50}),
             tool_use("Bash", {"command": f"wc -l out{n}.txt"}),
             tool_use("Read", {"file_path": f"out{n}.txt"})]
    if turn < len(calls):
        return Reply([text(f"Step {n}, turn {turn}."), calls[turn]])
    return Reply([text(f"out{n}.txt has 50 lines.\nSTEP RESULT: SUCCESS")])


def fresh(d: Path) -> None:
    for path in [d / ".dotasks", d / ".task_execution.log", *d.glob("out*.txt")]:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def timed(d: Path, env: dict[str, str], *extra: str) -> tuple[float, float]:
    fresh(d)
    t, res = run(pytest_cmd("--spec", "SPEC.md", "--no-mark", "-q", "-p", "no:randomly", *extra), d, env=env)
    assert f"{N_STEPS} passed" in res.stdout, res.stdout[-2000:]
    return float(t), t.cpu


def proxy_start_stop(n: int = 50) -> tuple[float, float]:
    starts, stops = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        p = Proxy().start()
        t1 = time.perf_counter()
        p.stop()
        starts.append(t1 - t0)
        stops.append(time.perf_counter() - t1)
    return statistics.median(starts), statistics.median(stops)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=REPEATS)
    repeats = ap.parse_args().repeats
    print("bench_replay:", machine())
    with workdir() as d, AnthropicStub() as stub:
        for _ in range(2000):
            stub.then(respond)
        (d / "SPEC.md").write_text(plan())
        (d / ".claude" / "agents").mkdir(parents=True)
        (d / ".claude" / "agents" / "AGENT.md").write_text(AGENT)
        online = child_env(ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=stub.url)
        offline = child_env(ANTHROPIC_BASE_URL="http://127.0.0.1:9")
        for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
            offline.pop(name, None)
        timed(d, online)  # warm-up (.pyc caches)
        timed(d, online, "--record")  # the cassettes the replays read
        results: dict[str, list[tuple[float, float]]] = {"plain": [], "record": [], "replay": []}
        for _ in range(repeats):  # interleaved, so a busy moment on the machine hits all three
            results["plain"].append(timed(d, online))
            results["record"].append(timed(d, online, "--record"))
            results["replay"].append(timed(d, offline, "--replay"))
        assert stub.violations == [], stub.violations[:3]
        requests = sum(1 for x in (d / "cassettes" / "SPEC").glob("*.jsonl")
                       for line in x.read_text().splitlines() if '"type": "request"' in line)
        header(f"1. {N_STEPS} agent steps, {requests // N_STEPS} API requests and 3 tool calls each "
               f"(median of {repeats}, min in brackets)")
        med = statistics.median
        record = med(w for w, _ in results["record"])
        rows = []
        for mode, samples in results.items():
            wall = med(w for w, _ in samples)
            rows.append([mode, f"{wall:.2f} s ({min(w for w, _ in samples):.2f})", f"{med(c for _, c in samples):.2f} s",
                         f"{wall / record:.2f}"])
        table(rows, ["mode", "wall", "cpu", "wall / record"])
        print("  cpu = user+sys of pytest and its children (the tools' commands included).")
        start, stop = proxy_start_stop()
        header("2. The proxy itself (median of 50)")
        table([["start (bind 127.0.0.1:0, serving thread)", ms(start)], ["stop", ms(stop)]], ["", "time"])


if __name__ == "__main__":
    main()
