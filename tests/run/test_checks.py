"""The check pool (checks.run_checks) and the built-in checks, called directly.

No pytest run here: these are the pure core. End-to-end behaviour through
real pytest runs is in test_checks_plugin.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from pytest_dotasks.plan.fields import Command, OutputSpec, StepConfig, config_of
from pytest_dotasks.plan.specmd import parse_text
from pytest_dotasks.run import builtin_checks as bc
from pytest_dotasks.run.checks import ADVISORY, CRITICAL, Check, CheckContext, CheckResult, run_checks


def run(checks: list[Check], root: Path, timeout: float = 5.0, workers: int = 3, **kw: object) -> list[CheckResult]:
    return run_checks(checks, root=root, timeout=timeout, workers=workers, **kw)  # type: ignore[arg-type]


def one(check: Check, root: Path, timeout: float = 10.0, env: dict[str, str] | None = None) -> CheckResult:
    return run_checks([check], root=root, timeout=timeout, env=env)[0]


def cfg_from(*fields: str) -> StepConfig:
    text = "- [ ] **STEP 1**: t\n" + "".join(f"  - {f}\n" for f in fields)
    spec = parse_text(text, Path("SPEC.md"))
    return config_of(spec.steps[0])


def pid_gone(pid: int) -> bool:
    """No such process, or only its zombie (PID 1 in a container may not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def wait_gone(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pid_gone(pid):
            return True
        time.sleep(0.05)
    return pid_gone(pid)


# ------------------------------------------------------------------ the pool


def test_checks_run_concurrently(tmp_path: Path) -> None:
    spans: list[tuple[float, float]] = []

    def slow(ctx: CheckContext) -> tuple[bool, str]:
        start = time.monotonic()
        time.sleep(1)
        spans.append((start, time.monotonic()))
        return True, "slept"

    checks = [Check(f"slow {i}", slow) for i in range(3)]
    results = run(checks, tmp_path, workers=3)
    # Concurrency as behaviour, not a stopwatch: all three were sleeping at the same moment.
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert [r.name for r in results] == ["slow 0", "slow 1", "slow 2"]
    assert all(r.ok and r.detail == "slept" and r.seconds >= 0.9 for r in results)


def _concurrency_probe() -> tuple[list[Check], dict[str, int]]:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def fn(ctx: CheckContext) -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1

    return [Check(f"c{i}", fn) for i in range(4)], state


def test_one_worker_serialises(tmp_path: Path) -> None:
    checks, state = _concurrency_probe()
    results = run(checks, tmp_path, workers=1)
    assert state["max"] == 1
    assert [r.ok for r in results] == [True] * 4


def test_workers_bound_concurrency(tmp_path: Path) -> None:
    checks, state = _concurrency_probe()
    run(checks, tmp_path, workers=2)
    assert state["max"] == 2
    # Three workers really do run three at once: a barrier only they can pass.
    barrier = threading.Barrier(3, timeout=5)
    results = run([Check(f"b{i}", lambda ctx: barrier.wait() >= 0) for i in range(3)], tmp_path, workers=3)
    assert all(r.ok for r in results), results


def test_hanging_check_is_abandoned_and_reported(tmp_path: Path) -> None:
    forever = threading.Event()
    checks = [
        Check("hangs", lambda ctx: forever.wait()),
        Check("quick", lambda ctx: (True, "fine")),
    ]
    results = run(checks, tmp_path, timeout=0.5)
    hung, quick = results
    assert not hung.ok and hung.timed_out and hung.blocking
    assert hung.detail.startswith("timed out after 0.5s")
    assert quick.ok and not quick.timed_out
    forever.set()


def test_per_check_timeout_overrides_phase_timeout(tmp_path: Path) -> None:
    checks = [Check("short leash", lambda ctx: time.sleep(5), timeout=0.3),
              Check("sees its limit", lambda ctx: (ctx.timeout == 7 and ctx.remaining() <= 7, str(ctx.timeout)),
                    timeout=7)]
    short, sees = run(checks, tmp_path, timeout=30)
    assert short.timed_out and "0.3s" in short.detail
    assert sees.ok, sees.detail


def test_abandoned_check_frees_its_worker(tmp_path: Path) -> None:
    forever = threading.Event()
    checks = [Check("hangs", lambda ctx: forever.wait(), timeout=0.3), Check("next", lambda ctx: True)]
    hung, nxt = run(checks, tmp_path, workers=1)
    assert hung.timed_out and nxt.ok
    forever.set()


def test_shell_check_timeout_kills_its_process_group(tmp_path: Path) -> None:
    # The grandchild `sleep` writes its pid; after the timeout it must be gone.
    check = bc.shell_check(Command("sleep 30 & echo $! > sleeper.pid; wait", CRITICAL, 1), "preflight")
    res = one(check, tmp_path, timeout=1)
    assert not res.ok and res.timed_out
    assert "timed out after 1s" in res.detail
    pid = int((tmp_path / "sleeper.pid").read_text())
    assert wait_gone(pid), f"grandchild sleep {pid} survived the timeout"


def test_exception_in_check_is_one_line_failure(tmp_path: Path) -> None:
    def broken(ctx: CheckContext) -> bool:
        raise ValueError("model endpoint said no\nsecond line of noise")

    def asserting(ctx: CheckContext) -> None:
        status = 503
        assert status == 200, f"teacher model answered {status}"

    def exits(ctx: CheckContext) -> None:
        raise SystemExit(3)

    res = run([Check("broken", broken), Check("asserting", asserting), Check("exits", exits)], tmp_path)
    assert [r.ok for r in res] == [False, False, False]
    for r in res:
        assert "\n" not in r.detail, r.detail
        assert "test_checks.py:" in r.detail  # where the check's own code gave up
    assert res[0].detail.startswith("ValueError: model endpoint said no (test_checks.py:")
    assert res[1].detail.startswith("AssertionError: teacher model answered 503")
    assert res[2].detail.startswith("SystemExit: 3")


@pytest.mark.parametrize(
    ("returned", "ok", "detail"),
    [
        (None, True, ""),
        (True, True, ""),
        (False, False, ""),
        ((True, "reachable"), True, "reachable"),
        ((0, "down"), False, "down"),
        (CheckResult("custom name", True, "from result", data={"x": 1}), True, "from result"),
    ],
)
def test_check_return_forms(tmp_path: Path, returned: object, ok: bool, detail: str) -> None:
    res = one(Check("c", lambda ctx: returned, severity=ADVISORY), tmp_path)
    assert (res.ok, res.detail) == (ok, detail)
    assert res.severity == ADVISORY  # the Check's severity wins
    assert res.name in ("c", "custom name")


def test_unusable_return_value_is_a_failure(tmp_path: Path) -> None:
    res = one(Check("c", lambda ctx: 42), tmp_path)
    assert not res.ok and "returned int 42" in res.detail and "CheckResult" in res.detail


def test_on_result_sees_every_result_including_timeouts(tmp_path: Path) -> None:
    seen: list[str] = []
    forever = threading.Event()
    run([Check("a", lambda ctx: True), Check("hang", lambda ctx: forever.wait(), timeout=0.2)],
        tmp_path, on_result=lambda r: seen.append(r.name))
    assert sorted(seen) == ["a", "hang"]
    forever.set()


def test_on_result_raising_does_not_hang_the_pool(tmp_path: Path) -> None:
    def boom(res: CheckResult) -> None:
        raise RuntimeError("reporter bug")

    with pytest.raises(RuntimeError, match="reporter bug"):
        run([Check("a", lambda ctx: True), Check("b", lambda ctx: True)], tmp_path, timeout=2, on_result=boom)


def test_no_checks_and_zero_workers(tmp_path: Path) -> None:
    assert run([], tmp_path) == []
    assert [r.ok for r in run([Check("a", lambda ctx: True)], tmp_path, workers=0)] == [True]


def test_context_carries_root_env_and_task_id(tmp_path: Path) -> None:
    def fn(ctx: CheckContext) -> tuple[bool, str]:
        return (ctx.root == tmp_path and ctx.task_id == "task_8_3fa2b8c1", f"{ctx.root} {ctx.task_id}")

    res = one(Check("ctx", fn), tmp_path, env={"DOTASKS_TASK_ID": "task_8_3fa2b8c1"})
    assert res.ok, res.detail


def test_severity_and_blocking() -> None:
    assert CheckResult("a", False).blocking
    assert not CheckResult("a", False, severity=ADVISORY).blocking
    assert not CheckResult("a", True).blocking


# ------------------------------------------------------------------ requires


# Records when its import ran, so the test can see the three imports overlap
# (a bound on total time would be flaky on a loaded machine).
SLOW_IMPORT = """\
import os, time
start = time.time()
time.sleep(1)
with open(os.environ["SPANS_FILE"], "a") as fh:
    fh.write(f"{start} {time.time()}\\n")
"""


@pytest.fixture()
def pkgs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A PYTHONPATH folder holding installed-but-broken packages."""
    site = tmp_path / "site"
    for name, body in {
        "good_pkg": "__version__ = '1.2.3'\n",
        "banner_pkg": "print('Welcome to banner 9.9')\n",
        "broken_importerror": "raise ImportError('libfoo.so: cannot open shared object file')\n",
        "broken_runtime": "raise RuntimeError('config missing')\n",
        "broken_dependency": "import no_such_dependency_qq\n",
        **{f"slow_pkg_{c}": SLOW_IMPORT for c in "abc"},
        "hanging_pkg": "import time; time.sleep(60)\n",
    }.items():
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=str(site), SPANS_FILE=str(tmp_path / "spans.txt"))
    return tmp_path, env


def test_requires_imports_and_reports_version(pkgs: tuple[Path, dict[str, str]]) -> None:
    root, env = pkgs
    res = one(bc.requires_check("good_pkg"), root, env=env)
    assert res.ok and res.name == "import good_pkg" and res.detail == "good_pkg 1.2.3"
    assert one(bc.requires_check("banner_pkg"), root, env=env).detail == "banner_pkg"
    assert one(bc.requires_check("json"), root, env=env).ok


def test_requires_missing_module(pkgs: tuple[Path, dict[str, str]]) -> None:
    root, env = pkgs
    for module in ("no_such_module_xyz", "no_such_module_xyz.sub"):
        res = one(bc.requires_check(module), root, env=env)
        assert not res.ok
        assert f"cannot import {module}: {module} is not installed" in res.detail
        assert "pip install no_such_module_xyz" in res.detail


@pytest.mark.parametrize(
    ("module", "error"),
    [
        ("broken_importerror", "ImportError: libfoo.so: cannot open shared object file"),
        ("broken_runtime", "RuntimeError: config missing"),
        ("broken_dependency", "ModuleNotFoundError: No module named 'no_such_dependency_qq'"),
    ],
)
def test_requires_catches_broken_install(pkgs: tuple[Path, dict[str, str]], module: str, error: str) -> None:
    root, env = pkgs
    res = one(bc.requires_check(module), root, env=env)
    assert not res.ok
    first = res.detail.splitlines()[0]
    assert first == f"cannot import {module}: installed but its import fails: {error}"
    assert "__init__.py" in res.detail  # where it broke


def test_requires_run_in_parallel(pkgs: tuple[Path, dict[str, str]]) -> None:
    root, env = pkgs
    checks = [bc.requires_check(m) for m in ("slow_pkg_a", "slow_pkg_b", "slow_pkg_c")]
    results = run_checks(checks, root=root, timeout=20, workers=3, env=env)
    assert all(r.ok for r in results), results
    spans = [tuple(map(float, line.split())) for line in (root / "spans.txt").read_text().splitlines()]
    assert len(spans) == 3
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # all three imports were running at once


def test_requires_hanging_import_times_out(pkgs: tuple[Path, dict[str, str]]) -> None:
    root, env = pkgs
    res = one(bc.requires_check("hanging_pkg"), root, timeout=1, env=env)
    assert not res.ok and res.timed_out and "did not finish within 1s" in res.detail


def test_requires_finds_project_modules(tmp_path: Path) -> None:
    (tmp_path / "character_prompts.py").write_text("PROMPTS = []\n")
    assert one(bc.requires_check("character_prompts"), tmp_path).ok


# ------------------------------------------------------------------ env and inputs


def test_env_check_never_shows_the_value(tmp_path: Path) -> None:
    secret = "sk-ant-very-secret-value"
    ok = one(bc.env_check("MY_KEY"), tmp_path, env={"MY_KEY": secret})
    assert ok.ok and secret not in ok.detail and ok.name == "$MY_KEY"
    for env in ({}, {"MY_KEY": "  "}):
        res = one(bc.env_check("MY_KEY"), tmp_path, env=env)
        assert not res.ok and "MY_KEY is not set" in res.detail
    # Built-in pre-flight checks take a severity too (for when the fields allow one).
    soft = [bc.env_check("MY_KEY", severity=ADVISORY), bc.input_check("nope.txt", severity=ADVISORY),
            bc.requires_check("no_such_module_xyz", severity=ADVISORY)]
    assert [(r.ok, r.blocking) for r in run(soft, tmp_path, env={})] == [(False, False)] * 3


def test_input_check(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for n in range(3):
        (tmp_path / "data" / f"part{n}.jsonl").write_text("{}\n")
    assert one(bc.input_check("data/part0.jsonl"), tmp_path).ok
    glob = one(bc.input_check("data/*.jsonl"), tmp_path)
    assert glob.ok and glob.detail == "3 match(es)"
    missing = one(bc.input_check("config.yaml", producer=3), tmp_path)
    assert not missing.ok and "config.yaml (an output of STEP 3) not found" in missing.detail
    planned = one(bc.input_check("config.yaml", producer=3, planned=True), tmp_path)
    assert planned.ok and planned.detail == "will be made by STEP 3"


# ------------------------------------------------------------------ outputs


def out(pattern: str, n: int | None = None) -> Check:
    return bc.output_check(OutputSpec(pattern, n, CRITICAL, 1))


def test_output_missing_and_empty(tmp_path: Path) -> None:
    assert one(out("never.txt"), tmp_path).detail == "never.txt was not created"
    (tmp_path / "empty.txt").write_text("")
    assert one(out("empty.txt"), tmp_path).detail == "empty.txt is empty"
    (tmp_path / "emptydir").mkdir()
    assert one(out("emptydir"), tmp_path).detail == "emptydir/ is empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert one(out("full"), tmp_path).ok


def test_json_and_jsonl_record_counts(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps([{"a": i} for i in range(7)]))
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)) + "\n\n")
    res = one(out("list.json", 7), tmp_path)
    assert res.ok and res.detail == "7 records" and res.data == {"records": 7}
    assert one(out("obj.json"), tmp_path).detail == "1 record"
    assert one(out("rows.jsonl", 5), tmp_path).detail == "5 records"  # blank lines are not records
    few = one(out("rows.jsonl", 500), tmp_path)
    assert not few.ok and few.detail == "5 records, fewer than the 500 required"
    assert few.name == "rows.jsonl created (>= 500 records)"


def test_jsonl_bad_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"ok": 1}\n\n{"ok": 2}\n{"text": "unterminated\n{"ok": 4}\n')
    res = one(out("rows.jsonl"), tmp_path)
    assert not res.ok
    assert res.detail == 'rows.jsonl:4: invalid JSON (Invalid control character at column 23): {"text": "unterminated'
    (tmp_path / "trail.jsonl").write_text('{"ok": 1}\n{"ok": 2} extra\n')
    assert one(out("trail.jsonl"), tmp_path).detail == 'trail.jsonl:2: invalid JSON (Extra data at column 11): {"ok": 2} extra'



def test_json_bad_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    res = one(out("m.json"), tmp_path)
    assert not res.ok and res.detail == 'm.json:3: invalid JSON (Expecting value at column 8): "b": oops'


def test_records_summed_over_a_glob_and_lines_for_other_files(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    for n in range(3):
        (tmp_path / "shards" / f"s{n}.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    assert one(out("shards/*.jsonl", 6), tmp_path).ok
    assert not one(out("shards/*.jsonl", 7), tmp_path).ok
    (tmp_path / "lines.txt").write_text("a\n\nb\nc\n")
    assert one(out("lines.txt", 3), tmp_path).ok
    assert one(out("lines.txt", 4), tmp_path).detail == "3 records, fewer than the 4 required"


def test_binary_jsonl_is_a_clean_failure(tmp_path: Path) -> None:
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    res = one(out("bin.jsonl"), tmp_path)
    assert not res.ok and res.detail == "bin.jsonl: not UTF-8 text (byte 0)"


# ------------------------------------------------------------------ metrics


def metric_results(tmp_path: Path, *fields: str) -> dict[str, CheckResult]:
    checks, _ = bc.metrics_checks(cfg_from(*fields))
    return {r.name: r for r in run(checks, tmp_path)}


def test_metrics_from_file_with_nested_keys(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps(
        {"consistency": 0.97, "eval": {"acc": 0.91, "loss": 0.3}, "flag": True, "name": "x", "n": 12}))
    res = metric_results(tmp_path, "metrics: m.json", "metrics: consistency >= 0.9, eval.acc > 0.95")
    assert res["consistency >= 0.9"].ok and res["consistency >= 0.9"].detail == "consistency = 0.97"
    acc = res["eval.acc > 0.95"]
    assert not acc.ok and acc.detail == "eval.acc = 0.91, needs > 0.95" and acc.blocking
    checks, collector = bc.metrics_checks(cfg_from("metrics: m.json"))
    only = run(checks, tmp_path)
    assert [r.name for r in only] == ["metrics"] and only[0].ok
    assert collector.values == {"consistency": 0.97, "eval.acc": 0.91, "eval.loss": 0.3, "n": 12.0}


def test_metrics_from_a_command(tmp_path: Path) -> None:
    res = metric_results(tmp_path, """metrics: echo '{"consistency": 0.93}'""", "metrics: consistency >= 0.9")
    assert res["consistency >= 0.9"].ok


def test_metrics_command_with_pretty_json_after_log_lines(tmp_path: Path) -> None:
    script = tmp_path / "eval.py"
    script.write_text("import json, sys\nprint('loading model...')\nprint('warning: slow', file=sys.stderr)\n"
                      "print(json.dumps({'eval': {'bleu': 31.5, 'items': [{'a': 1}]}}, indent=2))\n")
    res = metric_results(tmp_path, "metrics: python eval.py", "metrics: eval.bleu >= 30")
    assert res["eval.bleu >= 30"].ok, res


def test_executable_without_arguments_is_a_command(tmp_path: Path) -> None:
    script = tmp_path / "metrics.sh"
    script.write_text("#!/bin/sh\necho '{\"acc\": 0.5}'\n")
    script.chmod(0o755)
    res = metric_results(tmp_path, "metrics: ./metrics.sh", "metrics: acc == 0.5")
    assert res["acc == 0.5"].ok, res


def test_metrics_read_once_for_all_thresholds(tmp_path: Path) -> None:
    res = metric_results(tmp_path, """metrics: echo x >> calls.txt; echo '{"a": 1, "b": 2, "c": 3}'""",
                         "metrics: a >= 1, b >= 1, c >= 1")
    assert all(r.ok for r in res.values())
    assert (tmp_path / "calls.txt").read_text() == "x\n"


@pytest.mark.parametrize(
    ("op", "limit", "ok"),
    [(">=", 0.9, True), (">=", 0.95, False), (">", 0.9, True), (">", 0.92, False),
     ("<=", 0.92, True), ("<=", 0.5, False), ("<", 1, True), ("<", 0.92, False),
     ("==", 0.92, True), ("==", 0.9, False), ("!=", 0.9, True), ("!=", 0.92, False)],
)
def test_threshold_operators(tmp_path: Path, op: str, limit: float, ok: bool) -> None:
    (tmp_path / "m.json").write_text('{"score": 0.92}')
    res = metric_results(tmp_path, "metrics: m.json", f"metrics: score {op} {limit}")
    (only,) = res.values()
    assert only.ok is ok, only.detail
    assert only.data == {"score": 0.92}


def test_missing_metric_lists_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"acc": 0.9, "loss": 0.1}')
    (r,) = metric_results(tmp_path, "metrics: m.json", "metrics: consistency >= 0.9").values()
    assert not r.ok and r.detail == "no metric named consistency (found: acc, loss)"


def test_threshold_without_source(tmp_path: Path) -> None:
    (r,) = metric_results(tmp_path, "metrics: consistency >= 0.9").values()
    assert not r.ok and "no metrics source for consistency" in r.detail


@pytest.mark.parametrize(
    ("source", "setup", "message"),
    [
        ("missing.json", None, "metrics file missing.json not found"),
        ("bad.json", '{"a": ', "metrics file bad.json is not JSON: line 1"),
        ("list.json", "[1, 2]", "metrics file list.json gave a JSON list, not an object"),
        ("echo nope; exit 3", None, "metrics command `echo nope; exit 3` failed (exit 3): nope"),
        ("echo 'not json'", None, "metrics command `echo 'not json'` printed no JSON"),
        ("true", None, "metrics command `true` printed no JSON: the command printed nothing"),
    ],
)
def test_metrics_source_errors(tmp_path: Path, source: str, setup: str | None, message: str) -> None:
    if setup is not None:
        (tmp_path / source).write_text(setup)
    res = metric_results(tmp_path, f"metrics: {source}", "metrics: a >= 1")
    (r,) = res.values()
    assert not r.ok and r.detail.startswith(message), r.detail
    checks, _ = bc.metrics_checks(cfg_from(f"metrics: {source}"))
    (only,) = run(checks, tmp_path)
    assert not only.ok and only.detail.startswith(message)


def test_metrics_command_timeout(tmp_path: Path) -> None:
    checks, _ = bc.metrics_checks(cfg_from("metrics: sleep 30"))
    (r,) = run(checks, tmp_path, timeout=1)
    assert not r.ok and "timed out after 1s" in r.detail


def test_advisory_severity_from_the_field(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"acc": 0.5}')
    cfg = cfg_from("metrics: m.json", "metrics: acc >= 0.9 (advisory)", "outputs: never.txt (advisory)",
                   "validate: false (advisory)", "validate: true")
    checks, _ = bc.metrics_checks(cfg)
    checks += [bc.output_check(o) for o in cfg.outputs] + [bc.shell_check(c, "post") for c in cfg.validate]
    results = run(checks, tmp_path)
    assert [(r.name, r.ok, r.severity) for r in results] == [
        ("acc >= 0.9", False, ADVISORY), ("never.txt created", False, ADVISORY),
        ("false", False, ADVISORY), ("true", True, CRITICAL)]
    assert not any(r.blocking for r in results)
