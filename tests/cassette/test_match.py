"""What a replayed request must match, after normalising what may differ between runs and machines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytest_dotasks.cassette.match import (
    PLACE_HOME,
    PLACE_ROOT,
    PLACE_TASK,
    PLACE_TIME,
    PLACE_VOLATILE,
    Normalizer,
    essentials,
    first_difference,
    folder_name,
)


def body(prompt: str = "Execute STEP 1", system: str = "You are the executor.", model: str = "claude-haiku-4-5",
         roles: tuple[str, ...] = ("user",), tools: tuple[str, ...] = ("Bash", "Read")) -> dict[str, Any]:
    messages: list[dict[str, object]] = [{"role": roles[0], "content": prompt}]
    messages += [{"role": r, "content": [{"type": "text", "text": f"turn {i}"}]} for i, r in enumerate(roles[1:])]
    return {
        "model": model, "max_tokens": 100, "system": [{"type": "text", "text": system}], "messages": messages,
        "tools": [{"name": t, "description": f"the {t} tool", "input_schema": {"type": "object", "properties": {}}}
                  for t in tools],
    }


def test_the_project_path_task_ids_times_and_home_are_normalised(tmp_path: Path) -> None:
    root = tmp_path / "my_proj"
    root.mkdir()
    home = tmp_path / "home"
    n = Normalizer([str(root)], [str(home)])
    assert n.text(f"Project root: {root}. Work there.") == f"Project root: {PLACE_ROOT}. Work there."
    assert n.text(f"{home}/.claude/projects/{folder_name(str(root))}/memory/") == \
        f"{PLACE_HOME}/.claude/projects/{PLACE_ROOT}/memory/"
    assert n.text("task id: task_8_3fa2b8c1, also task_T001_0badc0de") == f"task id: {PLACE_TASK}, also {PLACE_TASK}"
    assert n.text("at 2026-11-24T10:30:12 and 2026/11/24, 2026-11-24 10:30") == \
        f"at {PLACE_TIME} and {PLACE_TIME}, {PLACE_TIME}"
    assert n.text("x-anthropic-billing-header: cc_version=2.1.332.fb8; cc_entrypoint=sdk-py;") == \
        f"x-anthropic-billing-header: {PLACE_VOLATILE}"
    # What is not volatile stays: a version number, a longer hex word, an ordinary path.
    assert n.text("pytest 9.2.0 task_8_3fa2b8c1ff /usr/bin/python3") == "pytest 9.2.0 task_8_3fa2b8c1ff /usr/bin/python3"


def test_a_linked_project_path_is_normalised_in_both_forms(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    n = Normalizer([str(link)])
    assert n.text(f"{link}/a and {os.path.realpath(link)}/b") == f"{PLACE_ROOT}/a and {PLACE_ROOT}/b"


def test_the_prompt_leaves_out_claude_codes_system_reminders() -> None:
    reminder = {"type": "text", "text": "<system-reminder>\n - Platform: linux\n - OS Version: Linux 6\n</system-reminder>"}
    b = body()
    b["messages"] = [{"role": "user", "content": [reminder, {"type": "text", "text": "Execute STEP 1"}]}]
    assert essentials(b)["prompt"] == "Execute STEP 1"
    assert essentials(b)["roles"] == ["user"]


def test_what_matters_is_compared_and_the_rest_is_not() -> None:
    rec = essentials(body())
    assert first_difference(rec, essentials(body())) is None
    other = body()
    other["max_tokens"] = 5  # not what matters
    other["messages"][0]["content"] = [{"type": "text", "text": "Execute STEP 1"}]  # same text, other shape
    assert first_difference(rec, essentials(other)) is None


def test_the_first_difference_is_named_in_one_line() -> None:
    rec = essentials(body(roles=("user", "assistant", "user")))
    assert first_difference(rec, essentials(body(model="claude-opus-4-1", roles=("user",)))) == \
        "model: recorded 'claude-haiku-4-5', now 'claude-opus-4-1'"
    assert first_difference(rec, essentials(body(roles=("user",)))) == "messages: recorded 3, now 1"
    assert first_difference(rec, essentials(body(roles=("user", "user", "user")))) == \
        "messages[1] role: recorded 'assistant', now 'user'"
    live = essentials(body(prompt="Execute STEP 1", system="You are the executor.\nBe brief.",
                           roles=("user", "assistant", "user")))
    assert first_difference(rec, live) == \
        'system prompt, line 1: recorded ..."ou are the executor.", now ..."ou are the executor.\\nBe brief."'
    live = essentials(body(prompt="Execute STEP 2", roles=("user", "assistant", "user")))
    diff = first_difference(rec, live)
    assert diff is not None and diff.startswith("the step's prompt, line 1: recorded") and "STEP 2" in diff
    assert first_difference(rec, essentials(body(roles=("user", "assistant", "user"), tools=("Bash",)))) == \
        "tools: recorded Bash, Read; now Bash"
    changed = body(roles=("user", "assistant", "user"))
    changed["tools"][1]["input_schema"]["properties"] = {"file_path": {"type": "string"}}
    assert first_difference(rec, essentials(changed)) == "tools: Read's input schema differs at input_schema.properties.file_path"


def test_a_long_text_difference_shows_only_a_little_of_each_side() -> None:
    a = "line\n" * 50 + "x" * 200 + "A" + "y" * 200
    b = "line\n" * 50 + "x" * 200 + "B" + "y" * 200
    diff = first_difference(essentials(body(system=a)), essentials(body(system=b)))
    assert diff is not None and "line 51" in diff and len(diff) < 200
