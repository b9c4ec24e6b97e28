"""Pre-flight and post-validation checks through real pytest runs (issue 3).

Built-in checks from a step's fields, severity, metrics in JUnit and the log,
checks added from a user's conftest.py through the hooks, a replaced check
runner, the fixtures, and hanging checks that must not hold the run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# pytester drops the modules an in-process run imported; hypothesis's pytest
# plugin imports its whole package in every run's terminal summary (~0.8 s
# each time). Imported once here, it stays.
with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401


def log_entries(root: Path) -> list[dict]:
    path = root / ".task_execution.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def junit_props(path: Path) -> dict[str, dict[str, str]]:
    cases = ET.parse(path).getroot().findall(".//testcase")
    return {c.get("name", ""): {p.get("name", ""): p.get("value", "") for p in c.findall(".//property")}
            for c in cases}


def header(text: str, n: int) -> str:
    return next(ln for ln in text.splitlines() if re.match(rf"^- \[[ x]\] \*\*STEP {n}\*\*", ln))


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()  # an unreaped zombie is dead
    except OSError:
        return True


# ------------------------------------------------------------------ requires


def test_requires_catches_broken_install(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    site = pytester.mkdir("site")
    (site / "broken_sdk_q").mkdir()
    (site / "broken_sdk_q" / "__init__.py").write_text("raise ImportError('libcuda.so.1: cannot open shared object')\n")
    (site / "fine_sdk_q").mkdir()
    (site / "fine_sdk_q" / "__init__.py").write_text("__version__ = '0.3.1'\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Needs SDKs
  - requires: json, fine_sdk_q, broken_sdk_q, missing_sdk_q
  - run: touch ran.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines([
        "*[[]PRE-FLIGHT[]] Parallel checks (4)...",
        "*✓ import json [[]*s[]]",
        "*✓ import fine_sdk_q [[]*s[]]",
        ("*✗ import broken_sdk_q: cannot import broken_sdk_q: installed but its import fails: "
         "ImportError: libcuda.so.1: cannot open shared object [[]*s[]]"),
        "*✗ import missing_sdk_q: cannot import missing_sdk_q: missing_sdk_q is not installed*",
    ])
    out = res.stdout.str()
    assert "pre-flight failed: import broken_sdk_q, import missing_sdk_q [task_1_" in out
    assert not (pytester.path / "ran.txt").exists()
    assert "✗ Failed" in header(spec.read_text(), 1)
    checks = {e["check"]: e for e in log_entries(pytester.path) if e.get("event") == "check"}
    assert checks["import fine_sdk_q"]["ok"] and checks["import fine_sdk_q"]["detail"] == "fine_sdk_q 0.3.1"
    assert not checks["import broken_sdk_q"]["ok"] and checks["import broken_sdk_q"]["phase"] == "preflight"


# ------------------------------------------------------------------ outputs and metrics


METRICS_PLAN = """\
- [ ] **STEP 8**: Generate Full Training Dataset
  - run: python make.py
  - outputs: data/train.jsonl >= 500
  - metrics: metrics.json
  - metrics: consistency >= 0.9
  - metrics: python -c "print('{\\"eval\\": {\\"acc\\": 0.91}}')"
"""

MAKE = """\
import json, os
os.makedirs("data", exist_ok=True)
with open("data/train.jsonl", "w") as fh:
    for i in range(600):
        fh.write(json.dumps({"i": i}) + "\\n")
