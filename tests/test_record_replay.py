"""--record and --replay end to end: the real anthropic SDK (and the real Claude Code CLI) against the
local Messages stub on 127.0.0.1 while recording, and against nothing at all while replaying: no key, and
ANTHROPIC_BASE_URL pointing at a port where nothing listens, so any call that escaped would fail."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent import test_claude_code
from tests.agent.helpers import SUCCESS, greeting, junit, log, write_executor
from tests.agent.test_claude_code import CC
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, Reply, text, tool_use

pytest_plugins = ["pytester"]
claude_cli, cc = test_claude_code.claude_cli, test_claude_code.cc  # the real CLI, an empty HOME, nothing let out

PLAN = greeting()
Turns = dict[int, list[dict[str, Any]]]


def responder(turns: Turns, final: dict[int, str] | None = None) -> Callable[[dict[str, Any]], Reply]:
    """Replies by step and turn, whatever order the steps' requests come in (xdist): step N's agent makes
    the tool calls ``turns[N]`` one a turn, then says ``final[N]`` (default: success)."""
    def respond(body: dict[str, Any]) -> Reply:
        found = re.search(r"Execute STEP (\d+)", json.dumps(body["messages"][0]))
        n = int(found.group(1)) if found else 0
        done = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        calls = turns.get(n, [])
        if done < len(calls):
            return Reply([calls[done]])
        return Reply([text((final or {}).get(n, SUCCESS))])

    return respond


def script(stub: AnthropicStub, turns: Turns, final: dict[int, str] | None = None) -> None:
    for _ in range(40):
        stub.then(responder(turns, final))


def project(where: Path, plan: str = PLAN) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "SPEC.md").write_text(plan)
    write_executor(where)
    return where


def copy_for_ci(laptop: Path, ci: Path, plan: str) -> Path:
    """The repository as CI checks it out: plan, agents and cassettes; nothing the laptop's run made."""
    shutil.copytree(laptop, ci, ignore=shutil.ignore_patterns(".dotasks", ".task_execution.log", "*.xml", "*.py",
                                                              "data", "scripts"))
    (ci / "SPEC.md").write_text(plan)
    return ci


def reset(root: Path, plan: str) -> None:
    """The plan as it was before the run (and no run state, which would restore the run's markers)."""
    (root / "SPEC.md").write_text(plan)
    shutil.rmtree(root / ".dotasks", ignore_errors=True)


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key and no API: what CI without secrets looks like."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")


def marks(spec: Path) -> list[str]:
    """Each step line's checkbox and status, task ids and times left out: what 'same marks' compares."""
    out = []
    for line in spec.read_text().splitlines():
        m = re.match(r"\s*- \[( |x)\] \*\*STEP (\d+)\*\*.*?( ✓| ✗ Failed| ⏳ Running)?(?: \[|$)", line)
        if m:
            out.append(f"{m.group(2)}:[{m.group(1)}]{m.group(3) or ''}")
    return out


# ------------------------------------------------------------ record once, replay offline

