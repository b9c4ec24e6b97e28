"""A step is named as the plan writes it (``2A``, ``T001``, ``1.1``), never by the internal number
made from a non-numeric id (``1000012865``): in every message, the task log, and the summary, whose
steps come in plan (file) order. Real pytest runs (pytester), the real SDKs against the local stub."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from pytest_dotasks.plan.model import number_of
from tests.agent import test_claude_code
from tests.agent.test_claude_code import CC
from tests.agent.test_through_pytest import DONE, _dollars
from tests.stubs.anthropic_stub import AnthropicStub, text, tool_use
from tests.test_faults_run import PYTEST, run, wait_for
from tests.test_plan_formats import log_entries, write
from tests.test_readiness import KEYS
from tests.test_record_replay import SUCCESS, offline, project, reset

pytest_plugins = ["pytester"]
claude_cli, cc = test_claude_code.claude_cli, test_claude_code.cc  # the real CLI, an empty HOME, nothing let out

def no_internal_number(out: str, *idents: str) -> None:
    """``out`` never shows the number ``number_of`` makes of these ids (``2A`` -> 1000012865)."""
    for ident in idents:
        assert str(number_of(ident)) not in out, out


def summary_lines(out: str) -> list[str]:
    """The summary's step lines (``✓ STEP 2A: title``), in the order shown."""
    return [ln.strip() for ln in out.split("dotasks summary")[1].splitlines() if re.match(r"\s+\S STEP \S+:", ln)]


SPECKIT_AGENT = """\
# Tasks: Demo

- [ ] T001 Write hello.py that prints hi
  - validate: true
- [ ] T002 Review hello.py
  - validate: true
"""


# --------------------------------------------------------------------------- agent messages