json.dump({"consistency": CONSISTENCY, "dupes": {"rate": 0.02}}, open("metrics.json", "w"))
"""


def test_metrics_recorded_in_junit_and_log(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC=METRICS_PLAN)
    pytester.makepyfile(make=MAKE.replace("CONSISTENCY", "0.97"))
    res = pytester.runpytest("--spec", "SPEC.md", "-v", "--junitxml=out.xml")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "*[[]POST[]] Parallel checks (2)...",
        "*✓ data/train.jsonl created (>= 500 records): 600 records [[]*s[]]",
        "*✓ consistency >= 0.9: consistency = 0.97 [[]*s[]]",
    ])
    props = junit_props(pytester.path / "out.xml")["step8"]
    assert float(props["metric.consistency"]) == 0.97
    assert float(props["metric.dupes.rate"]) == 0.02
    assert float(props["metric.eval.acc"]) == 0.91
    entries = log_entries(pytester.path)
    (metrics,) = [e for e in entries if e.get("event") == "metrics"]
    assert metrics["phase"] == "post" and metrics["step"] == 8
    assert metrics["metrics"] == {"consistency": 0.97, "dupes.rate": 0.02, "eval.acc": 0.91}
    task_id = props["task_id"]
    assert metrics["task_id"] == task_id
    threshold = next(e for e in entries if e.get("check") == "consistency >= 0.9")
    assert threshold["ok"] and threshold["data"] == {"consistency": 0.97} and threshold["severity"] == "critical"
    out = next(e for e in entries if e.get("check", "").startswith("data/train.jsonl"))
    assert out["detail"] == "600 records"


def test_missed_threshold_fails_the_step(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC=METRICS_PLAN)
    pytester.makepyfile(make=MAKE.replace("CONSISTENCY", "0.81"))
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*STEP 8 post-validation failed: consistency >= 0.9 [[]task_8_*]",
        "*✗ consistency >= 0.9: consistency = 0.81, needs >= 0.9",
    ])
    assert "✗ Failed" in header(spec.read_text(), 8)
    # The numbers are recorded even when they fail the step: that is when they matter.
    assert float(junit_props(pytester.path / "out.xml")["step8"]["metric.consistency"]) == 0.81


def test_record_count_and_bad_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Too few
  - run: printf '{"a": 1}\\n{"a": 2}\\n' > few.jsonl && printf '{"a": 1}\\n{"a": \\n' > bad.jsonl
  - outputs: few.jsonl >= 500, bad.jsonl
  - metrics: few.jsonl
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*post-validation failed: few.jsonl created (>= 500 records), bad.jsonl created, metrics*",
        "*✗ few.jsonl created (>= 500 records): 2 records, fewer than the 500 required",
        "*✗ bad.jsonl created: bad.jsonl:2: invalid JSON (*): {\"a\":",
        "*✗ metrics: metrics file few.jsonl is not JSON*",
    ])


def test_metrics_from_a_command_with_missing_metric(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Evaluate
  - run: true
  - metrics: echo '{"bleu": 31.5, "rouge": {"l": 0.4}}'
  - metrics: bleu >= 30, rouge.l >= 0.3, consistency >= 0.9
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*post-validation failed: consistency >= 0.9 [[]*",
                              "*✗ consistency >= 0.9: no metric named consistency (found: bleu, rouge.l)"])


# ------------------------------------------------------------------ severity


def test_advisory_failures_warn_and_the_step_passes(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Soft checks
  - check: echo teacher slow; exit 1 (advisory)
  - run: echo '{"consistency": 0.7}' > m.json
  - outputs: m.json, samples.jsonl (advisory)
  - metrics: m.json
  - metrics: consistency >= 0.9 (advisory)
  - validate: echo style lint unhappy; exit 2 (advisory)
""")
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.assert_outcomes(passed=1, warnings=4)
    res.stdout.fnmatch_lines([
        "*✗ echo teacher slow; exit 1 (advisory): exit 1 [[]*s[]]",
        "*✓ m.json created: 1 record [[]*s[]]",
        "*✗ samples.jsonl created (advisory): samples.jsonl was not created [[]*s[]]",
        "*✗ consistency >= 0.9 (advisory): consistency = 0.7, needs >= 0.9 [[]*s[]]",
        "*PASSED*",
        "*warnings summary*",
    ])
    warnings = res.stdout.str().split("warnings summary", 1)[1]
    for text in ("STEP 1 advisory check failed: echo teacher slow; exit 1: exit 1",
                 "STEP 1 advisory check failed: samples.jsonl created: samples.jsonl was not created",
                 "STEP 1 advisory check failed: consistency >= 0.9: consistency = 0.7, needs >= 0.9",
                 "STEP 1 advisory check failed: echo style lint unhappy; exit 2: exit 2"):
        assert text in warnings, text
    assert re.search(r"^- \[x\] \*\*STEP 1\*\*: Soft checks ✓ \[task_id: task_1_", header(spec.read_text(), 1))
    advisory = [e for e in log_entries(pytester.path) if e.get("event") == "check" and not e["ok"]]
    assert len(advisory) == 4
    assert all(e["severity"] == "advisory" and e["message"].endswith("FAILED (advisory)") for e in advisory)