def test_a_recorded_step_replays_offline_in_another_folder(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    laptop = project(pytester.path / "laptop")
    anthropic_stub.reply(tool_use("Write", {"file_path": str(laptop / "hello.py"), "content": "print('hi')\n"}))
    anthropic_stub.reply(text(f"Wrote {laptop}/hello.py; it prints hi (key {API_KEY}).\nSTEP RESULT: SUCCESS"))
    res = pytester.runpytest("--spec", "laptop/SPEC.md", "--record", "--junitxml=laptop.xml", "-v")
    res.assert_outcomes(passed=1)
    assert anthropic_stub.violations == []
    cassette = laptop / "cassettes" / "SPEC" / "step1.jsonl"
    recorded = cassette.read_text()
    assert API_KEY not in recorded and str(laptop) not in recorded
    assert junit(pytester.path / "laptop.xml")["step1"]["recorded"] == "true"
    res.stdout.fnmatch_lines(["*CASSETTE] 2 exchanges recorded for laptop/cassettes/SPEC/step1.jsonl*"])

    ci = copy_for_ci(laptop, pytester.path / "ci", PLAN)
    offline(monkeypatch)
    seen = len(anthropic_stub.requests)
    res = pytester.runpytest("--spec", "ci/SPEC.md", "--replay", "--junitxml=ci.xml", "-v")
    res.assert_outcomes(passed=1)
    assert len(anthropic_stub.requests) == seen  # nothing reached any API
    assert (ci / "hello.py").read_text() == "print('hi')\n"  # the tool ran for real, in this folder
    assert marks(ci / "SPEC.md") == marks(laptop / "SPEC.md") == ["1:[x] ✓"]
    props = junit(pytester.path / "ci.xml")["step1"]
    assert props["replayed"] == "true" and props["cassette"] == "ci/cassettes/SPEC/step1.jsonl"
    assert props["task_id"] != junit(pytester.path / "laptop.xml")["step1"]["task_id"]
    res.stdout.fnmatch_lines(["*✓ cassette: ci/cassettes/SPEC/step1.jsonl: 2 recorded exchanges*",
                              f"*Wrote {ci}/hello.py; it prints hi (key ***)*"])
    assert cassette.read_text() == recorded and (ci / "cassettes/SPEC/step1.jsonl").read_text() == recorded


RETRY_PLAN = greeting(extra="  - retries: 1\n- [ ] **STEP 2**: Find the missing data\n  - needs: none\n")


def test_retries_and_failures_replay_the_same(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path, RETRY_PLAN)
    # Attempt 1 writes a script the validation rejects; the failure goes back and attempt 2 fixes it.
    (anthropic_stub
     .reply(tool_use("Write", {"file_path": "hello.py", "content": "print('bye')\n"})).reply(text(SUCCESS))
     .reply(tool_use("Edit", {"file_path": "hello.py", "old_string": "bye", "new_string": "hi"})).reply(text(SUCCESS))
     .reply(text("There is no data.\nSTEP RESULT: FAILURE: data/raw.csv does not exist")))
    res = pytester.runpytest("--spec", "SPEC.md", "--record")
    res.assert_outcomes(passed=1, failed=1)
    recorded_marks = marks(pytester.path / "SPEC.md")
    assert recorded_marks == ["1:[x] ✓", "2:[ ] ✗ Failed"]
    lines = [json.loads(x) for x in (pytester.path / "cassettes/SPEC/step1.jsonl").read_text().splitlines()]
    assert [x["n"] for x in lines if x["type"] == "request"] == [1, 2, 3, 4]  # the retry's requests too

    (pytester.path / "hello.py").unlink()
    reset(pytester.path, RETRY_PLAN)
    offline(monkeypatch)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay", "--junitxml=out.xml")
    res.assert_outcomes(passed=1, failed=1)
    assert marks(pytester.path / "SPEC.md") == recorded_marks
    res.stdout.fnmatch_lines(["*declared FAILURE: data/raw.csv does not exist*"])
    assert all(p["replayed"] == "true" for p in junit(pytester.path / "out.xml").values())
    assert sum(1 for e in log(pytester.path) if e.get("event") == "retry") == 2  # once while recording, once replaying


# ------------------------------------------------------------ a replay that no longer matches

def test_a_changed_step_fails_its_replay_naming_the_first_difference(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path)
    anthropic_stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"})).reply(text(SUCCESS))
    pytester.runpytest("--spec", "SPEC.md", "--record").assert_outcomes(passed=1)
    offline(monkeypatch)
    changed = PLAN.replace("prints a greeting", "prints a friendly greeting")
    reset(pytester.path, changed)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert re.search(r"STEP 1 replay: request 1 \(POST /v1/messages\) differs from cassettes/SPEC/step1\.jsonl: "
                     r"the step's prompt, line 5: recorded \.\.\.\"[^\"]*prints a greeting", out), out
    assert "record it again with --record, or replay with --replay=lenient" in out and "Traceback" not in out
    assert marks(pytester.path / "SPEC.md") == ["1:[ ] ✗ Failed"]
    assert any(e.get("event") == "replay_mismatch" for e in log(pytester.path))

    reset(pytester.path, changed)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay=lenient")
    res.assert_outcomes(passed=1, warnings=1)
    res.stdout.fnmatch_lines(["*STEP 1 replay (lenient): request 1 (POST /v1/messages) differs from*"])


# ------------------------------------------------------------ no cassette

def test_no_cassette_folder_is_one_usage_error_before_anything_runs(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path)
    offline(monkeypatch)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "--replay: the cassette folder cassettes/SPEC does not exist (step 1 would replay from it)" in err, err
    assert (pytester.path / "SPEC.md").read_text() == PLAN and not (pytester.path / ".dotasks").exists()


def test_a_missing_cassette_fails_preflight_or_is_recorded_with_record_missing(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path)
    (pytester.path / "cassettes" / "SPEC").mkdir(parents=True)
    with monkeypatch.context() as m:
        offline(m)
        res = pytester.runpytest("--spec", "SPEC.md", "--replay")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*STEP 1 pre-flight failed: cassette*",
                              ("*✗ cassette: cassettes/SPEC/step1.jsonl: no cassette for this step; record it with "
                               "--record, or run with --record-missing*")])
    assert anthropic_stub.requests == []

    reset(pytester.path, PLAN)
    anthropic_stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"})).reply(text(SUCCESS))
    res = pytester.runpytest("--spec", "SPEC.md", "--replay", "--record-missing", "--junitxml=out.xml")
    res.assert_outcomes(passed=1)
    assert len(anthropic_stub.message_requests) == 2 and junit(pytester.path / "out.xml")["step1"]["recorded"] == "true"
    offline(monkeypatch)
    reset(pytester.path, PLAN)
    pytester.runpytest("--spec", "SPEC.md", "--replay").assert_outcomes(passed=1)


