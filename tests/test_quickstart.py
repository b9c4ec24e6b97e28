"""`pytest-dotasks init`, the offline quickstart and the Tinker plan, through real runs.

The quickstart is run exactly as the README's first command says, in a
subprocess (it starts a background step, which outlives an in-process run's
bookkeeping); the Tinker plan is collected and dry-run without API keys.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

from pytest_dotasks import cli
from pytest_dotasks.plan.fields import validate_spec
from pytest_dotasks.plan.header import parse_header
from pytest_dotasks.plan.specmd import parse_file

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pytest_dotasks"
TINKER_TEMPLATE = PACKAGE / "templates" / "tinker" / "SPEC.md"
QUICKSTART_TEMPLATE = PACKAGE / "templates" / "quickstart"
ROOT_SPEC = REPO / "SPEC.md"
KEYS = ("TINKER_API_KEY", "ANTHROPIC_API_KEY")
HEADER = re.compile(r"^- \[x\] \*\*STEP (\d+)\*\*: .+ ✓ \[task_id: task_\1_[0-9a-f]{8}\] \[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\]$")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no pytest state of ours, no API keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in KEYS}
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout,
                          check=False)


def unmarked(text: str) -> str:
    """The plan with every step's checkbox and status marker reset."""
    out = []
    for line in text.split("\n"):
        h = parse_header(line)
        out.append(f"{h.lead} {h.label} {h.title}{h.trailing}" if h else line)
    return "\n".join(out)


