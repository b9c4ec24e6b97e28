"""What every backend shares: usage, the transcript, last words, the one-prompt form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_dotasks.agent import session
from pytest_dotasks.agent.session import Transcript, Usage, combined_prompt, one_line, plan_for
from tests.agent.helpers import agent_project
from tests.stubs.steps import make_ctx


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return agent_project(tmp_path)


def test_usage_counts_every_token_and_prices_the_turn() -> None:
    u = Usage()
    turn = u.add("claude-haiku-4-5", {"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 2000,
                                      "cache_creation_input_tokens": 400})
    assert turn["cost_usd"] == pytest.approx((1000 * 1.0 + 100 * 5.0 + 2000 * 0.10 + 400 * 1.25) / 1e6)
    assert (u.total, u.turns) == (3500, 1)
    assert u.properties("a", "m")["cache_write_tokens"] == 400


def test_one_line_keeps_the_last_words_without_the_result_line() -> None:
    assert one_line("first\n\nsecond\nthird\nSTEP RESULT: SUCCESS") == "second third"
    assert one_line("") == "(no words)"
    assert one_line("x" * 500, limit=20) == "..." + "x" * 17


def test_transcript_lines_are_scrubbed_json(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t" / "a.jsonl", lambda s: s.replace("secret", "***"))
    t.write("request", text="the secret")
    line = json.loads((tmp_path / "t" / "a.jsonl").read_text())
    assert (line["type"], line["text"]) == ("request", "the ***") and "ts" in line


def test_combined_prompt_appends_each_failure(root: Path) -> None:
    plan = plan_for(make_ctx(root))
    text = combined_prompt(plan, ["it broke", "still broken"])
    assert text.startswith(plan.system) and plan.user in text
    assert "(attempt 2)" in text and "it broke" in text and "(attempt 3)" in text


def test_the_agents_commands_run_without_its_credentials(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BETA_API_KEY",
                 "TINKER_API_KEY", "DB_URL"):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    env = session.tool_environment(make_ctx(root))
    assert not {"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BETA_API_KEY"} & set(env)
    assert env["TINKER_API_KEY"] == "value-of-tinker_api_key" and env["DB_URL"] == "value-of-db_url"
    assert env["DOTASKS_TASK_ID"] == "task_1_0badc0de"
    named = session.tool_environment(make_ctx(root, [("env", "ANTHROPIC_API_KEY, TINKER_API_KEY")]))
    assert named["ANTHROPIC_API_KEY"] == "value-of-anthropic_api_key" and "ANTHROPIC_AUTH_TOKEN" not in named
    assert set(session.api_key_values()) >= {"value-of-anthropic_api_key", "value-of-claude_code_oauth_token"}


def test_a_transcript_line_with_a_lone_surrogate_stays_valid_json(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "a.jsonl", lambda s: s)
    t.write("tool_result", input={"file_path": "a\ud800"}, content="ok ✓")
    line = json.loads((tmp_path / "a.jsonl").read_text(encoding="utf-8"))
    assert line["input"]["file_path"] == "a\ud800" and line["content"] == "ok ✓"