@pytest.mark.parametrize("suffix", ["", " (critical)"])
def test_critical_is_the_default(pytester: pytest.Pytester, suffix: str) -> None:
    spec = pytester.makefile(".md", SPEC=f"""\
- [ ] **STEP 1**: Hard checks
  - run: true
  - validate: echo style lint unhappy; exit 2{suffix}
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*post-validation failed: echo style lint unhappy; exit 2 [[]task_1_*",
                              "*✗ echo style lint unhappy; exit 2: exit 2", "*style lint unhappy"])
    assert "✗ Failed" in header(spec.read_text(), 1)
    (e,) = [e for e in log_entries(pytester.path) if e.get("event") == "check"]
    assert e["severity"] == "critical" and e["message"].endswith(": FAILED")


def test_critical_preflight_check_is_setup_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Gate
  - check: test -f config.yaml
  - run: touch ran.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*ERROR at setup of STEP 1: Gate*", "*✗ test -f config.yaml: exit 1"])
    assert not (pytester.path / "ran.txt").exists()


# ------------------------------------------------------------------ hooks from conftest.py


HOOK_CONFTEST = """\
import time
from pytest_dotasks import Check, CheckResult

def _interval(name):
    def fn(ctx):
        start = time.monotonic()
        time.sleep(0.4)
        with open("intervals.txt", "a") as fh:
            fh.write(f"{name} {start} {time.monotonic()}\\n")
        return True, f"{name} done"
    return fn

def pytest_dotasks_preflight_checks(step, config):
    if step.number == 2:  # some steps only
        return [Check(f"custom {i}", _interval(f"pre{i}")) for i in range(3)]

def pytest_dotasks_post_checks(step, config):  # every step
    return Check("Character consistency", lambda ctx: CheckResult(
        "Character consistency", True, "97%", data={"consistency": 0.97}))
"""

TWO_STEPS = """\
- [ ] **STEP 1**: First
  - run: true
- [ ] **STEP 2**: Second
  - needs: none
  - run: true
"""


def _intervals(root: Path) -> list[tuple[float, float]]:
    rows = [line.split() for line in (root / "intervals.txt").read_text().splitlines()]
    return [(float(a), float(b)) for _, a, b in rows]


def test_hooks_add_checks_to_some_or_all_steps(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(HOOK_CONFTEST)
    pytester.makefile(".md", SPEC=TWO_STEPS)
    rec = pytester.inline_run("--spec", "SPEC.md", "--junitxml=out.xml")
    rec.assertoutcome(passed=2)
    pre = rec.getcalls("pytest_dotasks_preflight_checks")
    assert [c.step.number for c in pre] == [1, 2]
    assert all(c.config is pre[0].config for c in pre)
    post = rec.getcalls("pytest_dotasks_post_checks")
    assert [c.step.number for c in post] == [1, 2]
    runs = rec.getcalls("pytest_dotasks_run_checks")
    # STEP 1 has no pre-flight checks at all: the pool is not even called for it.
    assert [(c.ctx.step.number, c.phase, [k.name for k in c.checks]) for c in runs] == [
        (1, "post", ["Character consistency"]),
        (2, "preflight", ["custom 0", "custom 1", "custom 2"]),
        (2, "post", ["Character consistency"]),
    ]
    assert all(c.workers == 3 and c.timeout == 30 for c in runs)
    # The three 0.4 s checks ran at once, in the same pool as the built-ins.
    spans = _intervals(pytester.path)
    assert len(spans) == 3 and max(s for s, _ in spans) < min(e for _, e in spans)
    # A custom check's numbers are metrics like any other.
    assert float(junit_props(pytester.path / "out.xml")["step2"]["metric.consistency"]) == 0.97
    checks = [e for e in log_entries(pytester.path) if e.get("event") == "check" and e["step"] == 2]
    assert {e["check"] for e in checks} == {"custom 0", "custom 1", "custom 2", "Character consistency"}
    assert all(e["ok"] and e["seconds"] >= 0 for e in checks)


def test_check_workers_one_serialises_hook_checks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(HOOK_CONFTEST)
    pytester.makefile(".md", SPEC=TWO_STEPS)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "2", "--check-workers", "1", "-v")
    res.assert_outcomes(passed=1, deselected=1)
    spans = sorted(_intervals(pytester.path))
    assert len(spans) == 3
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01  # one at a time
    res.stdout.fnmatch_lines(["*[[]PRE-FLIGHT[]] Parallel checks (3)...", "*✓ custom 0 [[]0.*s[]]",
                              "*✓ custom 1 [[]0.*s[]]", "*✓ custom 2 [[]0.*s[]]",
                              "*[[]POST[]] Parallel checks (1)...",
                              "*✓ Character consistency: 97% [[]0.0s[]]"])  # as in the seed


def test_hook_check_failures_are_reported_like_builtins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""\
from pytest_dotasks import Check

def teacher(ctx):
    raise ConnectionError("teacher endpoint refused the connection")

def pytest_dotasks_preflight_checks(step, config):
    return [Check("Teacher model accessible", teacher), 42]
""")
    pytester.makefile(".md", SPEC="- [ ] **STEP 1**: x\n  - run: true\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines([
        "*pre-flight failed: Teacher model accessible, pytest_dotasks_preflight_checks result [[]task_1_*",
        "*✗ Teacher model accessible: ConnectionError: teacher endpoint refused the connection (conftest.py:4)",
        "*✗ pytest_dotasks_preflight_checks result: pytest_dotasks_preflight_checks returned int 42, not a Check",
    ])
    assert "Traceback" not in res.stdout.str()


