"""Never a silent zero, never a silent drop (DESIGN.md section 1).

A cheap line scan, compared with what a parser collected: a line that looks like a
step but is none gets a warning naming its line, and a plan with checkboxes but no
step at all is a collection error saying what was seen and what a step looks like;
so is a named plan with no checkbox at all, or an empty one (``no_step_at_all``).
Lines in code blocks, fences, HTML comments and block quotes are examples, never steps.
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.formats.blocks import MAX_NESTING, SHADOW, UNREAD, Read
from pytest_dotasks.plan.header import MAX_STEP_DIGITS, parse_header

_BOX = r"^[ \t]*(?P<bullet>[-*+]|\d{1,9}[.)])[ \t]+(?:\[P\][ \t]+)?\[[ xX~/.!?>-]\]\*?[ \t]+"
# A line a person meant as a step: a list item with a checkbox whose text starts with
# "step N" (bold or not), or a bold "**STEP x**" whatever x is ("1.5", "-1", "1-2").
# Not a plain "Steps 1-2" (a range) nor "Step 1.2" (a sub-step) without bold.
_STEP_LIKE = {
    "specmd": re.compile(
        _BOX + r"(?:(?:\*\*|__)[ \t]*step[ \t]+(?P<odd>-?[\d.]+[\w.-]*)"
        r"|(?:\*\*|__)?[ \t]*step[ \t]*(?P<n>\d+)(?![\d.]*\d|[ \t]*-[ \t]*\d))",
        re.IGNORECASE,
    ),
    "speckit": re.compile(_BOX + r"(?:\*\*)?T-?\d"),
    "kiro": re.compile(_BOX + r"\d+(?:\.\d+)*\.?(?:[ \t]|$)"),
}
CHECKBOX = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[P\][ \t]+)?\[[ xX~/.!?>-]\]\*?(?:[ \t]|$)")
_PLAIN_ID = re.compile(r"^\d+[A-Za-z]?$")
FORMAT_NAMES = {"specmd": "SPEC.md", "speckit": "Spec Kit tasks.md", "kiro": "Kiro tasks.md"}
STEP_LINES = {
    "specmd": "'- [ ] **STEP 8**: Title'",
    "speckit": "'- [ ] T001 [P] [US1] Description' under '## Phase 1: Setup'",
    "kiro": "'- [ ] 1. Task' with sub-tasks '  - [ ] 1.1 Sub-task'",
}


def unread_steps(lines: list[str], read: Read, collected: list[tuple[int, int, str]], path: Path,
                 fmt: str) -> list[str]:
    """A warning for every line that looks like a step of ``fmt`` but was not collected.

    ``collected``: (first line, end line, label) of every step or group the parser took,
    0-based, end exclusive, in file order.
    """
    pattern = _STEP_LIKE[fmt]
    taken = {start for start, _, _ in collected}
    starts = [start for start, _, _ in collected]
    out: list[str] = []
    for i, line in enumerate(lines):
        m = pattern.match(line)
        if m is None or i in taken or read.lines[i] == SHADOW:
            continue
        k = bisect.bisect_right(starts, i) - 1
        holder = collected[k] if k >= 0 and i < collected[k][1] else None
        where = f"{path}:{i + 1}: '{clip(line)}' looks like a step but "
        if read.lines[i] == UNREAD:
            why = (f"was not read: the lists or quotes above it nest too deeply (over {MAX_NESTING // 2} levels); "
                   "flatten them to make it a step")
        elif holder is not None:
            why = (f"is inside {holder[2]}'s description (line {holder[0] + 1}), so it does not run; "
                   "unindent it to make it a step of its own")
        elif fmt != "specmd":
            why = f"is none: write it as {STEP_LINES[fmt]} (a '-' list item, not '1.')"
        else:
            why = _specmd_why(line, m)
        out.append(where + why)
    return out


def _specmd_why(line: str, m: re.Match[str]) -> str:
    odd = m.group("odd")
    if odd is not None and not _PLAIN_ID.match(odd.rstrip(".-")):
        return (f"is none: a step id is a whole number, optionally with one letter (8, 2A), not {clip(odd, 12)!r}; "
                "renumber it, e.g. '**STEP 9**'")
    digits = m.group("n") or (odd or "").rstrip(".-")
    if len(digits.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")) > MAX_STEP_DIGITS:
        return f"is none: step numbers have at most {MAX_STEP_DIGITS} digits"
    if not m.group("bullet")[0] in "-*+":
        return "is none: an ordered-list item ('1.') is not a step; write it as '- [ ] **STEP N**: Title'"
    if parse_header(line, "specmd") is None:
        return "is none: write it as '- [ ] **STEP N**: Title' to make it a step"
    return "is not read as one; put a blank line before it to make it a step"


def no_steps(lines: list[str], read: Read, path: Path, fmt: str) -> None:
    """Raise when the plan has checkbox items but not one step: never a silent zero."""
    boxes = [i for i, line in enumerate(lines) if read.lines[i] != SHADOW and CHECKBOX.match(line)]
    if not boxes:
        return
    n = len(boxes)
    raise SpecError(
        f"{n} checkbox{'es' if n != 1 else ''} but no step (read as {FORMAT_NAMES[fmt]}; formats tried: SPEC.md, "
        f"Spec Kit tasks.md, Kiro tasks.md); first checkbox: line {boxes[0] + 1} '{clip(lines[boxes[0]], 40)}'",
        path=path, line=boxes[0] + 1,
        fix=f"write a step as {STEP_LINES[fmt]}, or choose the format with --plan-format",
    )


_EXAMPLES = {"specmd": "SPEC.md: '- [ ] **STEP 8**: Title'", "speckit": "Spec Kit: '- [ ] T001 Title'",
             "kiro": "Kiro: '- [ ] 1.1 Title'"}
_FIRST_STEP = {"specmd": "'- [ ] **STEP 1**: Title'", "speckit": "'- [ ] T001 Title' under '## Phase 1: Setup'",
               "kiro": "'- [ ] 1. Task' with a sub-task '  - [ ] 1.1 Sub-task'"}


def no_step_at_all(text: str, path: Path, fmt: str) -> SpecError:
    """The error for a plan file named on purpose (``--spec``, ``pytest FILE.md``, the ini,
    ``pytest-dotasks status``) in which no parser found a step: never a silent "no tests ran".

    ``no_steps`` above reports a file with checkboxes but no step (pointing at the first
    checkbox); this is the rest: a file with no checkbox at all, a README or ``/etc/passwd``
    named by mistake. It says which formats were tried and what a step line looks like.

    An empty plan (0 bytes, blank lines, or only headings: a new project's plan before its
    first step) is the same error, worded for it: there is nothing to run either, and
    passing it quietly would also hide a plan path that points at the wrong file.
    """
    tried = f"read as {FORMAT_NAMES[fmt]}; formats tried: {', '.join(FORMAT_NAMES.values())}"
    also = "; ".join(v for k, v in _EXAMPLES.items() if k != fmt)
    lines = (line.strip().lstrip("\ufeff").strip() for line in text.splitlines())
    if all(not line or line.startswith("#") for line in lines):
        return SpecError(f"no step in this file yet: it is empty or holds only headings ({tried})", path=path,
                         fix=f"add a first step such as {_FIRST_STEP[fmt]} ({also}), or name the plan file")
    return SpecError(f"no step in this file ({tried})", path=path,
                     fix=f"a step line looks like {STEP_LINES[fmt]} ({also}); is this the plan file?")


def clip(text: str, width: int = 50) -> str:
    text = text.strip(" \t")
    return text if len(text) <= width else text[: width - 3] + "..."