def test_an_agent_task_without_a_key_is_named_by_its_id(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for k in KEYS:
        monkeypatch.delenv(k, raising=False)
    write(pytester, "specs/001-demo/tasks.md", SPECKIT_AGENT)
    res = pytester.runpytest("specs/001-demo/tasks.md", "--steps", "T001")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "agent step T001 need credentials for the anthropic backend" in err, err
    no_internal_number(err + res.stdout.str(), "T001")


def test_an_api_error_names_the_task_id_in_the_message_and_the_transcript(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key-000000000000")
    write(pytester, "specs/001-demo/tasks.md", SPECKIT_AGENT)
    res = pytester.runpytest("specs/001-demo/tasks.md", "--steps", "T001")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP T001: the Anthropic API rejected the key \(401.*\[task_T001_", out), out
    no_internal_number(out, "T001")
    [transcript] = (pytester.path / "specs" / "001-demo" / ".dotasks" / "transcripts").glob("*.jsonl")
    session = next(r for r in map(json.loads, transcript.read_text().splitlines()) if r.get("type") == "session")
    assert session["step"] == "T001", session


def test_the_command_backend_without_a_command_names_the_task_id(pytester: pytest.Pytester) -> None:
    write(pytester, "specs/001-demo/tasks.md", SPECKIT_AGENT)
    res = pytester.runpytest("specs/001-demo/tasks.md", "--steps", "T001", "--agent-backend", "command")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "STEP T001: --agent-backend command needs --agent-command" in out, out
    no_internal_number(out, "T001")


def test_the_spending_limit_names_the_task_it_stopped(pytester: pytest.Pytester,
                                                      anthropic_stub: AnthropicStub) -> None:
    write(pytester, "specs/001-demo/tasks.md", SPECKIT_AGENT)
    anthropic_stub.reply(DONE, usage=_dollars(3)).reply(DONE)
    res = pytester.runpytest("specs/001-demo/tasks.md", "--max-run-cost", "3", "-p", "no:randomly")
    res.assert_outcomes(passed=1, failed=1)
    out = res.stdout.str()
    assert "STEP T002: stopped before its next request to the model: the run has spent $3.0000" in out, out
    no_internal_number(out, "T001", "T002")
    assert [ln.split(":")[0] for ln in summary_lines(out)] == ["✓ STEP T001", "✗ STEP T002"]


def test_claude_code_without_credentials_names_the_lettered_step(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    (cc.home / ".claude").mkdir()
    (cc.home / ".claude" / ".credentials.json").write_text("{}")  # a login file Claude Code finds no login in
    res = cc.run("- [ ] **STEP 2A**: Make the greeting\n  Write hello.py that prints hi.\n  - outputs: hello.py\n")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 2A: Claude Code has no credentials: .*\[task_2A_", out), out
    no_internal_number(out, "2A")


def test_a_replay_difference_names_the_lettered_step(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plan = ("- [ ] **STEP 2A**: Make the greeting\n  Write hello.py that prints a greeting.\n"
            "  - outputs: hello.py\n  - validate: python3 hello.py | grep -q hi\n")
    project(pytester.path, plan)
    anthropic_stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"})).reply(text(SUCCESS))
    pytester.runpytest("--spec", "SPEC.md", "--record").assert_outcomes(passed=1)
    offline(monkeypatch)
    changed = plan.replace("prints a greeting", "prints a friendly greeting")
    reset(pytester.path, changed)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "STEP 2A replay: request 1 (POST /v1/messages) differs from" in out, out
    no_internal_number(out, "2A")
    reset(pytester.path, changed)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay=lenient")
    res.assert_outcomes(passed=1, warnings=1)
    res.stdout.fnmatch_lines(["*STEP 2A replay (lenient): request 1 (POST /v1/messages) differs from*"])
    no_internal_number(res.stdout.str(), "2A")
    cassette_events = [e for e in log_entries(pytester.path / ".task_execution.log") if e.get("event") == "replay_unused"
                       or str(e.get("message", "")).startswith("cassette written")]
    assert cassette_events and all(e["step"] == "2A" for e in cassette_events), cassette_events


# --------------------------------------------------------------------------- readiness


def test_missing_dependencies_are_named_by_id_in_plan_order(pytester: pytest.Pytester) -> None:
    spec = write(pytester, "SPEC.md", """\
- [ ] **STEP 1**: One
  - run: true
- [ ] **STEP 2A**: Two A
  - run: true
- [ ] **STEP 3**: Three
  - run: true
- [ ] **STEP 4**: Four
  - run: echo four > four.txt
""")
    before = spec.read_bytes()
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "4")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "STEP 4 needs STEP 1, STEP 2A, STEP 3, which are neither done nor selected" in err, err
    assert "fix: run them together: --steps 1,2A,3-4" in err, err
    assert spec.read_bytes() == before


def test_a_lettered_step_needing_an_undone_step_is_named_by_its_id(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", "- [ ] **STEP 1A**: First\n  - run: true\n"
                               "- [ ] **STEP 2B**: Second\n  - needs: 1A\n  - run: true\n")
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "2B")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "STEP 2B needs STEP 1A, which is neither done nor selected" in err and "--steps 1A,2B" in err, err
    no_internal_number(err, "1A", "2B")


def test_an_unknown_agent_of_a_lettered_step_is_named_by_its_id(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    write(pytester, "SPEC.md", "- [ ] **STEP 2A**: Review\n  Do it.\n  - agent: reviewer\n")
    res = pytester.runpytest("--spec", "SPEC.md")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert re.search(r"STEP 2A: \S+: agent 'reviewer' not found", err), err
    no_internal_number(err, "2A")


# --------------------------------------------------------------------------- background steps and claims


def test_a_lettered_background_step_is_named_by_its_id(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", """\
- [ ] **STEP 2A**: Train
  - run: sleep 0.5; echo done > trained.txt
  - background: yes
  - validate: test "$DOTASKS_STEP" = 2A
- [ ] **STEP 3**: Evaluate
  - run: test -s trained.txt
""")
    res = pytester.runpytest("--spec", "SPEC.md", "-v")
    res.assert_outcomes(passed=2)
    out = res.stdout.str()
    assert "[BACKGROUND] STEP 2A started" in out and "[WAIT] STEP 2A is still running in the background" in out, out
    assert "STEP 2A finished in the background: exit 0" in out, out
    no_internal_number(out, "2A")
    background = [e for e in log_entries(pytester.path / ".task_execution.log")
                  if e.get("phase") in ("background", "post") and "task_2A_" in str(e.get("task_id"))]
    assert background and {e["step"] for e in background} == {"2A"}, background


def test_a_lettered_step_running_in_another_run_is_named_by_its_id(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", "- [ ] **STEP 1A**: Slow\n"
                               "  - run: echo $DOTASKS_TASK_ID >> started.txt; "
                               "for i in $(seq 600); do [ -f go ] && break; sleep 0.1; done\n")
    first = subprocess.Popen([*PYTEST, "--spec", "SPEC.md"], cwd=pytester.path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (pytester.path / "started.txt").exists()), "STEP 1A never started"
        out = run(pytester.path, "--spec", "SPEC.md", "-rs").stdout  # while the first run still holds it
    finally:
        (pytester.path / "go").touch()
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert f"STEP 1A is running in another pytest process, pid {first.pid}" in out, out
    no_internal_number(out, "1A")


# --------------------------------------------------------------------------- the summary, in plan order


def test_the_summary_lists_steps_in_plan_order(pytester: pytest.Pytester) -> None:
    plan = "".join(f"- [ ] **STEP {i}**: Step {i}\n  - run: true\n" for i in ("1", "2A", "5"))
    spec = write(pytester, "SPEC.md", plan)
    out = pytester.runpytest("--spec", "SPEC.md").stdout.str()
    assert [ln.split(":")[0] for ln in summary_lines(out)] == ["✓ STEP 1", "✓ STEP 2A", "✓ STEP 5"], out
    out = pytester.runpytest("--spec", "SPEC.md", "--steps", "all").stdout.str()
    assert "already done: STEP 1, 2A, 5 (--redo runs them again)" in out, out
    assert "✓" in spec.read_text()


def test_continue_leaves_behind_a_lettered_step_before_the_continue_point(pytester: pytest.Pytester) -> None:
    write(pytester, "SPEC.md", """\
- [x] **STEP 1**: One ✓ [task_id: task_1_aaaaaaaa] [2026-01-01T00:00:00]
  - run: true
- [ ] **STEP 2A**: Forgotten
  - run: true
- [x] **STEP 3**: Three ✓ [task_id: task_3_bbbbbbbb] [2026-01-01T00:00:00]
  - needs: none
  - run: true
- [ ] **STEP 5**: Next
  - run: true
""")
    res = pytester.runpytest("--spec", "SPEC.md", "--steps", "continue")
    res.assert_outcomes(passed=1)
    summary = res.stdout.str().split("dotasks summary")[1]
    assert "STEP 2A is not done either: --steps all runs it" in summary, summary


def test_kiro_sub_tasks_and_a_plain_task_keep_their_file_order(pytester: pytest.Pytester) -> None:
    write(pytester, ".kiro/specs/demo/tasks.md", """\
# Implementation Plan

- [ ] 1. Prepare
  - [ ] 1.1 Make the folder
    - run: mkdir -p out
  - [ ] 1.2 Write a file
    - run: echo x > out/x.txt
- [ ] 2. Count it
  - run: wc -c out/x.txt
- [ ] 3. Finish
  - [ ] 3.1 Tidy
    - run: true
""")
    res = pytester.runpytest(".kiro/specs/demo/tasks.md")
    res.assert_outcomes(passed=4)
    shown = [ln.split(":")[0] for ln in summary_lines(res.stdout.str())]
    assert shown == ["✓ STEP 1.1", "✓ STEP 1.2", "✓ STEP 2", "✓ STEP 3.1"], res.stdout.str()