def test_conftest_replaces_the_check_runner(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""\
from pytest_dotasks import CheckResult

def pytest_dotasks_run_checks(checks, phase, ctx, timeout, workers):
    if phase == "post":
        return None  # not ours: the plugin's pool runs them
    return [CheckResult(c.name, True, "skipped by the CI runner") for c in checks]
""")
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Offline CI
  - check: exit 1
  - env: DOTASKS_SURELY_UNSET_VAR
  - run: true
  - validate: test -f never.txt
""")
    rec = pytester.inline_run("--spec", "SPEC.md", "-v")
    rec.assertoutcome(failed=1)  # pre-flight stubbed away; post ran for real and failed
    calls = rec.getcalls("pytest_dotasks_run_checks")
    assert [c.phase for c in calls] == ["preflight", "post"]
    entries = log_entries(pytester.path)
    pre = [e for e in entries if e.get("event") == "check" and e["phase"] == "preflight"]
    assert [(e["check"], e["ok"], e["detail"]) for e in pre] == [
        ("$DOTASKS_SURELY_UNSET_VAR", True, "skipped by the CI runner"),
        ("exit 1", True, "skipped by the CI runner")]
    post = [e for e in entries if e.get("event") == "check" and e["phase"] == "post"]
    assert [(e["check"], e["ok"]) for e in post] == [("test -f never.txt", False)]
    assert "✗ Failed" in header(spec.read_text(), 1)


# ------------------------------------------------------------------ fixtures


def test_fixtures_for_custom_checks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""\
import pytest

@pytest.fixture(autouse=True)
def dataset_budget(dotasks_step, dotasks_task_id, dotasks_log):
    # A check written as a fixture: it runs in the step's setup, before the
    # pre-flight pool, and a failure is an error in setup like any pre-flight.
    dotasks_log(f"budget check for {dotasks_step.title}", event="budget", task=dotasks_task_id,
                fields=[f.key for f in dotasks_step.fields])
    if "expensive" in dotasks_step.description:
        pytest.fail(f"STEP {dotasks_step.number} would exceed the budget", pytrace=False)