def test_option_mistakes_are_usage_errors(pytester: pytest.Pytester) -> None:
    project(pytester.path)
    for args, says in ((["--record", "--replay"], "--record and --replay exclude each other"),
                       (["--record-missing"], "--record-missing works with --replay"),
                       (["--replay=sometimes"], "invalid value 'sometimes' for --replay")):
        res = pytester.runpytest("--spec", "SPEC.md", *args)
        assert res.ret == pytest.ExitCode.USAGE_ERROR and says in res.stderr.str(), res.stderr.str()


def test_ini_twins_and_a_dry_run(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path / "plan")
    pytester.makeini("[pytest]\ndotasks_spec = plan/SPEC.md\ndotasks_cassettes = recorded\n")
    help_text = pytester.runpytest("--help").stdout.str()
    for flag in ("--record ", "--replay=[MODE]", "--record-missing", "--cassettes=DIR"):
        assert flag in help_text, flag
    pytester.runpytest("--record", "--dry-run").assert_outcomes(skipped=1)
    assert not (pytester.path / "recorded").exists() and anthropic_stub.message_requests == []  # --dry-run: nothing
    anthropic_stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"})).reply(text(SUCCESS))
    pytester.runpytest("--record").assert_outcomes(passed=1)
    assert (pytester.path / "recorded" / "SPEC" / "step1.jsonl").is_file()  # relative to the ini file's folder
    reset(pytester.path / "plan", PLAN)
    offline(monkeypatch)
    pytester.makeini("[pytest]\ndotasks_spec = plan/SPEC.md\ndotasks_cassettes = recorded\ndotasks_replay = lenient\n")
    res = pytester.runpytest("--junitxml=out.xml")
    res.assert_outcomes(passed=1)
    assert junit(pytester.path / "out.xml")["step1"]["replayed"] == "true"


# ------------------------------------------------------------ bad cassettes: one line each, nothing marked done

