"""A hostile user's inputs: each gets one clear line (file, value, fix), no traceback, and changes nothing.

``--task-log`` under a folder that does not exist, or a log that fails every write
(``/dev/full``); ``pytest-dotasks status`` on a file that is no plan, a missing file, a
folder; odd ``--steps`` values; odd option values from the command line and the ini.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_dotasks.errors import LogError, SettingsError
from pytest_dotasks.plan.selection import parse_steps, select
from pytest_dotasks.plan.specmd import parse_text
from pytest_dotasks.run.tasklog import probe
from pytest_dotasks.settings import resolve

pytest_plugins = ["pytester"]

PLAN = "# Plan\n\n- [ ] **STEP 1**: One\n  - run: echo one > one.txt\n- [ ] **STEP 2**: Two\n  - run: echo two > two.txt\n"
SPECKIT = """\
## Phase 1: Setup
- [ ] T001 Create the folders
  - run: true
- [ ] T002 Configure the linter
  - run: true
- [ ] T003 Write the model
  - run: true
- [ ] T004 Write the views
  - run: true
"""


def _plan(pytester: pytest.Pytester) -> Path:
    spec = pytester.path / "SPEC.md"
    spec.write_text(PLAN)
    return spec


def _one_usage_error(res: pytest.RunResult) -> str:
    """The run stopped as a usage error (exit 4) with one ERROR line and no traceback; that line."""
    out = res.stdout.str() + "\n" + res.stderr.str()
    assert res.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1, out
    return errors[0]


# ------------------------------------------------------------------ 1. --task-log under a missing folder


def test_probe_refuses_a_missing_folder_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(LogError) as info:
        probe(tmp_path / "logz" / "run" / "log.jsonl")
    line = info.value.one_line()
    assert f"the task log's folder {tmp_path / 'logz'} does not exist" in line, line
    assert f"mkdir -p {tmp_path / 'logz' / 'run'}" in line and "--task-log" in line, line
    assert list(tmp_path.iterdir()) == []


def test_probe_lets_the_plans_state_folder_be_made(tmp_path: Path) -> None:
    probe(tmp_path / ".dotasks" / "logs" / "log.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_task_log_in_a_missing_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    spec = _plan(pytester)
    res = pytester.runpytest("--spec", "SPEC.md", "--task-log", "lgos/run.log")
    line = _one_usage_error(res)
    assert "lgos does not exist" in line and "mkdir -p" in line and "--task-log" in line, line
    assert not (pytester.path / "lgos").exists()
    assert spec.read_text() == PLAN and not (pytester.path / "one.txt").exists()


# ------------------------------------------------------------------ 2. a log that fails every write

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")


@needs_dev_full
def test_probe_catches_a_device_that_fails_every_write() -> None:
    with pytest.raises(LogError) as info:
        probe(Path("/dev/full"))
    assert info.value.one_line().startswith("/dev/full: the task log refuses every write"), info.value.one_line()
    probe(Path("/dev/null"))  # a device that takes writes is fine


@needs_dev_full
def test_dev_full_stops_the_run_before_any_step(pytester: pytest.Pytester) -> None:
    spec = _plan(pytester)
    res = pytester.runpytest("--spec", "SPEC.md", "--task-log", "/dev/full")
    line = _one_usage_error(res)
    assert "/dev/full" in line and "--task-log" in line, line
    assert spec.read_text() == PLAN and not (pytester.path / "one.txt").exists()


# ------------------------------------------------------------------ 3. pytest-dotasks status


def _status(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_dotasks", "status", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, check=False)


def test_status_of_a_file_with_no_plan_says_what_a_step_looks_like(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n")
    out = _status("passwd", cwd=tmp_path)
    assert out.returncode == 2, out
    assert out.stdout == "" and len(out.stderr.splitlines()) == 1, out.stderr
    assert "0 steps" not in out.stderr
    assert out.stderr.startswith("pytest-dotasks: error: passwd: no step in this file"), out.stderr
    assert "formats tried: SPEC.md, Spec Kit tasks.md, Kiro tasks.md" in out.stderr
    assert "'- [ ] **STEP 8**: Title'" in out.stderr


@pytest.mark.parametrize(("arg", "says"), [
    ("nope.md", "nope.md: no such plan file; name one: pytest-dotasks status path/SPEC.md"),
    ("plans", "plans is a folder, not a plan file; name the plan in it: pytest-dotasks status plans/SPEC.md"),
])
def test_status_of_a_missing_file_or_a_folder_is_one_line(tmp_path: Path, arg: str, says: str) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "SPEC.md").write_text(PLAN)
    out = _status(arg, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr == f"pytest-dotasks: error: {says}\n", out


def test_status_shows_step_ids_aligned(tmp_path: Path) -> None:
    (tmp_path / "SPEC.md").write_text("- [ ] **Step 1**: One\n- [ ] **Step 2A**: Check\n- [ ] **Step 10**: Ten\n")
    out = _status("SPEC.md", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [["STEP", "1"], ["STEP", "2A"], ["STEP", "10"]], rows
    assert len({r.index("pending") for r in rows}) == 1, rows  # one column


def test_status_of_a_speckit_plan_names_tasks_by_id(tmp_path: Path) -> None:
    (tmp_path / "specs" / "001-x").mkdir(parents=True)
    (tmp_path / "specs" / "001-x" / "tasks.md").write_text(SPECKIT)
    out = _status("specs/001-x/tasks.md", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  STEP T001  pending" in out.stdout, out.stdout


# ------------------------------------------------------------------ 4. --steps


@pytest.mark.parametrize(("value", "says"), [
    ("1,,2", "--steps 1,,2: an empty item between commas; write --steps 1,2"),
    (",", "--steps ,: no step between the commas; write e.g. --steps 1,2, or --steps all"),
    ("8,", "--steps 8,: an empty item after the last comma; write --steps 8"),
    ("3-1", "--steps 3-1: the range '3-1' runs backwards; write --steps 1-3"),
    ("1-", "--steps 1-: the range '1-' has no end; write e.g. --steps 1-5, or --steps continue"),
    ("٣", "--steps ٣: '٣' is not written in ASCII digits; write --steps 3"),
    ("1–3", "--steps 1–3: '1–3': a range is written with '-'; write --steps 1-3"),
    ("1 2", "--steps 1 2: '1 2': steps are separated by commas; write --steps 1,2"),
    ("contine", "--steps contine: cannot read 'contine' as a step; write --steps continue"),
    ("all,2", "--steps all,2: 'all' cannot be combined with other steps"),
    ("1.1-1.3", "--steps 1.1-1.3: cannot read the range '1.1-1.3'"),
])
def test_odd_steps_values_name_the_option_the_value_and_the_fix(value: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps(value)
    assert str(info.value).startswith(says), str(info.value)
    assert "\n" not in str(info.value)


def test_steps_1_comma_comma_2_is_a_usage_error_through_pytest(pytester: pytest.Pytester) -> None:
    spec = _plan(pytester)
    line = _one_usage_error(pytester.runpytest("--spec", "SPEC.md", "--steps", "1,,2"))
    assert line == "ERROR: --steps 1,,2: an empty item between commas; write --steps 1,2", line
    assert spec.read_text() == PLAN


def test_steps_from_the_ini_say_so(pytester: pytest.Pytester) -> None:
    _plan(pytester)
    pytester.makeini("[pytest]\ndotasks_spec = SPEC.md\ndotasks_steps = 3-1\n")
    line = _one_usage_error(pytester.runpytest())
    assert "--steps 3-1: the range '3-1' runs backwards (from ini option dotasks_steps); write --steps 1-3" in line


@pytest.mark.parametrize("value", ["step2", " 1 , 2 ", "STEP 2"])
def test_friendly_spellings_select(pytester: pytest.Pytester, value: str) -> None:
    _plan(pytester)
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", value, "--collect-only", "-q")
    assert res.ret == 0, res.stdout.str() + res.stderr.str()
    assert "SPEC.md::step2" in res.stdout.str()


def test_a_range_of_speckit_ids(pytester: pytest.Pytester) -> None:
    (pytester.path / "specs" / "001-x").mkdir(parents=True)
    (pytester.path / "specs" / "001-x" / "tasks.md").write_text(SPECKIT)
    res = pytester.runpytest("specs/001-x/tasks.md", "--steps", "T002-T003", "--collect-only", "-q")
    out = res.stdout.str()
    assert res.ret == 0, out + res.stderr.str()
    assert "tasks.md::T002" in out and "tasks.md::T003" in out, out
    assert "tasks.md::T001" not in out and "tasks.md::T004" not in out, out


def test_a_range_of_speckit_ids_is_pure_selection() -> None:
    steps = parse_text(SPECKIT, Path("specs/001-x/tasks.md")).steps
    assert [s.ident for s in select(steps, parse_steps("t001-t002,T004"))] == ["T001", "T002", "T004"]


# ------------------------------------------------------------------ other option values


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--check-workers", "1e3", "not a whole number; write e.g. 3"),
    ("--check-workers", "٣", "write the digits in ASCII: 3"),
    ("--agent-max-turns", "9" * 5000, "not a whole number"),
    ("--max-cost", "inf", "must be an amount in USD above 0"),
    ("--max-cost", "1_0", "must be an amount in USD above 0"),
    ("--preflight-timeout", "99999999999999h", "above the longest allowed, 30d"),
    ("--heartbeat", "٣s", "write the digits in ASCII: 3s"),
])
def test_odd_option_values_are_one_line(flag: str, value: str, says: str) -> None:
    name = flag.lstrip("-").replace("-", "_")
    with pytest.raises(SettingsError) as info:
        resolve({name: value}, {}, Path("."))
    text = str(info.value)
    assert says in text and flag in text and "from the command line" in text and "\n" not in text, text
    assert len(text) < 300, text


def test_a_huge_timeout_is_a_usage_error_through_pytest(pytester: pytest.Pytester) -> None:
    """Before: 3.6e26 seconds was taken; the first pre-flight wait died with an OverflowError traceback
    and the step was marked ✗ Failed."""
    _plan(pytester)
    line = _one_usage_error(pytester.runpytest("--spec", "SPEC.md", "--preflight-timeout", "99999999999999h"))
    assert "--preflight-timeout" in line and "30d" in line, line


def test_choices_ignore_case_and_spaces() -> None:
    s = resolve({"agent_backend": " Claude-Code ", "plan_format": "SPECMD"}, {}, Path("."))
    assert s.agent_backend == "claude-code" and s.plan_format == "specmd"


@pytest.mark.parametrize(("value", "says"), [
    ("1\n2", r"--steps 1\n2: '1\n2': steps are separated by commas; write --steps 1,2"),
    ("1,\u200b2", r"--steps 1,\u200b2: '\u200b2' holds an invisible character (U+200B); write --steps 1,2"),
    ("\x1b[31m1", r"--steps \x1b[31m1: '\x1b[31m1' holds an invisible character (U+001B); write e.g. --steps 8"),
])
def test_a_steps_value_with_control_characters_stays_on_one_line(value: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps(value)
    assert str(info.value).startswith(says), str(info.value)
    assert str(info.value).isprintable()


def test_an_empty_task_log_is_refused_not_read_as_the_default(pytester: pytest.Pytester) -> None:
    """``--task-log "$UNSET"``: before, the log silently went to the default file."""
    spec = _plan(pytester)
    line = _one_usage_error(pytester.runpytest("--spec", "SPEC.md", "--task-log", ""))
    assert "--task-log" in line and "the path is empty" in line, line
    assert spec.read_text() == PLAN and not (pytester.path / ".task_execution.log").exists()


# ------------------------------------------------------------------ 5. a named file with no step


def _no_step_error(res: pytest.RunResult, name: str) -> str:
    """The run stopped at collection (exit 2, as a file with checkboxes but no step) in one line, no traceback."""
    out = res.stdout.str() + res.stderr.str()
    assert res.ret == pytest.ExitCode.INTERRUPTED, out
    assert "Traceback" not in out and "INTERNALERROR" not in out and "no tests ran" not in out, out
    lines = [ln for ln in out.splitlines() if f"{name}: no step in this file" in ln and not ln.startswith("ERROR ")]
    assert len(lines) == 1, out
    return lines[0]


PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
README = "# My tool\n\nInstall it:\n\n- pip install my-tool\n- run `my-tool --help`\n\n1. read the docs\n"


@pytest.mark.parametrize("content", [PASSWD, README], ids=["passwd", "readme"])
@pytest.mark.parametrize("how", [("--spec", "plan.md"), ("plan.md",)], ids=["--spec", "argument"])
def test_a_named_file_with_no_checkbox_says_what_a_step_looks_like(
        pytester: pytest.Pytester, content: str, how: tuple[str, ...]) -> None:
    """Before: "no tests ran", exit 5: a wrong file named as the plan looked like a plan with nothing to do."""
    plan = pytester.path / "plan.md"
    plan.write_text(content)
    before = sorted(p.name for p in pytester.path.iterdir())
    line = _no_step_error(pytester.runpytest(*how), "plan.md")
    assert "formats tried: SPEC.md, Spec Kit tasks.md, Kiro tasks.md" in line, line
    assert "'- [ ] **STEP 8**: Title'" in line and "is this the plan file?" in line, line
    assert plan.read_text() == content
    assert sorted(p.name for p in pytester.path.iterdir() if p.name != ".pytest_cache") == before  # no log, no .dotasks


@pytest.mark.parametrize("content", ["", "\n\n", "# My new project\n", "# Plan\n\n## Phase 1\n"],
                         ids=["0 bytes", "blank", "title", "headings"])
def test_an_empty_plan_is_a_collection_error_too(pytester: pytest.Pytester, content: str) -> None:
    """A new project's plan with no step yet: nothing to run, said in one line (see diagnose.no_step_at_all)."""
    plan = pytester.path / "SPEC.md"
    plan.write_text(content)
    line = _no_step_error(pytester.runpytest("--spec", "SPEC.md"), "SPEC.md")
    assert "no step in this file yet: it is empty or holds only headings" in line, line
    assert "add a first step such as '- [ ] **STEP 1**: Title'" in line, line
    assert plan.read_text() == content