""")
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Cheap
  - run: true
- [ ] **STEP 2**: Costly
  This one is expensive.
  - needs: none
  - run: touch ran.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--junitxml=out.xml")
    res.assert_outcomes(passed=1, errors=1)
    res.stdout.fnmatch_lines(["*STEP 2 would exceed the budget*"])
    assert not (pytester.path / "ran.txt").exists()
    props = junit_props(pytester.path / "out.xml")
    budget = {e["step"]: e for e in log_entries(pytester.path) if e.get("event") == "budget"}
    assert budget[1]["task_id"] == budget[1]["task"] == props["step1"]["task_id"]
    assert budget[2]["task_id"] == props["step2"]["task_id"]
    assert budget[1]["message"] == "budget check for Cheap" and budget[1]["fields"] == ["run"]
    assert budget[1]["phase"] == "preflight"


# ------------------------------------------------------------------ the seed's "Teacher model accessible"


class _Teacher(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        ok = self.path == "/v1/models" and self.headers.get("x-api-key") == "test-teacher-key"
        body = json.dumps({"data": [{"id": "claude-haiku-4-5"}]} if ok else {"error": "unauthorized"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def teacher_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Teacher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TEACHER_CONFTEST = '''\
import json
import urllib.error
import urllib.request

from pytest_dotasks import Check, CheckResult


def teacher_accessible(ctx):
    """The teacher model's endpoint answers and accepts our key."""
    url = ctx.env["TEACHER_URL"] + "/v1/models"
    req = urllib.request.Request(url, headers={"x-api-key": ctx.env["TEACHER_API_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=ctx.remaining()) as resp:
            models = [m["id"] for m in json.load(resp)["data"]]
    except urllib.error.HTTPError as exc:
        return CheckResult("Teacher model accessible", False, f"HTTP {exc.code} from {url}")
    except OSError as exc:
        return CheckResult("Teacher model accessible", False, f"{url} unreachable: {exc}")
    return CheckResult("Teacher model accessible", True, ", ".join(models))


def pytest_dotasks_preflight_checks(step, config):
    if "teacher" in step.description.lower():
        return [Check("Teacher model accessible", teacher_accessible, timeout=10)]
'''

TEACHER_PLAN = """\
- [ ] **STEP 8**: Generate Full Training Dataset
  Use the teacher model to write dialogues.
  - env: TEACHER_URL, TEACHER_API_KEY
  - inputs: character_prompts.py
  - run: echo generated
"""


def test_teacher_model_accessible(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                  teacher_url: str) -> None:
    pytester.makeconftest(TEACHER_CONFTEST)
    pytester.makefile(".md", SPEC=TEACHER_PLAN)
    pytester.makepyfile(character_prompts="PROMPTS = []\n")
    monkeypatch.setenv("TEACHER_URL", teacher_url)
    monkeypatch.setenv("TEACHER_API_KEY", "test-teacher-key")
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines([
        "*[[]TASK ID: task_8_*[]] STEP 8: Generate Full Training Dataset",
        "*[[]PRE-FLIGHT[]] Parallel checks (4)...",
        "*✓ $TEACHER_URL [[]*s[]]",
        "*✓ $TEACHER_API_KEY [[]*s[]]",
        "*✓ character_prompts.py exists [[]*s[]]",
        "*✓ Teacher model accessible [[]*s[]]",
        "*[[]MAIN[]] $ echo generated",
    ])
    entry = next(e for e in log_entries(pytester.path) if e.get("check") == "Teacher model accessible")
    assert entry["ok"] and entry["detail"] == "claude-haiku-4-5"
    assert "test-teacher-key" not in (pytester.path / ".task_execution.log").read_text()

    monkeypatch.setenv("TEACHER_API_KEY", "wrong-key-123")
    res = pytester.runpytest("--spec", "SPEC.md", "--redo")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*pre-flight failed: Teacher model accessible [[]task_8_*",
                              # TEACHER_URL is named in env:, so its value is redacted like a key
                              "*✗ Teacher model accessible: HTTP 401 from [*][*][*]/v1/models"])


# ------------------------------------------------------------------ hanging checks


HANG_CONFTEST = """\
import threading
from pytest_dotasks import Check

def pytest_dotasks_preflight_checks(step, config):
    if step.number == 2:
        # Never returns: not even interpreter exit may wait for it.
        return [Check("waits forever", lambda ctx: threading.Event().wait())]
"""


def test_hanging_checks_are_abandoned(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(HANG_CONFTEST)
    pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Shell check hangs
  - check: sleep 30 & echo $! > sleeper.pid; wait
  - run: touch ran1.txt
- [ ] **STEP 2**: Python check hangs
  - needs: none
  - check: sleep 30
  - run: touch ran2.txt
""")
    # The proof of abandonment is behaviour, not a stopwatch: "waits forever" never returns, so a
    # run that waited for it would never end and trip this generous hang guard; the shell check's
    # grandchild must be gone (below); each check reports its own 1 s timeout.
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--preflight-timeout", "1", "-v",
                                        "--junitxml=out.xml", timeout=300)
    res.assert_outcomes(errors=2)
    props = junit_props(pytester.path / "out.xml")
    assert {"step1", "step2"} <= set(props) and all("seconds_preflight" in props[s] for s in ("step1", "step2"))
    res.stdout.fnmatch_lines([
        "*✗ sleep 30 & echo $! > sleeper.pid; wait: timed out after 1s [[]1.*s[]]",
        "*✗ sleep 30: timed out after 1s [[]1.*s[]]",
        "*✗ waits forever: timed out after 1s (abandoned) [[]1.*s[]]",
    ])
    assert not (pytester.path / "ran1.txt").exists() and not (pytester.path / "ran2.txt").exists()
    pid = int((pytester.path / "sleeper.pid").read_text())
    assert pid_gone(pid), f"the check's grandchild sleep (pid {pid}) outlived its timeout"
    timed_out = [e for e in log_entries(pytester.path) if e.get("event") == "check"]
    assert {e["check"] for e in timed_out} == {"sleep 30 & echo $! > sleeper.pid; wait", "sleep 30",
                                               "waits forever"}
    assert all(e["timed_out"] and not e["ok"] for e in timed_out)


def test_post_timeout_bounds_validations(pytester: pytest.Pytester) -> None:
    spec = pytester.makefile(".md", SPEC="""\
- [ ] **STEP 1**: Slow smoke test
  - run: true
  - validate: sleep 30
  - validate: echo quick
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--post-timeout", "1")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*post-validation failed: sleep 30 [[]task_1_*", "*✗ sleep 30: timed out after 1s"])
    assert "✗ Failed" in header(spec.read_text(), 1)