def test_damaged_or_foreign_cassettes_fail_preflight_in_one_line(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path)
    anthropic_stub.reply(tool_use("Write", {"file_path": "hello.py", "content": "print('hi')\n"})).reply(text(SUCCESS))
    pytester.runpytest("--spec", "SPEC.md", "--record").assert_outcomes(passed=1)
    path = pytester.path / "cassettes" / "SPEC" / "step1.jsonl"
    good = path.read_text()
    lines = good.splitlines(keepends=True)
    foreign = lines[0].replace('"Make the greeting"', '"Train the student"').replace('"SPEC.md"', '"OTHER.md"')
    cases = {
        "truncated": ("".join(lines[:7]) + lines[7][:25],
                      "step1.jsonl:8: cassette is cut short: its last line is incomplete; record it again with --record"),
        "hand-edited": ("".join(lines[:5] + lines[6:]),
                        ("step1.jsonl:6: cassette reply 1 has a content_block_delta for block 0 that never started; "
                        "it was edited by hand")),
        "another plan": (foreign + "".join(lines[1:]),
                         ('step1.jsonl: cassette was recorded for STEP 1 "Train the student" of OTHER.md, not for '
                         'STEP 1 "Make the greeting"')),
    }
    offline(monkeypatch)
    for name, (content, says) in cases.items():
        path.write_text(content)
        reset(pytester.path, PLAN)
        res = pytester.runpytest("--spec", "SPEC.md", "--replay")
        res.assert_outcomes(errors=1)
        # (Before pytest's short summary, which repeats the message in full when CI is set.)
        report = res.stdout.str().split("short test summary info")[0]
        shown = [ln for ln in report.splitlines() if "✗ cassette:" in ln]
        assert len(shown) == 1 and says in shown[0], (name, res.stdout.str())
        assert "Traceback" not in res.stdout.str()
        assert "✓" not in (pytester.path / "SPEC.md").read_text()  # never marked done on a bad cassette
    assert not (pytester.path / "hello.py").exists() or (pytester.path / "hello.py").read_text() == "print('hi')\n"


# ------------------------------------------------------------ with xdist, probes, and the Claude Code CLI

XDIST_PLAN = "".join(f"""\
- [ ] **STEP {n}**: Make file {n}
  Write out{n}.txt.
  - needs: none
  - outputs: out{n}.txt
""" for n in (1, 2, 3))


def test_each_xdist_worker_records_and_replays_its_own_steps(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path, XDIST_PLAN)
    script(anthropic_stub, {n: [tool_use("Write", {"file_path": f"out{n}.txt", "content": f"{n}\n"})]
                            for n in (1, 2, 3)})
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--record", "-n", "2", timeout=300)
    res.assert_outcomes(passed=3)
    assert sorted(p.name for p in (pytester.path / "cassettes" / "SPEC").iterdir()) == \
        ["step1.jsonl", "step2.jsonl", "step3.jsonl"]
    for n in (1, 2, 3):
        (pytester.path / f"out{n}.txt").unlink()
    reset(pytester.path, XDIST_PLAN)
    offline(monkeypatch)
    seen = len(anthropic_stub.requests)
    res = pytester.runpytest_subprocess("--spec", "SPEC.md", "--replay", "-n", "2", "--junitxml=out.xml", timeout=300)
    res.assert_outcomes(passed=3)
    assert len(anthropic_stub.requests) == seen
    assert [(pytester.path / f"out{n}.txt").read_text() for n in (1, 2, 3)] == ["1\n", "2\n", "3\n"]
    assert {p["replayed"] for p in junit(pytester.path / "out.xml").values()} == {"true"}


PROBE_PLAN = """\
- [ ] **STEP 1**: Ask the judge
  Write verdict.txt.
  - env: ANTHROPIC_API_KEY
  - check: anthropic
  - outputs: verdict.txt
"""