def readme_commands() -> list[str]:
    """The commands of the README's first code block (comments dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no code block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def properties(junit: Path) -> dict[str, dict[str, str]]:
    return {tc.get("name", ""): {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
            for tc in ET.parse(junit).iter("testcase")}


# ---------------------------------------------------------------- init


def test_init_writes_the_template_and_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "project"
    res = run([sys.executable, "-m", "pytest_dotasks", "init", str(dest)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "python -m pytest --spec SPEC.md -v" in res.stdout
    shipped = sorted(p.relative_to(QUICKSTART_TEMPLATE) for p in QUICKSTART_TEMPLATE.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    written = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert written == shipped
    assert {"SPEC.md", "pytest.ini", "scripts/train.py"} <= {str(p) for p in written}

    before = (dest / "SPEC.md").read_bytes()
    (dest / "SPEC.md").write_text("mine")
    res = run([sys.executable, "-m", "pytest_dotasks", "init", str(dest)], tmp_path)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and "is not empty" in res.stderr, res.stderr
    assert (dest / "SPEC.md").read_text() == "mine"
    assert before != b"mine"


def test_init_into_an_empty_folder_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["init", str(empty)]) == 0
    assert (empty / "SPEC.md").is_file()
    capsys.readouterr()

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert cli.main(["init", str(a_file)]) == 1
    assert "not a folder" in capsys.readouterr().err

    assert cli.main(["init", "--template", "nope", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "unknown template 'nope'" in err and "quickstart" in err and "tinker" in err
    assert not (tmp_path / "x").exists()


def test_console_script_is_declared() -> None:
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("pytest-dotasks") == "pytest_dotasks.cli:main"


# ---------------------------------------------------------------- the quickstart, end to end


def test_readme_leads_with_the_quickstart_and_the_ci_test_command() -> None:
    commands = readme_commands()
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
          if ln.strip().startswith("python -m pytest")]
    # Each command does its own set-up on a fresh machine: the install, then the job.
    assert commands[0] == 'pip install -e . && python -m pytest_dotasks init --run "$(mktemp -d)"'
    assert commands[1] == "pip install -e '.[test]' && python -m pytest -n 2 -q"
    assert commands[1].split(" && ")[1] == ci[-1] == "python -m pytest -n 2 -q"
    assert "pip install --quiet -e '.[test]'" in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("mktemp") is None, reason="needs bash and mktemp")
def test_quickstart_runs_as_the_readme_says(tmp_path: Path) -> None:
    # The README's first command, verbatim; mktemp -d creates its folder under TMPDIR.
    # (The install before `&&` already happened: this suite runs from that install.)
    res = run(["bash", "-c", readme_commands()[0].split(" && ", 1)[1]], tmp_path, timeout=300, TMPDIR=str(tmp_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    (project,) = [p for p in tmp_path.iterdir() if (p / "SPEC.md").exists()]
    out = res.stdout
    assert re.search(r"\b5 passed, 1 warning in [\d.]+s\b", out), out[-2000:]
    for n in range(1, 6):
        assert re.search(rf"SPEC\.md::step{n} PASSED", out)
    assert "[MONITOR] STEP 3: step " in out
    assert "advisory check failed: accuracy >= 0.97" in out
    assert "5 done, 0 failed" in out

    # SPEC.md: every header ticked and marked; nothing else in the file changed.
    text = (project / "SPEC.md").read_text(encoding="utf-8")
    headers = [ln for ln in text.splitlines() if parse_header(ln)]
    assert len(headers) == 5
    for line in headers:
        assert HEADER.match(line), line
    assert unmarked(text) == unmarked((QUICKSTART_TEMPLATE / "SPEC.md").read_text(encoding="utf-8"))

    # The work was done and measured.
    metrics = json.loads((project / "eval" / "metrics.json").read_text())
    assert 0.8 <= metrics["accuracy"] < 0.97
    assert "Accuracy" in (project / "REPORT.md").read_text()
    log = [json.loads(ln) for ln in (project / ".task_execution.log").read_text().splitlines()]
    ids = {e["task_id"] for e in log}
    assert len(ids) == 5 and all(tid in text for tid in ids)
    events = {(e.get("step"), e.get("phase"), e.get("event")) for e in log}
    assert (3, "background", "started") in events and (3, "background", "finished") in events
    assert (3, "background", "monitor") in events
    checks = {(e["step"], e["check"]): e for e in log if e.get("event") == "check"}
    assert checks[(1, "data/train.jsonl created (>= 200 records)")]["ok"]
    assert checks[(3, "loss_ratio <= 0.5")]["ok"]
    assert checks[(4, "accuracy >= 0.8")]["ok"]
    assert not checks[(4, "accuracy >= 0.97")]["ok"] and checks[(4, "accuracy >= 0.97")]["severity"] == "advisory"

    # Again, the way a user re-runs it: done steps are skipped with their task id; metrics in JUnit.
    res = run([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "-p", "no:cacheprovider", "-rs"], project)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "5 skipped" in res.stdout and "already done [task_id: task_4_" in res.stdout
    assert (project / "SPEC.md").read_text(encoding="utf-8") == text
    res = run([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "-p", "no:cacheprovider", "--steps", "4",
               "--redo", "--no-mark", "--junitxml", "junit.xml"], project)
    assert res.returncode == 0, res.stdout[-2000:]
    props = properties(project / "junit.xml")["step4"]
    assert float(props["metric.accuracy"]) == metrics["accuracy"]
    assert props["kind"] == "evaluation" and props["task_id"].startswith("task_4_")


# ---------------------------------------------------------------- the Tinker plan


def test_init_tinker_template_collects_twenty_steps(tmp_path: Path) -> None:
    dest = tmp_path / "distill"
    assert cli.main(["init", "--template", "tinker", str(dest)]) == 0
    assert (dest / "SPEC.md").read_bytes() == TINKER_TEMPLATE.read_bytes()
    claude = TINKER_TEMPLATE.parent / ".claude"
    for src in claude.rglob("*") if claude.is_dir() else []:
        if src.is_file():
            assert (dest / src.relative_to(TINKER_TEMPLATE.parent)).read_bytes() == src.read_bytes()
    res = run([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "--collect-only", "-q", "-p", "no:cacheprovider"],
              dest)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("SPEC.md::")] == [
        f"SPEC.md::step{n}" for n in range(1, 21)]
    assert "20 tests collected" in res.stdout and "warning" not in res.stdout.lower()


def test_root_spec_is_the_tinker_template() -> None:
    if not ROOT_SPEC.exists():
        pytest.skip("no SPEC.md beside the package (installed without the repository)")
    # One source of truth: the template. Status markers a local run wrote into the root copy are ignored.
    assert unmarked(ROOT_SPEC.read_text(encoding="utf-8")) == unmarked(TINKER_TEMPLATE.read_text(encoding="utf-8")), (
        "SPEC.md differs from pytest_dotasks/templates/tinker/SPEC.md; edit the template, then "
        "cp pytest_dotasks/templates/tinker/SPEC.md SPEC.md")


def test_root_spec_collects_twenty_steps(pytester: pytest.Pytester) -> None:
    plan = ROOT_SPEC if ROOT_SPEC.exists() else TINKER_TEMPLATE
    shutil.copyfile(plan, pytester.path / "SPEC.md")
    res = pytester.runpytest("--spec", "SPEC.md", "--collect-only", "-q")
    res.stdout.fnmatch_lines(["SPEC.md::step1", "SPEC.md::step13", "SPEC.md::step20", "*20 tests collected*"])


def test_tinker_plan_checks_every_step() -> None:
    spec = parse_file(TINKER_TEMPLATE)
    cfgs = validate_spec(spec)
    assert [s.number for s in spec.steps] == list(range(1, 21)) and not spec.warnings
    for step in spec.steps:
        cfg = cfgs[step.number]
        where = f"STEP {step.number}"
        assert cfg.kind and cfg.timeout, where
        assert cfg.outputs, f"{where} has no outputs"
        assert step.detail_line, f"{where} has no detail section"
        for label in ("**What to Accomplish:**", "**Files:**", "**Success Outcome:**", "**Instructions:**"):
            assert label in step.description, f"{where} lacks {label}"
        calls_tinker = "tinker" in {c.command for c in cfg.checks}
        assert calls_tinker == ("TINKER_API_KEY" in cfg.env), where
        assert ("anthropic" in {c.command for c in cfg.checks}) == ("ANTHROPIC_API_KEY" in cfg.env), where
    train = cfgs[13]
    assert train.kind == "training" and train.background and train.run
    assert (train.monitor, train.monitor_every, train.alert) == ("training_logs/loss.txt", 60.0, ("nan", "diverged"))
    assert {o.pattern: o.min_records for o in cfgs[10].outputs} == {"data/train.jsonl": 4000, "data/val.jsonl": 500}
    assert any(t.severity == "advisory" for t in cfgs[15].thresholds)


def test_tinker_plan_dry_run_without_keys(tmp_path: Path) -> None:
    """Pre-flight passes for the steps that need no key; the others error naming the key."""
    shutil.copyfile(TINKER_TEMPLATE, tmp_path / "SPEC.md")
    spec = parse_file(tmp_path / "SPEC.md")
    cfgs = validate_spec(spec)
    keyed = {n for n, c in cfgs.items() if c.env}
    res = run([sys.executable, "-m", "pytest", "--spec", "SPEC.md", "--dry-run", "-p", "no:cacheprovider",
               "--agent-backend", "command", "--agent-command", "echo {prompt}", "--junitxml", "junit.xml", "-rs"],
              tmp_path, timeout=120)
    assert res.returncode in (0, 1), res.stdout[-3000:] + res.stderr
    cases = {tc.get("name"): tc for tc in ET.parse(tmp_path / "junit.xml").iter("testcase")}
    assert len(cases) == 20
    errored: dict[int, str] = {}
    for name, tc in cases.items():
        err = tc.find("error")
        if err is not None:
            errored[int(str(name).removeprefix("step"))] = err.get("message", "") + (err.text or "")
    assert 1 in errored, "STEP 1 should stop at the missing TINKER_API_KEY"
    for n, text in errored.items():
        assert n in keyed, f"STEP {n} needs no key but its pre-flight failed: {text[:500]}"
        assert any(f"{k} is not set" in text for k in cfgs[n].env), text[:500]
    for n in (2, 3, 4, 5):  # the key-free chain at the start of the plan
        assert n not in errored
    if importlib.util.find_spec("pytest_dotasks.agent.session") is not None:
        for n in (2, 3, 4, 5):
            skipped = cases[f"step{n}"].find("skipped")
            assert skipped is not None and "dry run" in (skipped.get("message") or ""), f"STEP {n}"
    # A dry run marks nothing and makes nothing.
    assert (tmp_path / "SPEC.md").read_bytes() == TINKER_TEMPLATE.read_bytes()
    assert not (tmp_path / "data").exists() and not (tmp_path / "tinker_models.txt").exists()
