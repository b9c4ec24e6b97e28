"""--steps: which steps a run selects (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.selection import Selection, continue_point, parse_steps, select
from pytest_dotasks.plan.specmd import parse_text


def _spec(done: set[int], n: int = 10):  # type: ignore[no-untyped-def]
    lines = [f"- [{'x' if i in done else ' '}] **STEP {i}**: step {i}" for i in range(1, n + 1)]
    return parse_text("\n".join(lines) + "\n", Path("SPEC.md")).steps


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("8", {8}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("1-5,8", {1, 2, 3, 4, 5, 8}),
        (" 1 - 3 , 8 ,10-10", {1, 2, 3, 8, 10}),
        ("3,3,2-4", {2, 3, 4}),
        ("12", {12}),
    ],
)
def test_numbers(text: str, numbers: set[int]) -> None:
    sel = parse_steps(text)
    assert sel == Selection("numbers", frozenset(numbers))
    assert sel.explicit()


@pytest.mark.parametrize("text", ["all", "ALL", " all ", "", None])
def test_all_is_the_default(text: str | None) -> None:
    sel = parse_steps(text)
    assert sel.mode == "all" and not sel.explicit()


@pytest.mark.parametrize("text", ["continue", "Continue", " CONTINUE "])
def test_continue(text: str) -> None:
    assert parse_steps(text).mode == "continue"


@pytest.mark.parametrize("text", ["abc", "1-", "-3", "1..5", "1-5;8", "8,", "1,,2", "step8", "1-2-3", "2.5", "0", "0-3",
                                  "all,3", "contin"])
def test_bad_values_are_one_line_settings_errors_with_a_fix(text: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps(text)
    err = info.value
    assert err.fix and "--steps" in err.fix
    assert "\n" not in str(err)
    assert "--steps" in err.message


def test_reversed_range_suggests_the_right_order() -> None:
    with pytest.raises(SettingsError) as info:
        parse_steps("5-1")
    assert "5-1" in info.value.message and info.value.fix == "write --steps 1-5"
    assert "\n" not in str(info.value)


def test_select_numbers_keeps_file_order_and_done_steps() -> None:
    steps = _spec(done={2})
    got = select(steps, parse_steps("8,1-3,99"))
    assert [s.number for s in got] == [1, 2, 3, 8]  # done step 2 stays: it skips at setup


def test_select_all() -> None:
    steps = _spec(done={1, 2})
    assert [s.number for s in select(steps, parse_steps("all"))] == list(range(1, 11))


def test_continue_selects_the_steps_after_the_last_completed_one() -> None:
    steps = _spec(done={1, 2, 3, 5})
    assert continue_point(steps) == 5
    assert [s.number for s in select(steps, parse_steps("continue"))] == [6, 7, 8, 9, 10]


def test_continue_with_nothing_done_selects_everything() -> None:
    steps = _spec(done=set())
    assert continue_point(steps) is None
    assert [s.number for s in select(steps, parse_steps("continue"))] == list(range(1, 11))


def test_continue_with_everything_done_selects_nothing() -> None:
    steps = _spec(done=set(range(1, 11)))
    assert select(steps, parse_steps("continue")) == []


def test_continue_follows_file_order_not_numbers() -> None:
    text = "- [ ] **STEP 3**: c\n- [x] **STEP 1**: a\n- [ ] **STEP 2**: b\n"
    steps = parse_text(text, Path("SPEC.md")).steps
    assert continue_point(steps) == 1
    assert [s.number for s in select(steps, parse_steps("continue"))] == [2]


def test_continue_counts_failed_and_running_as_not_completed() -> None:
    text = ("- [x] **STEP 1**: a\n"
            "- [ ] **STEP 2**: b ✗ Failed [task_id: task_2_00000000] [2026-01-01T00:00:00]\n"
            "- [ ] **STEP 3**: c ⏳ Running [task_id: task_3_00000000] [2026-01-01T00:00:00]\n")
    steps = parse_text(text, Path("SPEC.md")).steps
    assert continue_point(steps) == 1
    assert [s.number for s in select(steps, parse_steps("continue"))] == [2, 3]