def test_a_check_anthropic_probe_is_recorded_and_replayed(pytester: pytest.Pytester, anthropic_stub: AnthropicStub,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester.path, PROBE_PLAN)
    script(anthropic_stub, {1: [tool_use("Write", {"file_path": "verdict.txt", "content": "fine\n"})]})
    pytester.runpytest("--spec", "SPEC.md", "--record").assert_outcomes(passed=1)
    routes = [(x["method"], x["path"]) for x in map(json.loads, (pytester.path / "cassettes/SPEC/step1.jsonl")
                                                    .read_text().splitlines()) if x["type"] == "request"]
    assert routes == [("GET", "/v1/models"), ("POST", "/v1/messages"), ("POST", "/v1/messages")]
    (pytester.path / "verdict.txt").unlink()
    reset(pytester.path, PROBE_PLAN)
    offline(monkeypatch)
    res = pytester.runpytest("--spec", "SPEC.md", "--replay", "-v")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*✓ $ANTHROPIC_API_KEY*", "*✓ anthropic reachable*"])


def test_a_claude_code_cassette_replays_through_the_real_cli(cc: CC, monkeypatch: pytest.MonkeyPatch) -> None:
    cc.stub.reply(tool_use("Bash", {"command": "printf 'print(\"hi\")\\n' > hello.py && python3 hello.py",
                                    "description": "write and try it"}))
    cc.stub.reply(text(SUCCESS))
    cc.run(PLAN, "--record").assert_outcomes(passed=1)
    assert cc.stub.violations == [] and cc.proxy.requests == []
    assert cc.properties()["recorded"] == "true"
    (cc.root / "hello.py").unlink()
    shutil.rmtree(cc.root / ".dotasks")
    offline(monkeypatch)
    seen = len(cc.stub.requests)
    res = cc.run(PLAN, "--replay", "-v")
    res.assert_outcomes(passed=1)
    assert len(cc.stub.requests) == seen and cc.proxy.requests == []  # nothing left the machine
    assert (cc.root / "hello.py").read_text() == 'print("hi")\n'  # the CLI's Bash ran for real
    assert cc.properties()["replayed"] == "true"


# ------------------------------------------------------------ fidelity: the Tinker plan's agent steps

TINKER = Path(__file__).resolve().parents[1] / "pytest_dotasks" / "templates" / "tinker"


def rows(path: str, n: int, row: str) -> dict[str, Any]:
    """A Bash call writing ``n`` JSON lines (``row``: a Python expression of ``i``)."""
    code = f"import json; open('{path}', 'w').write(''.join(json.dumps({row}) + chr(10) for i in range({n})))"
    return tool_use("Bash", {"command": f'python3 -c "{code}"'})


def tinker_turns() -> Turns:
    """What the agent does for STEPS 3-7 of the Tinker plan; STEP 7 lets a system message leak (its check fails)."""
    schema = {"columns": ["character", "dialogue"], "characters": ["Beethoven", "Mozart"]}
    voice = "Ludwig van Beethoven, composer of Vienna, " * 80
    prompt = (f"VOICE = {voice!r}\n\ndef get_character_prompt(name):\n    return VOICE\n\n"
              "CATEGORIES = ['music', 'life', 'vienna', 'deafness', 'rivals']\n")
    teacher = ("{'question': f'q{i}', 'category': 'music', 'system_prompt': 'You are Beethoven.', "
               "'teacher_response': f'I composed {i} sonatas.', 'prompt_tokens': 450}")
    student = ("{'messages': [{'role': 'system', 'content': 'You are Beethoven.'}, {'role': 'user', 'content': 'q'}, "
               "{'role': 'assistant', 'content': 'a'}]}")
    return {
        3: [tool_use("Write", {"file_path": "scripts/01_explore_dataset.py", "content": "print('explore')\n"}),
            tool_use("Write", {"file_path": "data/dataset_schema.json", "content": json.dumps(schema)})],
        4: [tool_use("Write", {"file_path": "scripts/02_extract_character.py", "content": "print('extract')\n"}),
            rows("data/beethoven_source.jsonl", 600, "{'speaker': 'Beethoven', 'text': f'line {i}'}"),
            tool_use("Write", {"file_path": "data/character_stats.json",
                               "content": json.dumps({"rows": 600, "empty_fields": 0})})],
        5: [tool_use("Write", {"file_path": "character_prompts.py", "content": prompt})],
        6: [tool_use("Write", {"file_path": "scripts/03_generate_teacher_data.py", "content": "print('gen')\n"}),
            tool_use("Write", {"file_path": "data_generation_config.yaml", "content": "samples: 5000\n"}),
            rows("data/questions.jsonl", 5000, "{'question': f'q{i}'}"),
            rows("data/teacher_test.jsonl", 10, teacher)],
        7: [tool_use("Write", {"file_path": "scripts/04_prepare_student_data.py", "content": "print('prep')\n"}),
            rows("data/student_test.jsonl", 10, student)],
    }


