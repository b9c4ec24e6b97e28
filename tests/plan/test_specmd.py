"""SPEC.md grammar (DESIGN.md section 1), proven on the pure parser: no pytest run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.fields import config_of, configs, validate_spec
from pytest_dotasks.plan.model import FIELD_NAMES, STATUS_DONE, STATUS_FAILED, STATUS_RUNNING, STATUS_TODO
from pytest_dotasks.plan.specmd import header_lines, iter_markers, parse_file, parse_text
from tests.paths import FIXTURES

CHARACTER = FIXTURES / "character-plan.md"
SIMPLE = FIXTURES / "simple-plan.md"
from tests.paths import SEED

P = Path("SPEC.md")


def parse(text: str, dedent: bool = True):  # type: ignore[no-untyped-def]
    return parse_text(textwrap.dedent(text) if dedent else text, P)


def numbers(spec) -> list[int]:  # type: ignore[no-untyped-def]
    return [s.number for s in spec.steps]


def spec_error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    return info.value


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "label",
    ["**STEP 3**:", "**Step 3**:", "**step 3**:", "**sTeP 3**:", "**STEP 3:**", "** STEP 3 **:", "**STEP  3**:"],
)
def test_label_forms_any_case(label: str) -> None:
    spec = parse(f"- [ ] {label} Do the thing\n")
    assert numbers(spec) == [3]
    assert spec.steps[0].title == "Do the thing"
    assert spec.steps[0].name == "step3"


@pytest.mark.parametrize("bullet", ["-", "*", "+"])
def test_every_bullet_character(bullet: str) -> None:
    spec = parse(f"{bullet} [ ] **STEP 1**: One\n{bullet} [x] **STEP 2**: Two\n")
    assert numbers(spec) == [1, 2]
    assert [s.marker.status for s in spec.steps] == [STATUS_TODO, STATUS_DONE]


def test_mixed_bullets_and_indented_list() -> None:
    spec = parse("- [ ] **STEP 1**: a\n* [ ] **STEP 2**: b\n+ [X] **STEP 3**: c\n\n- Group\n  - [ ] **STEP 4**: d\n")
    assert numbers(spec) == [1, 2, 3, 4]
    assert spec.steps[2].done


@pytest.mark.parametrize(
    "line",
    [
        "- [ ] STEP 1: no bold label",
        "- **STEP 1**: no checkbox",
        "- [ ] **STEP one**: not a number",
        "- [ ] **STEPS 1**: plural",
        "1. [ ] **STEP 1**: ordered list item",
        "[ ] **STEP 1**: not a list item",
        "- [ ] **Steps 1-2:** a range (completion checklist)",
        "- [ ] Run **STEP 1**: label not first",
        "# STEP 1: a heading alone",
    ],
)
def test_not_a_step(line: str) -> None:
    spec = parse("- [ ] **STEP 9**: the one step\n\n" + line + "\n")
    assert numbers(spec) == [9]


def test_step_number_zero_is_an_error() -> None:
    err = spec_error("- [ ] **STEP 0**: nothing\n")
    assert err.line == 1 and "start at 1" in err.message


def test_step_numbers_need_not_be_contiguous_and_keep_file_order() -> None:
    spec = parse("- [ ] **STEP 10**: ten\n- [ ] **STEP 2**: two\n- [ ] **STEP 7**: seven\n")
    assert numbers(spec) == [10, 2, 7]
    assert list(spec.by_number()) == [10, 2, 7]
    # default needs: the previous step in the file
    cfgs = configs(spec)
    assert cfgs[10].needs == () and cfgs[2].needs == (10,) and cfgs[7].needs == (2,)


# --------------------------------------------------------------------------- title, line, description


def test_title_is_rest_of_line_without_marker() -> None:
    spec = parse(
        "- [x] **STEP 8**:   Generate Full Training Dataset - Run teacher  "
        "✓ [task_id: task_8_3fa2b8c1] [2026-11-24T10:30:12]  \n"
    )
    s = spec.steps[0]
    assert s.title == "Generate Full Training Dataset - Run teacher"
    assert s.line == 1 and s.location == "SPEC.md:1"
    assert s.marker.task_id == "task_8_3fa2b8c1"


def test_description_verbatim() -> None:
    text = (
        "# Plan\n"
        "\n"
        "- [ ] **STEP 1**: Write the generator\n"
        "  Use the teacher model to write *5000* dialogues\n"
        "  with `character_prompts.py`.\n"
        "\n"
        "  - Remember: keep the temperature at 0.8\n"
        "  - a plain bullet\n"
        "  - [ ] a nested checkbox\n"
        "\n"
        "  ```python\n"
        "  print('hello')\n"
        "      indented()\n"
        "  ```\n"
        "  - outputs: data/train.jsonl\n"
        "\n"
        "Trailing paragraph outside the list.\n"
    )
    s = parse(text, dedent=False).steps[0]
    assert s.description == (
        "Use the teacher model to write *5000* dialogues\n"
        "with `character_prompts.py`.\n"
        "\n"
        "- Remember: keep the temperature at 0.8\n"
        "- a plain bullet\n"
        "- [ ] a nested checkbox\n"
        "\n"
        "```python\n"
        "print('hello')\n"
        "    indented()\n"
        "```"
    )
    assert [(f.key, f.value, f.line) for f in s.fields] == [("outputs", "data/train.jsonl", 15)]
    assert "Trailing paragraph" not in s.description


def test_step_without_body_has_empty_description() -> None:
    spec = parse("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n")
    assert [s.description for s in spec.steps] == ["", ""]
    assert [s.fields for s in spec.steps] == [(), ()]


def test_design_example_parses() -> None:
    spec = parse(
        """\
        ## Phase 2: Data

        - [ ] **STEP 3**: Prompts
        - [ ] **STEP 7**: Sampler
        - [ ] **STEP 8**: Generate Full Training Dataset
          Use the teacher model to write 5000 in-character dialogues with character_prompts.py.
          - needs: 3, 7
          - inputs: character_prompts.py, config.yaml
          - requires: anthropic, tinker
          - env: ANTHROPIC_API_KEY
          - outputs: data/train.jsonl
          - validate: python scripts/check_jsonl.py data/train.jsonl --min 5000
          - kind: data
          - timeout: 2h
        """
    )
    s = spec.by_number()[8]
    assert s.phase == "Phase 2: Data"
    assert s.description == "Use the teacher model to write 5000 in-character dialogues with character_prompts.py."
    assert s.items("needs") == ["3", "7"]
    cfg = configs(spec)[8]
    assert cfg.needs == (3, 7)
    assert cfg.inputs == ("character_prompts.py", "config.yaml")
    assert cfg.requires == ("anthropic", "tinker")
    assert cfg.env == ("ANTHROPIC_API_KEY",)
    assert [o.pattern for o in cfg.outputs] == ["data/train.jsonl"]
    assert [v.command for v in cfg.validate] == ["python scripts/check_jsonl.py data/train.jsonl --min 5000"]
    assert cfg.kind == "data" and cfg.timeout == 7200 and cfg.background is False


# --------------------------------------------------------------------------- fields

ALL_FIELDS = """\
- [ ] **STEP 1**: Root
- [ ] **STEP 2**: Everything
  - needs: 1
  - requires: yaml, os.path
  - env: HOME_DIR, API_KEY
  - inputs: a.txt, data/*.csv
  - check: tinker
  - run: make all
  - agent: tinker-executor
  - skills: tinker-api, writing
  - model: sonnet
  - retries: 2
  - background: yes
  - monitor: logs/loss.txt every 30s
  - alert: nan, diverged
  - outputs: out.txt
  - validate: test -s out.txt
  - metrics: accuracy >= 0.9
  - timeout: 15m
  - kind: training
"""


def test_every_field_name_is_read() -> None:
    spec = parse(ALL_FIELDS)
    s = spec.by_number()[2]
    assert [f.key for f in s.fields] == list(FIELD_NAMES)
    assert [f.line for f in s.fields] == list(range(3, 3 + len(FIELD_NAMES)))
    assert s.description == ""
    cfg = configs(spec)[2]
    assert cfg.needs == (1,)
    assert cfg.requires == ("yaml", "os.path")
    assert cfg.env == ("HOME_DIR", "API_KEY")
    assert cfg.inputs == ("a.txt", "data/*.csv")
    assert [c.command for c in cfg.checks] == ["tinker"]
    assert cfg.run == "make all"
    assert cfg.agent == "tinker-executor" and cfg.model == "sonnet"
    assert cfg.skills == ("tinker-api", "writing")
    assert cfg.retries == 2 and cfg.background is True
    assert cfg.monitor == "logs/loss.txt" and cfg.monitor_every == 30
    assert cfg.alert == ("nan", "diverged")
    assert [o.pattern for o in cfg.outputs] == ["out.txt"]
    assert [v.command for v in cfg.validate] == ["test -s out.txt"]
    assert [(t.name, t.op, t.value) for t in cfg.thresholds] == [("accuracy", ">=", 0.9)]
    assert cfg.timeout == 900 and cfg.kind == "training"


def test_field_defaults() -> None:
    cfg = configs(parse("- [ ] **STEP 1**: a\n"))[1]
    assert cfg.needs == () and cfg.retries == 0 and cfg.background is False and cfg.timeout is None
    assert cfg.kind is None and cfg.run is None and cfg.outputs == () and cfg.validate == ()
    assert cfg.alert == ("nan", "error", "failed", "Traceback")


def test_training_kind_defaults_to_background_unless_said_otherwise() -> None:
    spec = parse("- [ ] **STEP 1**: a\n  - kind: training\n- [ ] **STEP 2**: b\n  - kind: training\n  - background: no\n")
    cfgs = configs(spec)
    assert cfgs[1].background is True and cfgs[2].background is False


def test_repeatable_check_and_validate_keep_every_value_in_order() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: a
          - check: tinker
          - validate: test -s a.txt
          - check: anthropic
          - validate: python check.py a.txt (advisory)
          - validate: `grep -q ok a.txt`
        """
    )
    s = spec.steps[0]
    assert s.values("check") == ["tinker", "anthropic"]
    assert s.values("validate") == ["test -s a.txt", "python check.py a.txt (advisory)", "grep -q ok a.txt"]
    cfg = configs(spec)[1]
    assert [(c.command, c.severity, c.line) for c in cfg.validate] == [
        ("test -s a.txt", "critical", 3), ("python check.py a.txt", "advisory", 5), ("grep -q ok a.txt", "critical", 6),
    ]
    assert [c.command for c in cfg.checks] == ["tinker", "anthropic"]


def test_list_values_split_on_commas() -> None:
    spec = parse("- [ ] **STEP 1**: a\n  - inputs: a.txt ,b.txt,  c/*.json ,\n  - inputs: d.txt\n")
    assert spec.steps[0].items("inputs") == ["a.txt", "b.txt", "c/*.json", "d.txt"]
    assert configs(spec)[1].inputs == ("a.txt", "b.txt", "c/*.json", "d.txt")


def test_needs_none_and_step_prefix() -> None:
    spec = parse(
        "- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n  - needs: none\n- [ ] **STEP 3**: c\n  - needs: Step 1, step2\n"
    )
    cfgs = configs(spec)
    assert cfgs[2].needs == () and cfgs[3].needs == (1, 2)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("`data/train.jsonl`", "data/train.jsonl"),
        ("`` uses `ticks` ``", "uses `ticks`"),
        ("`a` and `b`", "`a` and `b`"),
        ("plain value", "plain value"),
        ("  spaced   ", "spaced"),
    ],
)
def test_backtick_wrapped_values(raw: str, value: str) -> None:
    spec = parse(f"- [ ] **STEP 1**: a\n  - run: {raw}\n", dedent=False)
    assert spec.steps[0].value("run") == value


def test_field_value_wrapped_over_lines_is_an_error() -> None:
    """A field's value is one line (DESIGN.md section 1): a wrapped value is not joined."""
    err = spec_error("- [ ] **STEP 1**: a\n  - validate: python check.py\n    --strict data.jsonl\n")
    assert err.line == 2 and "continues onto line 3" in err.message and "'--strict data.jsonl'" in err.message
    assert err.fix and "one line" in err.fix


def test_field_keys_are_lowercase_and_only_direct_sub_bullets() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: a
          - Example of a config for users:
            - timeout: forever
          1. run: an ordered item is prose
          - outputs: out.txt
        """
    )
    s = spec.steps[0]
    assert [(f.key, f.value) for f in s.fields] == [("outputs", "out.txt")]
    assert "timeout: forever" in s.description and "1. run: an ordered item is prose" in s.description


def test_field_bullets_outside_any_step_are_ignored() -> None:
    spec = parse("- timeout: forever\n- kind: bogus\n\n- [ ] **STEP 1**: a\n")
    assert spec.steps[0].fields == ()


# --------------------------------------------------------------------------- phase


def test_phase_is_nearest_heading_above() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: before any heading

        # Plan title

        - [ ] **STEP 2**: under the title

        ## Phase 1: Setup

        Some prose.

        - [ ] **STEP 3**: setup

        ### Sub part

        - [ ] **STEP 4**: sub

        Phase 2 — Data
        --------------

        - [ ] **STEP 5**: setext heading
        """
    )
    assert [s.phase for s in spec.steps] == [None, "Plan title", "Phase 1: Setup", "Sub part", "Phase 2 — Data"]


def test_detail_headings_are_not_phases() -> None:
    spec = parse("## Phase A\n\n## STEP 1: Detail first\n\n- [ ] **STEP 1**: a\n")
    assert spec.steps[0].phase == "Phase A"


# --------------------------------------------------------------------------- not steps


def test_steps_in_fences_comments_and_quotes_are_not_steps() -> None:
    spec = parse(
        """\
        # Plan

        ```markdown
        - [ ] **STEP 1**: in a backtick fence
        ```

        ~~~
        - [ ] **STEP 2**: in a tilde fence
        ~~~

            - [ ] **STEP 3**: in an indented code block

        <!--
        - [ ] **STEP 4**: in an HTML comment

        - [ ] **STEP 5**: still in it after a blank line
        -->

        <!-- - [ ] **STEP 6**: one-line comment -->

        > - [ ] **STEP 7**: in a block quote
        >
        > > - [x] **STEP 8**: nested quote

        > Lazy quote
        - [ ] **STEP 9**: but this is a new list: a real step

        - [ ] **STEP 1**: the real step one
        """
    )
    assert numbers(spec) == [9, 1]
    assert spec.steps[1].title == "the real step one"
    assert spec.warnings == ()  # examples in code, comments and quotes are never "lost steps"


def test_detail_headings_in_quotes_and_fences_are_not_detail_sections() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: a

        > ## STEP 1: quoted detail
        > quoted text

        ```
        ## STEP 1: fenced detail
        ```
        """
    )
    assert spec.steps[0].detail_line is None
    assert spec.steps[0].description == ""


def test_nested_checkboxes_stay_description() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: parent
          - [ ] **STEP 2**: a nested step-like line
          - [x] plain nested checkbox
        - [ ] **STEP 3**: next
        """
    )
    assert numbers(spec) == [1, 3]
    assert spec.steps[0].description == "- [ ] **STEP 2**: a nested step-like line\n- [x] plain nested checkbox"
    assert header_lines(parse_text_raw("- [ ] **STEP 1**: p\n  - [ ] **STEP 1**: nested dup\n")) == {1: 0}


def parse_text_raw(text: str) -> str:
    parse_text(text, P)  # must not raise: the nested duplicate is description
    return text


# --------------------------------------------------------------------------- duplicates


def test_duplicate_number_names_both_lines() -> None:
    err = spec_error("# Plan\n\n- [ ] **STEP 4**: first\n- [ ] **STEP 5**: x\n- [x] **Step 4**: second\n")
    assert err.line == 5 and err.path == P
    assert "lines 3 and 5" in err.message and "STEP 4" in err.message
    assert err.fix and str(err).startswith("SPEC.md:5:")


def test_duplicate_across_lists_and_sections() -> None:
    err = spec_error("## A\n- [ ] **STEP 2**: one\n\n## B\n\n* [ ] **STEP 2**: two\n")
    assert "lines 2 and 6" in err.message


def test_two_part_heading_with_two_checklist_lines_is_the_duplicate_error() -> None:
    err = spec_error(
        """\
        - [ ] **STEP 1**: a
        - [ ] **STEP 1**: again

        ## STEP 1: a
        details
        """
    )
    assert "lines 1 and 2" in err.message


# --------------------------------------------------------------------------- two-part layout

TWO_PART = """\
# Plan

## QUICK TASK LIST

- [x] **STEP 1**: Setup - keys and env ✓ [2025-11-13]
- [ ] **STEP 2**: Generate - 5000 questions
- [ ] **STEP 3**: Train - no detail section for this one

---

## FULL SPECIFICATION

## STEP 1: Setup

**What to Accomplish:**
Get the keys.

**Instructions:**
1. Visit the console
2. Export: the key
3. run: not a field, an instruction

---

### Step 2 - Generate

- needs: 1
- outputs: `data/q.jsonl`
- validate: test -s data/q.jsonl
- Remember: this bullet is prose

**What to Accomplish:**
Write the questions.

#### Sub heading inside the section
More detail for step 2.
  - nested: bullets stay prose
    - timeout: forever

### STEP 9: Detail with no checklist line
- timeout: forever

## Appendix
Not part of any step.
"""


def test_two_part_layout() -> None:
    spec = parse(TWO_PART)
    assert numbers(spec) == [1, 2, 3]
    s1, s2, s3 = spec.steps
    assert s1.line == 5 and s1.detail_line == 13 and s1.done and s1.title == "Setup - keys and env"
    assert s1.description == (
        "**What to Accomplish:**\nGet the keys.\n\n**Instructions:**\n1. Visit the console\n"
        "2. Export: the key\n3. run: not a field, an instruction"
    )
    assert s1.fields == ()
    assert s1.phase == "QUICK TASK LIST"
    assert s2.detail_line == 25
    assert [(f.key, f.value, f.line) for f in s2.fields] == [
        ("needs", "1", 27), ("outputs", "data/q.jsonl", 28), ("validate", "test -s data/q.jsonl", 29),
    ]
    assert s2.description.startswith("- Remember: this bullet is prose\n\n**What to Accomplish:**\nWrite the questions.")
    assert "#### Sub heading inside the section\nMore detail for step 2." in s2.description
    assert "- timeout: forever" in s2.description
    assert "STEP 9" not in s2.description and "Appendix" not in s2.description
    # checklist line without a detail section is fine
    assert s3.detail_line is None and s3.description == ""
    # detail section without a checklist line is ignored (its malformed field too)
    assert 9 not in spec.by_number()


def test_detail_text_joins_checklist_body() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: a
          Short note in the checklist.
          - kind: quick

        ## STEP 1: a
        Long explanation.
        - timeout: 5m
        """
    )
    s = spec.steps[0]
    assert s.description == "Short note in the checklist.\n\nLong explanation."
    assert [(f.key, f.line) for f in s.fields] == [("kind", 3), ("timeout", 7)]


@pytest.mark.parametrize("heading", ["## STEP 2: Title", "# step 2", "###### Step 2. Title", "### **Step 2**: Title",
                                     "## STEP 2 — Title", "## Step 2 - Title", "## STEP 2: 5000 dialogues",
                                     "## Step 2 - 3 things", "## Step 2. 10 rows"])
def test_detail_heading_any_level_any_case(heading: str) -> None:
    spec = parse(f"- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n\n{heading}\nthe detail\n")
    assert spec.by_number()[2].description == "the detail"
    assert spec.by_number()[1].description == ""


@pytest.mark.parametrize("heading", ["## Step 1-2: Setup", "## Step 1.2 Sub task", "## Steps 1", "## STEP 1 is next"])
def test_headings_that_are_not_one_steps_section(heading: str) -> None:
    spec = parse(f"- [ ] **STEP 1**: a\n\n{heading}\ntext\n")
    assert spec.steps[0].detail_line is None and spec.steps[0].description == ""


def test_detail_heading_right_above_its_checklist_line() -> None:
    """Per-step sections holding their own checklist line: nothing counted twice."""
    spec = parse(
        """\
        ## STEP 1: Setup

        - [ ] **STEP 1**: Setup
          - outputs: a.txt

        Prose for step one.

        ## STEP 2: Next
        - [ ] **STEP 2**: Next
          - needs: 1
        - validate: test -s b.txt
        """
    )
    s1, s2 = spec.steps
    assert [(f.key, f.value) for f in s1.fields] == [("outputs", "a.txt")]
    assert s1.description == "Prose for step one."
    assert [(f.key, f.value) for f in s2.fields] == [("needs", "1"), ("validate", "test -s b.txt")]
    assert "**STEP 2**" not in s2.description


def test_two_detail_sections_for_one_step_is_an_error() -> None:
    err = spec_error("- [ ] **STEP 1**: a\n\n## STEP 1: a\nx\n\n## STEP 1: again\ny\n")
    assert "lines 3 and 6" in err.message and err.fix


def test_detail_only_plan_has_no_steps() -> None:
    assert parse("## STEP 1: Setup\n- run: make\n").steps == ()


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("bullet", "resembles"),
    [("requries: yaml", "requires"), ("output: out.txt", "outputs"), ("input: a.txt", "inputs"),
     ("timout: 5m", "timeout"), ("validte: make test", "validate"), ("retry: 2", "retries"),
     ("depends_on: 3", "needs"), ("need: 3", "needs"), ("validation: make test", "validate")],
)
def test_misspelt_field_warns_never_errors(bullet: str, resembles: str) -> None:
    spec = parse(f"- [ ] **STEP 1**: a\n  - {bullet}\n")
    s = spec.steps[0]
    assert s.fields == ()
    assert s.description == f"- {bullet}"
    assert len(spec.warnings) == 1
    w = spec.warnings[0]
    assert w.startswith("SPEC.md:2:") and f"'{resembles}:'" in w and f"'{bullet.split(':')[0]}:'" in w


def test_capitalised_field_warns() -> None:
    spec = parse("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n  - Needs: 1\n  - Timeout: forever\n")
    s = spec.steps[1]
    assert s.fields == ()
    assert len(spec.warnings) == 2
    assert "'Needs:'" in spec.warnings[0] and "'needs:'" in spec.warnings[0] and "SPEC.md:3" in spec.warnings[0]


def test_misspelt_field_in_detail_section_warns() -> None:
    spec = parse("- [ ] **STEP 1**: a\n\n## STEP 1: a\n- output: x.txt\n")
    assert len(spec.warnings) == 1 and "SPEC.md:4:" in spec.warnings[0] and "'outputs:'" in spec.warnings[0]


def test_ordinary_word_bullets_do_not_warn() -> None:
    spec = parse("- [ ] **STEP 1**: a\n  - Note: be careful\n  - Files: a.py\n  - Goal: done\n  - URL: http://x\n")
    assert spec.warnings == ()
    assert spec.steps[0].fields == ()


# --------------------------------------------------------------------------- malformed values


BAD_VALUES = [
    ("timeout: forever", "timeout", "90s"),
    ("timeout: 0s", "timeout", "90s"),
    ("kind: bogus", "kind", "quick"),
    ("background: maybe", "background", "background: yes"),
    ("retries: -1", "retries", "retries: 2"),
    ("retries: x", "retries", "retries: 2"),
    ("needs: abc", "needs", "needs: 3, 7"),
    ("needs: 1, two", "needs", "needs: 3, 7"),
    ("needs: 9", "not in the plan", "needs:"),
    ("needs: 2", "needs itself", "needs:"),
    ("metrics: x >>= 3", "metrics", "consistency >= 0.9"),
    ("metrics: accuracy = 0.9", "metrics", "consistency >= 0.9"),
    ("monitor: a b c", "monitor", "every 60s"),
    ("monitor: log.txt every never", "monitor", "every 60s"),
    ("requires: not-a-module", "requires", "anthropic"),
    ("env: 1BAD", "env", "ANTHROPIC_API_KEY"),
    ("outputs: data.jsonl >= lots", "outputs", ">= 5000"),
    ("outputs:", "no value", "outputs: <value>"),
    ("validate: ``", "no value", "validate: <value>"),
]


@pytest.mark.parametrize(("bullet", "in_message", "in_fix"), BAD_VALUES)
def test_malformed_value_is_spec_error_with_file_line_and_fix(bullet: str, in_message: str, in_fix: str) -> None:
    text = f"# Plan\n\n- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n  Some prose.\n  - inputs: a.txt\n  - {bullet}\n"
    with pytest.raises(SpecError) as info:
        parse_text(text, P)
    err = info.value
    assert err.path == P and err.line == 7
    assert in_message in err.message and "STEP 2" in err.message
    assert err.fix and in_fix in err.fix
    assert str(err).startswith("SPEC.md:7: ")
    assert "\n" not in str(err)


def test_malformed_value_in_detail_section_points_at_its_line() -> None:
    err = spec_error("- [ ] **STEP 1**: a\n\n## STEP 1: a\ntext\n- timeout: forever\n")
    assert err.line == 5 and "timeout" in err.message


def test_needs_cycle_is_spec_error_naming_steps() -> None:
    err = spec_error(
        """\
        - [ ] **STEP 1**: a
          - needs: 3
        - [ ] **STEP 2**: b
          - needs: 1
        - [ ] **STEP 3**: c
          - needs: 2
        """
    )
    assert "cycle" in err.message
    for n in (1, 2, 3):
        assert f"STEP {n}" in err.message
    assert err.line in (2, 4, 6)  # a 'needs:' line of the cycle, not a header
    assert err.fix and "needs" in err.fix


def test_cycle_through_default_needs() -> None:
    err = spec_error("- [ ] **STEP 1**: a\n  - needs: 2\n- [ ] **STEP 2**: b\n")
    assert "cycle" in err.message and err.line in (2, 3)


def test_needs_bullets_add_up_and_errors_point_at_the_right_one() -> None:
    spec = parse("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n- [ ] **STEP 3**: c\n  - needs: 1\n\n## STEP 3: c\n- needs: 2, 1\n")
    assert configs(spec)[3].needs == (1, 2)
    err = spec_error("- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n  - needs: 1\n  - needs: 7\n")
    assert err.line == 4 and "STEP 7" in err.message


@pytest.mark.parametrize("key_values", [("kind", "data", "training"), ("timeout", "5m", "1h"), ("run", "make", "make test"),
                                        ("retries", "1", "2")])
def test_single_value_field_given_twice_is_an_error(key_values: tuple[str, str, str]) -> None:
    key, one, two = key_values
    err = spec_error(f"- [ ] **STEP 1**: a\n  - {key}: {one}\n\n## STEP 1: a\n- {key}: {two}\n")
    assert err.line == 5 and "twice" in err.message and "lines 2 and 5" in err.message and err.fix


def test_valid_dag_passes() -> None:
    spec = parse(
        "- [ ] **STEP 1**: a\n  - needs: none\n- [ ] **STEP 2**: b\n  - needs: none\n"
        "- [ ] **STEP 3**: c\n  - needs: 1, 2\n- [ ] **STEP 4**: d\n  - needs: 1, 3\n"
    )
    assert validate_spec(spec)[4].needs == (1, 3)
    assert config_of(spec.steps[0]).needs == ()


def test_metrics_sources_and_thresholds() -> None:
    spec = parse(
        """\
        - [ ] **STEP 1**: a
          - metrics: reports/metrics.json
          - metrics: consistency >= 0.85, loss < 1.2 (advisory)
          - metrics: python eval.py --json
          - outputs: data/train.jsonl >= 5000 records, data/val.jsonl>=500
          - outputs: logs/*.txt (advisory)
        """
    )
    cfg = configs(spec)[1]
    assert [m.command for m in cfg.metric_sources] == ["reports/metrics.json", "python eval.py --json"]
    assert [(t.name, t.op, t.value, t.severity) for t in cfg.thresholds] == [
        ("consistency", ">=", 0.85, "advisory"), ("loss", "<", 1.2, "advisory"),
    ]
    assert cfg.thresholds[0].holds(0.9) and not cfg.thresholds[0].holds(0.8)
    assert [(o.pattern, o.min_records, o.severity) for o in cfg.outputs] == [
        ("data/train.jsonl", 5000, "critical"), ("data/val.jsonl", 500, "critical"), ("logs/*.txt", None, "advisory"),
    ]


# --------------------------------------------------------------------------- encodings and line endings

ENCODING_PLAN = (
    "# Plan ✨\n"
    "\n"
    "- [ ] **STEP 1**: Préparer les données — 数据 🚀\n"
    "  Café au lait, naïve résumé.\n"
    "  - outputs: données/train.jsonl\n"
    "- [x] **STEP 2**: Train ✓ [task_id: task_2_aaaaaaaa] [2026-01-01T00:00:00]\n"
    "\n"
    "## STEP 2: Train\n"
    "Détails.\n"
)


def _summary(spec):  # type: ignore[no-untyped-def]
    return [(s.number, s.title, s.description, [(f.key, f.value, f.line) for f in s.fields], s.phase, s.line,
             s.detail_line, s.marker) for s in spec.steps]


def test_crlf_parses_like_lf() -> None:
    lf = parse_text(ENCODING_PLAN, P)
    crlf = parse_text(ENCODING_PLAN.replace("\n", "\r\n"), P)
    cr = parse_text(ENCODING_PLAN.replace("\n", "\r"), P)
    assert _summary(crlf) == _summary(lf) == _summary(cr)
    assert all("\r" not in s.description for s in crlf.steps)


def test_bom_first_line_step_and_heading(tmp_path: Path) -> None:
    assert numbers(parse_text("\ufeff- [ ] **STEP 1**: a\n- [ ] **STEP 2**: b\n", P)) == [1, 2]
    spec = parse_text("\ufeff" + ENCODING_PLAN, P)
    assert _summary(spec) == _summary(parse_text(ENCODING_PLAN, P))
    assert spec.steps[0].phase == "Plan ✨"
    f = tmp_path / "SPEC.md"
    f.write_bytes(b"\xef\xbb\xbf" + ENCODING_PLAN.replace("\n", "\r\n").encode())
    assert _summary(parse_file(f)) == _summary(parse_text(ENCODING_PLAN, P))


def test_unicode_titles_and_descriptions() -> None:
    s = parse_text(ENCODING_PLAN, P).steps[0]
    assert s.title == "Préparer les données — 数据 🚀"
    assert s.description == "Café au lait, naïve résumé."
    assert s.value("outputs") == "données/train.jsonl"


def test_parse_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_file(tmp_path / "missing.md")
    assert "not found" in info.value.message and info.value.fix
    with pytest.raises(SpecError) as info:
        parse_file(tmp_path)
    assert "folder" in info.value.message
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"# ok\n\n- [ ] **STEP 1**: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        parse_file(bad)
    assert info.value.line == 3 and "UTF-8" in info.value.message and info.value.fix


def test_empty_and_stepless_files() -> None:
    assert parse_text("", P).steps == ()
    assert parse_text("\n\n\r\n", P).steps == ()
    assert parse_text("# Just a README\n\nSome text.\n", P).steps == ()


def test_header_lines_and_iter_markers() -> None:
    text = "# T\n\n- [x] **STEP 1**: a ✓ [task_id: task_1_00000000] [2026-01-01T00:00:00]\n" \
           "  - [ ] **STEP 9**: nested\n- [ ] **STEP 2**: b ✗ Failed [task_id: task_2_11111111] [2026-01-01T00:00:01]\n" \
           "```\n- [ ] **STEP 3**: fenced\n```\n"
    assert header_lines(text) == {1: 2, 2: 4}
    markers = dict(iter_markers(text))
    assert markers[1].status == STATUS_DONE and markers[2].status == STATUS_FAILED
    assert markers[2].task_id == "task_2_11111111"
    assert header_lines("\ufeff" + text) == {1: 2, 2: 4}
    assert header_lines("\ufeff- [ ] **STEP 5**: first line\n") == {5: 0}


# --------------------------------------------------------------------------- fixtures from the field


@pytest.fixture(scope="module")
def seed():  # type: ignore[no-untyped-def]
    if not SEED.exists():
        pytest.skip(f"{SEED} not available")
    return parse_file(SEED)


def test_seed_plan(seed) -> None:  # type: ignore[no-untyped-def]
    assert numbers(seed) == list(range(1, 21))
    assert seed.warnings == ()
    assert {s.number for s in seed.steps if not s.done} == {13, 15, 18, 20}
    assert all(s.marker.status in (STATUS_DONE, STATUS_TODO) for s in seed.steps)
    for n in range(3, 11):
        assert seed.by_number()[n].marker.task_id == "task_3-10_4a70c4a2"
        assert seed.by_number()[n].marker.timestamp == "2025-11-13"
    assert seed.by_number()[11].marker.task_id == "task_11-20_75477e2f"
    assert seed.by_number()[1].marker.task_id is None
    s8 = seed.by_number()[8]
    assert s8.title == "Generate Full Training Dataset - Run teacher generator for 5000 diverse questions"
    assert s8.line == 19 and s8.detail_line == 186
    assert s8.phase == "Task Tracking"
    assert s8.description.startswith("**What to Accomplish:**\nRun teacher generator for 5000 diverse questions")
    assert "5. Estimate cost: ~5000 queries" in s8.description
    assert "STEP 9" not in s8.description and "---" not in s8.description
    s13 = seed.by_number()[13]
    assert s13.title.endswith("(pending data generation)")
    lines = SEED.read_text(encoding="utf-8").splitlines()
    for s in seed.steps:
        assert lines[s.detail_line - 1] == f"## STEP {s.number}: {s.title.split(' - ')[0]}"
        assert "**What to Accomplish:**" in s.description and "**Instructions:**" in s.description
        assert s.fields == ()
    s20 = seed.by_number()[20]
    assert "COMPLETION CHECKLIST" not in s20.description and "Steps 1-2" not in s20.description


def test_seed_defaults_chain_needs(seed) -> None:  # type: ignore[no-untyped-def]
    cfgs = configs(seed)
    assert cfgs[1].needs == () and cfgs[8].needs == (7,)


@pytest.fixture(scope="module")
def character():  # type: ignore[no-untyped-def]
    return parse_file(CHARACTER)


def test_character_plan_steps_and_statuses(character) -> None:  # type: ignore[no-untyped-def]
    assert numbers(character) == list(range(1, 21))
    assert character.warnings == ()
    by = character.by_number()
    assert {n for n, s in by.items() if s.done} == {1, 2, 3, 4, 5, 6, 7, 12, 16}
    assert by[8].marker.status == STATUS_FAILED and by[8].marker.task_id == "task_8_3fa2b8c1"
    assert by[9].marker.status == STATUS_RUNNING and by[9].marker.timestamp == "2026-01-05T11:20:41"
    assert by[3].marker.task_id == "task_3-10_4a70c4a2" and by[3].marker.timestamp == "2025-11-13"
    assert by[3].title == "Collect Lovelace Sources - Gather the Notes on the Analytical Engine and letters"
    # the marker the original command wrote right after the colon
    assert by[4].marker.task_id == "task_4_1a2b3c4d"
    assert by[4].marker.timestamp == "2025-11-13T10:30:00.123456"
    assert by[4].title == "Clean the Corpus - Strip OCR noise, normalise 19th-century spelling"
    assert by[7].title == "Teacher Sampling Script - Call the 70B teacher with the full persona prompt"
    assert by[5].title.startswith("Write the Persona Prompt")
    assert [by[n].phase for n in (1, 6, 13, 20)] == [
        "Phase 1: Groundwork", "Phase 2: Data", "Phase 3: Training", "Phase 4: Evaluation and Release",
    ]


def test_character_plan_details_and_fields(character) -> None:  # type: ignore[no-untyped-def]
    by = character.by_number()
    text = CHARACTER.read_text(encoding="utf-8").splitlines()
    for s in character.steps:
        assert s.detail_line is not None and text[s.detail_line - 1].startswith(f"## STEP {s.number}: ")
        assert "**What to Accomplish:**" in s.description and "**Success Outcome:**" in s.description
    assert "4. run: this numbered line is an instruction, not a field" in by[1].description
    assert by[1].fields == ()
    assert "- [ ] **STEP 7**: Example step shown inside a code fence" in by[2].description
    assert "STEP 21" not in "".join(s.description for s in character.steps)
    cfgs = configs(character)
    assert cfgs[8].needs == (5, 6) and cfgs[8].kind == "data" and cfgs[8].timeout == 7200
    assert [o.pattern for o in cfgs[8].outputs] == ["data/teacher_raw.jsonl"]
    assert cfgs[8].requires == ("tinker",) and cfgs[8].env == ("TINKER_API_KEY",)
    assert len(cfgs[9].validate) == 2 and cfgs[9].kind == "evaluation"
    assert cfgs[10].needs == (9,)
    assert cfgs[13].kind == "training" and cfgs[13].background and cfgs[13].monitor == "logs/train_loss.txt"
    assert cfgs[13].alert == ("nan", "diverged") and cfgs[13].needs == (10, 11, 12)
    assert [(t.name, t.value) for t in cfgs[15].thresholds] == [("persona_consistency", 0.85)]
    assert cfgs[15].timeout == 2700
    # field bullets are not description
    assert "- needs:" not in by[8].description and "- kind:" not in by[13].description


def test_simple_plan() -> None:
    spec = parse_file(SIMPLE)
    assert numbers(spec) == [1, 2, 3, 4] and spec.warnings == ()
    by = spec.by_number()
    assert by[1].description == "Make a venv in `.venv` and install the pinned requirements."
    assert by[2].done and by[2].marker.task_id == "task_2_5e6f7a8b"
    assert [by[n].phase for n in (1, 2, 3, 4)] == ["Setup", "Setup", "Work", "Work"]
    cfgs = configs(spec)
    assert cfgs[1].needs == () and cfgs[2].needs == (1,) and cfgs[4].needs == (2, 3)
    assert cfgs[3].run == "python count.py data/corpus.txt > counts.csv" and cfgs[3].retries == 2
    assert [v.command for v in cfgs[3].validate] == ["test -s counts.csv", "python check_counts.py counts.csv"]
    assert [o.pattern for o in cfgs[2].outputs] == ["data/corpus.txt", "data/corpus.sha256"]
    assert cfgs[4].background is False and len(cfgs[4].thresholds) == 2


@pytest.mark.parametrize("variant", ["crlf", "bom", "bom+crlf"])
def test_fixture_variants_parse_the_same(tmp_path: Path, variant: str) -> None:
    for src in (CHARACTER, SIMPLE):
        data = src.read_bytes()
        if "crlf" in variant:
            data = data.replace(b"\n", b"\r\n")
        if "bom" in variant:
            data = b"\xef\xbb\xbf" + data
        f = tmp_path / src.name
        f.write_bytes(data)
        assert _summary(parse_file(f)) == _summary(parse_file(src))


# --------------------------------------------------------------------------- issue 12: nothing lost

LAZY = """\
- [ ] **STEP 1**: Clean
  - run: rm -rf build
Afterwards the data and models folders must still be there.
- [ ] **STEP 2**: Next
"""


@pytest.mark.parametrize(
    ("text", "continued"),
    [
        (LAZY, 3),  # the brief's example: lazy continuation, prose at column 0
        (LAZY.replace("\nAfterwards", "\n  Afterwards"), 3),  # prose indented like the bullet
        ("- [ ] **STEP 1**: a\n  - run: make\n    all\n", 3),  # a wrapped value
        ("- [ ] **STEP 1**: a\n  - validate:\n    - make test\n", 3),  # values as sub-bullets
        ("- [ ] **STEP 1**: a\n  - outputs: a.txt\n\n    more text, indented into the bullet\n", 4),
        ("- [ ] **STEP 1**: a\n\n## STEP 1: a\n- run: make\n**Files:** a.py\n", 5),  # detail section
    ],
)
def test_a_field_bullet_that_continues_is_an_error_naming_both_lines(text: str, continued: int) -> None:
    err = spec_error(text)
    field_line = next(i for i, ln in enumerate(text.split("\n"), 1) if re.match(r"\s*- (run|validate|outputs):", ln))
    assert err.line == field_line
    assert f"continues onto line {continued}" in err.message and "one line" in err.message
    assert err.fix and "blank line" in err.fix and "one line" in err.fix
    assert "\n" not in str(err)


def test_a_blank_line_before_the_prose_keeps_it_description() -> None:
    spec = parse(LAZY.replace("\nAfterwards", "\n\n  Afterwards"))
    s = spec.steps[0]
    assert s.value("run") == "rm -rf build"
    assert s.description == "Afterwards the data and models folders must still be there."


def test_prose_at_column_zero_after_a_blank_line_ends_the_step() -> None:
    spec = parse(LAZY.replace("\nAfterwards", "\n\nAfterwards"))
    assert spec.steps[0].value("run") == "rm -rf build" and spec.steps[0].description == ""


def test_steps_after_a_ten_level_list_are_collected() -> None:
    """markdown-it's default nesting limit (20) ended the parse inside a 10-level list."""
    lines = ["- [ ] **STEP 1**: deep", *("  " * d + f"- level {d}" for d in range(1, 11))]
    lines += [f"- [ ] **STEP {n}**: s{n}" for n in range(2, 21)]
    spec = parse("\n".join(lines) + "\n")
    assert numbers(spec) == list(range(1, 21))
    assert spec.warnings == ()
    assert "- level 10" in spec.steps[0].description


def test_a_step_past_any_nesting_limit_is_named_in_a_warning() -> None:
    depth = 400
    lines = ["- [ ] **STEP 1**: deep", *("  " * d + "- x" for d in range(1, depth))]
    lines += ["- [ ] **STEP 2**: after", "  - [ ] **STEP 3**: deeper still"]
    spec = parse("\n".join(lines) + "\n")
    if numbers(spec) != [1, 2]:
        hits = [w for w in spec.warnings if w.startswith(f"SPEC.md:{depth + 1}:") and "not read" in w]
        assert hits and "STEP 2" in hits[0] and "flatten" in hits[0], spec.warnings


def test_a_parser_recursion_error_is_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Deep:
        def parse(self, text: str) -> None:
            raise RecursionError

    from pytest_dotasks.plan.formats import blocks

    monkeypatch.setattr(blocks, "markdown", lambda: Deep())
    err = spec_error("- [ ] **STEP 1**: a\n")
    assert "too deeply" in err.message and err.fix and "flatten" in err.fix


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("- [ ] STEP 2: no bold label", "write it as '- [ ] **STEP N**: Title'"),
        ("1. [ ] **STEP 2**: an ordered item", "write it as '- [ ] **STEP N**: Title'"),
        ("- [ ] **STEP 1.5**: a sub-number", "a step id is a whole number"),
        ("- [ ] **STEP -1**: negative", "a step id is a whole number"),
        ("1. [ ] **Step 2A**: ordered, lettered", "an ordered-list item"),
        ("  - [ ] **STEP 2**: indented under step 1", "inside STEP 1's description (line 1)"),
        ("- [ ] **STEP 1234567890**: a ten-digit number", "at most 9 digits"),
    ],
)
def test_a_line_that_looks_like_a_step_but_is_not_one_warns(line: str, why: str) -> None:
    spec = parse("- [ ] **STEP 1**: first\n" + line + "\n", dedent=False)
    assert numbers(spec) == [1]
    hits = [w for w in spec.warnings if w.startswith("SPEC.md:2: ")]
    assert len(hits) == 1 and why in hits[0] and "looks like a step" in hits[0], spec.warnings


@pytest.mark.parametrize(
    "line",
    ["- [ ] **Steps 1-2:** a range (completion checklist)", "- [ ] Step 1.2 a sub-step", "- [ ] stepping stones",
     "- [ ] Run **STEP 1**: label not first", "- [x] plain checkbox"],
)
def test_checkbox_lines_that_are_no_step_do_not_warn(line: str) -> None:
    assert parse("- [ ] **STEP 9**: the one step\n\n" + line + "\n").warnings == ()


def test_a_huge_step_number_never_crashes() -> None:
    digits = "7" * 5000  # int() refuses more than 4300 digits
    spec = parse(f"- [ ] **STEP {digits}**: a\n\n## STEP {digits}: detail\n- [ ] **STEP 1**: b\n")
    assert numbers(spec) == [1]
    assert any(w.startswith("SPEC.md:1:") and "9 digits" in w for w in spec.warnings)
    assert all(len(w) < 400 for w in spec.warnings)


@pytest.mark.parametrize("sym", ["✓", "✗", "⏳"])
def test_a_marker_symbol_inside_a_title_is_title_text(sym: str) -> None:
    spec = parse(f"# Plan\n\n- [ ] **STEP 1**: Fix the {sym} icon\n  - run: true\n")
    assert spec.steps[0].title == f"Fix the {sym} icon"
    assert spec.steps[0].marker.status == STATUS_TODO
    assert spec.warnings == ()


def test_a_symbol_in_backticks_is_title_text() -> None:
    spec = parse("- [ ] **STEP 1**: Fix the `✓` icon\n- [ ] **STEP 2**: Fix the✓icon\n")
    assert [s.title for s in spec.steps] == ["Fix the `✓` icon", "Fix the✓icon"]
    assert [s.marker.status for s in spec.steps] == [STATUS_TODO, STATUS_TODO]
    assert spec.warnings == ()


@pytest.mark.parametrize(
    "line",
    [
        "- [x] **STEP 1**: a ✓ [task_id: task_1_3fa2b8c1] [2026-11-24T10:30:12]",
        "- [ ] **STEP 1**: a ✗ Failed [task_id: task_1_3fa2b8c1] [2026-11-24T10:30:12] exit 2",
        "- [x] **STEP 1**: a ✓ [2025-11-13] (10 test examples)",
        "- [x] **STEP 1**: a ✓",
        "- [x] **STEP 1**: a ✓ Done",
        "- [x] **STEP 1**: a ✓ (scaled down)",
        "- [x] **STEP 1**: ✓ [task_id: task_1_1a2b3c4d] [2025-11-13T10:30:00] Validate",
    ],
)
def test_real_markers_do_not_warn(line: str) -> None:
    assert parse(line + "\n").warnings == ()


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1e"])
def test_odd_line_separators_in_a_run_value_are_kept_exactly(char: str) -> None:
    """str.splitlines() splits on each of these; markdown (and a shell) does not."""
    value = f"printf 'a{char}b' > out.txt"
    spec = parse(f"- [ ] **STEP 1**: t{char}itle\n  - run: {value}\n\n  Prose{char}kept.\n", dedent=False)
    s = spec.steps[0]
    assert s.value("run") == value
    assert configs(spec)[1].run == value
    assert s.title == f"t{char}itle" and s.description == f"Prose{char}kept."


def test_odd_separators_in_the_description_are_kept() -> None:
    spec = parse("- [ ] **STEP 1**: a\n  One\u0085two\n\n  \u2028\n", dedent=False)
    assert spec.steps[0].description == "One\u0085two\n\n\u2028"


def test_a_nul_in_a_field_value_is_an_error_naming_the_line() -> None:
    err = spec_error("- [ ] **STEP 1**: a\n  - run: echo a\x00b\n")
    assert err.line == 2 and "NUL" in err.message and err.fix and "remove" in err.fix


BAD_NUMBERS = [
    ("timeout: 9999999999s", "above the longest allowed, 30d", "1s to 30d"),
    ("timeout: 31d", "above the longest allowed, 30d", "1s to 30d"),
    ("timeout: 0.001ms", "below the shortest allowed, 1s", "1s to 30d"),
    ("timeout: 0.5s", "below the shortest allowed, 1s", "1s to 30d"),
    ("timeout: " + "9" * 400, "above the longest allowed, 30d", "1s to 30d"),
    ("retries: 21", "more than 20", "0 to 20"),
    ("retries: 99999999999999999999", "more than 20", "0 to 20"),
    ("monitor: loss.txt every 0.01s", "below the shortest allowed, 0.1s", "0.1s to 1d"),
    ("monitor: loss.txt every 2d", "above the longest allowed, 1d", "0.1s to 1d"),
    ("outputs: data.jsonl >= 10000000000000", "more than", ">= 5000"),
    ("needs: " + "1" * 5000, "is not a step number", "needs: 3, 7"),
    ("metrics: accuracy >= 1" + "0" * 400, "too large", "accuracy >= 0.9"),
]


@pytest.mark.parametrize(("bullet", "in_message", "in_fix"), BAD_NUMBERS)
def test_every_number_has_a_range(bullet: str, in_message: str, in_fix: str) -> None:
    text = f"- [ ] **STEP 1**: a\n  - {bullet}\n"
    with pytest.raises(SpecError) as info:
        parse_text(text, P)
    err = info.value
    assert err.line == 2 and in_message in err.message and err.fix and in_fix in err.fix
    assert "\n" not in str(err) and len(str(err)) < 400


@pytest.mark.parametrize(("bullet", "key", "value"), [
    ("timeout: 1s", "timeout", 1.0), ("timeout: 30d", "timeout", 30 * 86400.0), ("retries: 20", "retries", 20),
    ("retries: 0", "retries", 0), ("monitor: a.txt every 0.1s", "monitor_every", 0.1),
])
def test_the_ends_of_each_range_are_allowed(bullet: str, key: str, value: float) -> None:
    cfg = configs(parse(f"- [ ] **STEP 1**: a\n  - {bullet}\n"))[1]
    assert getattr(cfg, key) == value


def test_a_leading_marker_takes_only_its_own_brackets() -> None:
    # Found by the property test: "✓ [task_id: ...] [time] []" lost its title "[]", and
    # "[P] Do it" after such a marker lost its "[P]".
    text = ("- [x] **STEP 1**: ✓ [task_id: task_1_1a2b3c4d] [2025-11-13T10:30:00.123456] []\n"
            "- [x] **STEP 2**: ✓ [2024-11-13 10:30:00.1] [task_3-10_4a] Real title\n"
            "- [x] **STEP 3**: ✓ [task_id: task_3_1a] [P] Do it\n")
    by = parse_text(text, Path("SPEC.md")).by_number()
    assert [by[n].title for n in (1, 2, 3)] == ["[]", "Real title", "[P] Do it"]
    assert by[2].marker.task_id == "task_3-10_4a" and by[2].marker.timestamp == "2024-11-13 10:30:00.1"
    assert by[3].marker.task_id == "task_3_1a" and by[3].marker.status == STATUS_DONE