def test_a_speckit_file_with_no_task_names_its_format(pytester: pytest.Pytester) -> None:
    (pytester.path / "specs" / "001-x").mkdir(parents=True)
    (pytester.path / "specs" / "001-x" / "tasks.md").write_text("# Tasks\n\nNothing here yet, see plan.md.\n")
    line = _no_step_error(pytester.runpytest("specs/001-x/tasks.md"), "tasks.md")
    assert "(read as Spec Kit tasks.md;" in line and "'- [ ] T001 [P] [US1] Description'" in line, line


def test_status_of_an_empty_plan_says_so(tmp_path: Path) -> None:
    (tmp_path / "SPEC.md").write_text("# Plan\n")
    out = _status("SPEC.md", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out
    assert out.stderr.startswith("pytest-dotasks: error: SPEC.md: no step in this file yet"), out.stderr


# ------------------------------------------------------------------ 6. option values pytest itself reads


def test_an_empty_spec_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """``--spec "$UNSET"``: before, plain pytest ran (the whole test tree) as if no plan was named."""
    _plan(pytester)
    pytester.makepyfile(test_other="def test_x():\n    pass\n")
    line = _one_usage_error(pytester.runpytest("--spec", ""))
    assert "--spec" in line and "the path is empty" in line, line


@pytest.mark.parametrize(("option", "value"), [("dotasks_redo", "maybe"), ("dotasks_no_mark", "2")])
def test_a_bad_truth_value_in_the_ini_names_the_option(pytester: pytest.Pytester, option: str, value: str) -> None:
    """Before: "ERROR: invalid truth value 'maybe'" without the option's name."""
    spec = _plan(pytester)
    pytester.makeini(f"[pytest]\ndotasks_spec = SPEC.md\n{option} = {value}\n")
    line = _one_usage_error(pytester.runpytest())
    assert f"ini option {option}" in line and repr(value) in line, line
    assert "true or false" in line, line
    assert spec.read_text() == PLAN


def test_good_truth_values_in_the_ini_still_work(pytester: pytest.Pytester) -> None:
    _plan(pytester)
    pytester.makeini("[pytest]\ndotasks_spec = SPEC.md\ndotasks_no_mark = Yes\n")
    pytester.runpytest().assert_outcomes(passed=2)
    assert (pytester.path / "SPEC.md").read_text() == PLAN  # no_mark held


def _log_steps(log: Path) -> list[object]:
    import json

    return [json.loads(line).get("step") for line in log.read_text().splitlines() if line.strip()]


def test_an_ini_task_log_is_relative_to_the_ini_files_folder(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """As dotasks_spec and dotasks_cassettes; before, it was relative to where pytest was run."""
    _plan(pytester)
    (pytester.path / "logs").mkdir()
    (pytester.path / "sub" / "logs").mkdir(parents=True)
    pytester.makeini("[pytest]\ndotasks_spec = SPEC.md\ndotasks_task_log = logs/run.log\n")
    monkeypatch.chdir(pytester.path / "sub")
    pytester.runpytest("-c", "../tox.ini", "--rootdir", "..").assert_outcomes(passed=2)
    assert 1 in _log_steps(pytester.path / "logs" / "run.log")
    assert not (pytester.path / "sub" / "logs" / "run.log").exists()


def test_a_command_line_task_log_is_relative_to_where_pytest_runs(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _plan(pytester)
    (pytester.path / "logs").mkdir()
    (pytester.path / "sub" / "logs").mkdir(parents=True)
    pytester.makeini("[pytest]\ndotasks_spec = SPEC.md\ndotasks_task_log = logs/ini.log\n")
    monkeypatch.chdir(pytester.path / "sub")
    pytester.runpytest("-c", "../tox.ini", "--rootdir", "..", "--task-log", "logs/cli.log").assert_outcomes(passed=2)
    assert 1 in _log_steps(pytester.path / "sub" / "logs" / "cli.log")
    assert not (pytester.path / "logs" / "ini.log").exists() and not (pytester.path / "logs" / "cli.log").exists()


# ------------------------------------------------------------------ 7. --steps T001-003


def test_a_speckit_range_whose_end_lacks_its_t_selects_the_range(pytester: pytest.Pytester) -> None:
    """Before: "--steps T001-003: no such step" (read as a repeated task's id, T001's third copy)."""
    (pytester.path / "specs" / "001-x").mkdir(parents=True)
    (pytester.path / "specs" / "001-x" / "tasks.md").write_text(SPECKIT)
    res = pytester.runpytest("specs/001-x/tasks.md", "--steps", "T002-003", "--collect-only", "-q")
    out = res.stdout.str()
    assert res.ret == 0, out + res.stderr.str()
    assert "tasks.md::T002" in out and "tasks.md::T003" in out, out
    assert "tasks.md::T001" not in out and "tasks.md::T004" not in out, out


def test_a_short_speckit_range_is_pure_selection() -> None:
    steps = parse_text(SPECKIT, Path("specs/001-x/tasks.md")).steps
    assert [s.ident for s in select(steps, parse_steps("T001-003"))] == ["T001", "T002", "T003"]
    assert [s.ident for s in select(steps, parse_steps("t-002 - 04"))] == ["T002", "T003", "T004"]
    with pytest.raises(SettingsError) as info:
        parse_steps("T003-001")
    assert str(info.value) == "--steps T003-001: the range 'T003-001' runs backwards; write --steps T001-T003"


def test_an_ambiguous_speckit_range_says_exactly_what_to_write(pytester: pytest.Pytester) -> None:
    """``T001-2`` is the id of T001's second copy; with no such task, the fix names the range."""
    (pytester.path / "specs" / "001-x").mkdir(parents=True)
    (pytester.path / "specs" / "001-x" / "tasks.md").write_text(SPECKIT)
    line = _one_usage_error(pytester.runpytest("specs/001-x/tasks.md", "--steps", "T001-3"))
    assert "--steps T001-3: no such step in the plan" in line, line
    assert line.endswith("for T001 to T003, write T001-T003 in --steps (T001-3 is the id of a repeated T001, "
                         "which this plan does not have)"), line


# ------------------------------------------------------------------ 8. lettered steps by their id


def test_an_input_made_by_a_lettered_step_names_its_id(pytester: pytest.Pytester) -> None:
    """Before: "will be made by STEP 1000012865" (the internal number of 2A), and "(an output of STEP 1000012865)"."""
    plan = ("- [ ] **STEP 2A**: Make\n  - run: echo x > made.txt\n  - outputs: made.txt\n"
            "- [ ] **STEP 3**: Use\n  - needs: 2A\n  - inputs: made.txt\n  - run: cat made.txt\n")
    (pytester.path / "SPEC.md").write_text(plan)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--dry-run", "-v")
    out = res.stdout.str()
    assert "made.txt exists: will be made by STEP 2A" in out and "10000" not in out, out
    done = plan.replace("- [ ] **STEP 2A**: Make", "- [x] **STEP 2A**: Make ✓ [task_id: task_2A_0badc0de] [2026-01-01T00:00:00]")
    (pytester.path / "SPEC.md").write_text(done)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--steps", "3")
    out = res.stdout.str()
    assert "made.txt (an output of STEP 2A) not found" in out and "10000" not in out, out


def test_a_cassette_of_a_lettered_step_names_its_id(tmp_path: Path) -> None:
    """A cassette header holding a lettered step's internal number (an older recording) shows the id."""
    from pytest_dotasks.cassette.deck import header_problem
    from pytest_dotasks.cassette.store import Header
    from pytest_dotasks.plan.model import number_of

    recorded = Header("SPEC.md", str(number_of("2A")), "Check the data", "anthropic")
    assert header_problem(recorded, Header("SPEC.md", "2A", "Check the data", "anthropic")) is None
    why = header_problem(recorded, Header("SPEC.md", "3", "Train", "anthropic"))
    assert why is not None and why.startswith('was recorded for STEP 2A "Check the data" of SPEC.md'), why