def tinker_plan(where: Path) -> str:
    """The Tinker plan with STEPS 1 and 2 done (their outputs present): STEPS 3-7 are agent steps ready to run."""
    shutil.copytree(TINKER, where)
    plan = (where / "SPEC.md").read_text()
    for n in (1, 2):
        plan = re.sub(rf"- \[ \] (\*\*STEP {n}\*\*:.*)", rf"- [x] \1 ✓ [task_id: task_{n}_0badc0de] [2026-11-24T10:00:00]",
                      plan, count=1)
    (where / "SPEC.md").write_text(plan)
    (where / "requirements.txt").write_text("tinker\ndatasets\ntransformers\npyyaml\nanthropic\ntqdm\n")
    (where / "tinker_models.txt").write_text("meta-llama/Llama-3.2-1B\nQwen/Qwen3-8B\n")
    return plan


def test_the_tinker_plans_agent_steps_replay_with_the_same_outcomes_and_marks(
        pytester: pytest.Pytester, anthropic_stub: AnthropicStub, tinker_stub: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tinker  # noqa: F401 - imported once here: pytester's in-process runs would import it afresh each time

    laptop = pytester.path / "laptop"
    plan = tinker_plan(laptop)
    script(anthropic_stub, tinker_turns())
    res = pytester.runpytest("--spec", "laptop/SPEC.md", "--steps", "3-7", "--record", "--junitxml=laptop.xml")
    res.assert_outcomes(passed=4, failed=1)
    assert anthropic_stub.violations == []
    recorded = marks(laptop / "SPEC.md")
    assert recorded[2:7] == ["3:[x] ✓", "4:[x] ✓", "5:[x] ✓", "6:[x] ✓", "7:[ ] ✗ Failed"]
    assert sorted(p.name for p in (laptop / "cassettes" / "SPEC").iterdir()) == [f"step{n}.jsonl" for n in range(3, 8)]

    ci = copy_for_ci(laptop, pytester.path / "ci", plan)  # Tinker (check: tinker) is not recorded: its stub stays
    offline(monkeypatch)
    seen = len(anthropic_stub.requests)
    res = pytester.runpytest("--spec", "ci/SPEC.md", "--steps", "3-7", "--replay", "--junitxml=ci.xml")
    res.assert_outcomes(passed=4, failed=1)
    assert len(anthropic_stub.requests) == seen
    assert marks(ci / "SPEC.md") == recorded
    res.stdout.fnmatch_lines(["*STEP 7 post-validation failed*", "*a system message leaked*"])
    before, after = junit(pytester.path / "laptop.xml"), junit(pytester.path / "ci.xml")
    assert {name: p["replayed"] for name, p in after.items()} == {f"step{n}": "true" for n in range(3, 8)}
    same = ("input_tokens", "output_tokens", "turns", "failed_phase", "metric.empty_fields")
    for name in after:  # the same work, measured the same way
        assert {k: after[name].get(k) for k in same} == {k: before[name].get(k) for k in same}, name
