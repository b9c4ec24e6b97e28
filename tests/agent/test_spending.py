"""Spending limits (--max-cost, --max-run-cost), the run's shared ledger and the user's price table:
the real anthropic SDK against the local stub, the stub's scripted usage priced by the table."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_dotasks.agent.launch import open_session
from pytest_dotasks.agent.pricing import PricesError, builtin_prices, load_prices
from pytest_dotasks.agent.spending import RunLedger, SpendLimits, run_id
from pytest_dotasks.errors import BodyFailed
from pytest_dotasks.settings import resolve
from tests.agent.helpers import DONE, agent_project, events
from tests.paths import REPO
from tests.stubs.anthropic_stub import AnthropicStub, tool_use
from tests.stubs.steps import make_ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


def dollars(amount: float) -> dict[str, int]:
    """Usage that costs ``amount`` USD on the agent's model (claude-sonnet-5-5: $15 per million output tokens),
    far below the token budget."""
    return {"input_tokens": 0, "output_tokens": round(amount / 15 * 1_000_000)}


# ------------------------------------------------------------ per step

def test_max_cost_stops_the_step_before_the_request_after_the_limit_is_reached(
        root: Path, anthropic_stub: AnthropicStub) -> None:
    (anthropic_stub
     .reply(tool_use("Bash", {"command": "echo one"}), usage=dollars(3))
     .reply("Now the file.", tool_use("Write", {"file_path": "late.py", "content": "x = 1\n"}), usage=dollars(3))
     .reply(DONE))
    ctx = make_ctx(root, [("retries", "2")], cli={"max_cost": 5.0})
    session = open_session(ctx)
    with pytest.raises(BodyFailed) as info:
        session.run()
    msg = info.value.one_line()
    assert ("STEP 1: stopped before its next request to the model: the step has spent $6.0000, reaching its "
            "limit --max-cost $5.00; last words: Now the file. [task_1_0badc0de]") in msg, msg
    assert "raise --max-cost (or dotasks_max_cost in the ini)" in msg
    assert len(anthropic_stub.message_requests) == 2  # the third was never sent
    assert not (root / "late.py").exists()  # the reply's tool call was not run either
    assert ctx.properties["cost_usd"] == pytest.approx(6.0)
    end = events(root, "agent_end")[-1]
    assert end["outcome"] == "cost" and end["ok"] is False
    assert anthropic_stub.violations == []


def test_under_the_limit_the_step_runs_as_before(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.reply(tool_use("Bash", {"command": "echo one"}), usage=dollars(3)).reply(DONE, usage=dollars(1.9))
    result = open_session(make_ctx(root, cli={"max_cost": 5.0})).run()
    assert result.ok and len(anthropic_stub.message_requests) == 2
    assert result.properties["cost_usd"] == pytest.approx(4.9, abs=1e-4)


def test_a_limit_from_the_ini_is_named_as_the_ini_option(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.reply(tool_use("Bash", {"command": "echo one"}), usage=dollars(2)).reply(DONE)
    ctx = dataclasses.replace(make_ctx(root), settings=resolve({}, {"max_cost": "$1.50"}, root))
    with pytest.raises(BodyFailed, match=r"reaching its limit dotasks_max_cost \$1\.50"):
        open_session(ctx).run()
    assert len(anthropic_stub.message_requests) == 1


@pytest.mark.parametrize("value", ["0", "-1", "lots", "nan"])
def test_a_limit_must_be_an_amount_above_zero(root: Path, value: str) -> None:
    with pytest.raises(Exception, match=r"invalid value .* for --max-cost from ini option dotasks_max_cost"):
        resolve({}, {"max_cost": value}, root)


# ------------------------------------------------------------ per run

def test_the_run_limit_spans_the_steps_of_a_run(root: Path, anthropic_stub: AnthropicStub) -> None:
    anthropic_stub.reply(DONE, usage=dollars(3)).reply(DONE, usage=dollars(3))
    first = make_ctx(root, cli={"max_run_cost": 3.0}, task_id="task_1_aaaaaaaa")
    first.extra["run_id"] = "run-one"
    assert open_session(first).run().ok  # its only reply reached the limit: no request was left to refuse
    second = make_ctx(root, cli={"max_run_cost": 3.0}, task_id="task_2_bbbbbbbb", number=2)
    second.extra["run_id"] = "run-one"
    with pytest.raises(BodyFailed) as info:
        open_session(second).run()
    assert ("the run has spent $3.0000 (all steps and workers), reaching its limit --max-run-cost $3.00"
            in str(info.value))
    assert len(anthropic_stub.message_requests) == 1  # the second step sent nothing
    ledger = root / ".dotasks" / "spend" / "run-one.jsonl"
    assert [json.loads(x) for x in ledger.read_text().splitlines()] == [
        {"task_id": "task_1_aaaaaaaa", "cost_usd": 3.0}]
    # another run starts from nothing
    other = make_ctx(root, cli={"max_run_cost": 3.0}, task_id="task_2_cccccccc", number=2)
    other.extra["run_id"] = "run-two"
    assert open_session(other).run().ok


def test_the_run_id_comes_from_the_face_else_xdist_else_the_process(root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(root)
    monkeypatch.delenv("PYTEST_XDIST_TESTRUNUID", raising=False)
    own = run_id(ctx)
    assert own == run_id(make_ctx(root)) and len(own) == 32
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "xdist-run")
    assert run_id(ctx) == "xdist-run"
    ctx.extra["run_id"] = "given"
    assert run_id(ctx) == "given"
    assert SpendLimits(make_ctx(root)).ledger is None  # no run limit: no ledger written


def test_processes_appending_at_once_lose_no_line(tmp_path: Path) -> None:
    ledger = tmp_path / ".dotasks" / "spend" / "run.jsonl"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from pathlib import Path\n"
            "from pytest_dotasks.agent.spending import RunLedger\n"
            f"ledger = RunLedger(Path({str(ledger)!r}))\n"
            "for i in range(300):\n"
            "    ledger.add(f'task_{sys.argv[1]}_{i:08d}', 0.001)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1200 and all(json.loads(x)["cost_usd"] == 0.001 for x in lines)
    assert RunLedger(ledger).total() == pytest.approx(1.2)


def test_a_torn_line_is_skipped_and_old_ledgers_are_removed(tmp_path: Path) -> None:
    spend = tmp_path / ".dotasks" / "spend"
    spend.mkdir(parents=True)
    old = spend / "old.jsonl"
    old.write_text('{"task_id": "t", "cost_usd": 1}\n')
    import os

    os.utime(old, (1, 1))
    ledger = RunLedger.for_run(tmp_path, "new")
    ledger.add("task_1_00000000", 0.5)
    ledger.path.write_text(ledger.path.read_text() + '{"task_id": "task_2_0')  # another process, mid-write
    assert ledger.total() == pytest.approx(0.5)
    assert not old.exists()


# ------------------------------------------------------------ the price table

def test_a_price_file_replaces_and_adds_families(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"families": {
        "claude-sonnet-5": {"input": 10, "output": 50, "cache_write": 12.5, "cache_read": 1, "max_output": 64000},
        "claude-opus-4": {"input": 6, "output": 30, "cache_write": 7.5, "cache_read": 0.6, "max_output": 32000}}}))
    table = load_prices(path)
    assert table.family("claude-sonnet-5-5").input == 10 and table.family("claude-sonnet-5-5").max_output == 64000
    assert table.family("claude-opus-4-5").input == 6  # replaced
    assert table.family("claude-haiku-4-5") == builtin_prices().family("claude-haiku-4-5")  # kept
    assert table.default == builtin_prices().default and table.source == str(path)


@pytest.mark.parametrize("content, words", [
    ('{"families": {"x": {"input": 1}}}', "'x' needs input, output, cache_write, cache_read"),
    ('{"families": {"x": ', "not valid JSON"),
    ('["a list"]', "not a price table"),
    ('{"families": {"x": {"input": -1, "output": 1, "cache_write": 1, "cache_read": 1, "max_output": 9}}}',
     "negative price"),
])
def test_a_bad_price_file_is_one_line_naming_it(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PricesError) as info:
        load_prices(path)
    text = info.value.one_line()
    assert str(path) in text and words in text and "\n" not in text
    with pytest.raises(PricesError, match="price table not found"):
        load_prices(tmp_path / "missing.json")


def test_the_session_prices_turns_and_sizes_requests_from_the_users_table(
        root: Path, anthropic_stub: AnthropicStub) -> None:
    (root / "prices.json").write_text(json.dumps({"families": {
        "claude-sonnet-5": {"input": 30, "output": 150, "cache_write": 37.5, "cache_read": 3, "max_output": 1234}}}))
    anthropic_stub.reply(DONE, usage={"input_tokens": 100_000, "output_tokens": 0})
    ctx = dataclasses.replace(make_ctx(root), settings=resolve({}, {"prices": "prices.json"}, root))
    result = open_session(ctx).run()
    assert result.properties["cost_usd"] == pytest.approx(3.0)  # $30 per million, not the built-in $3
    assert anthropic_stub.message_requests[0].body["max_tokens"] == 1234
    (root / "prices.json").write_text("{oops")
    with pytest.raises(BodyFailed, match=r"prices.json:1: the price table is not valid JSON"):
        open_session(ctx)
