"""SPEC.md grammar (DESIGN.md section 1): markdown in, ``Step`` objects out.

The markdown layer (blocks, raw lines) is ``formats.blocks``, shared by every
format; the line scan that keeps a step from being dropped in silence is
``formats.diagnose``. ``parse_with_configs`` and ``header_lines`` read any
format: a Spec Kit or Kiro ``tasks.md`` goes to its own parser (``formats``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dotasks.errors import SpecError
from pytest_dotasks.plan.formats.blocks import (  # noqa: F401 (read_text, split_lines: public here)
    Block,
    Read,
    blank,
    blocks,
    body,
    read_text,
    split_lines,
    strip_bom,
    trim_end,
)
from pytest_dotasks.plan.formats.diagnose import no_steps, unread_steps
from pytest_dotasks.plan.formats.fieldbullets import field_of, one_line
from pytest_dotasks.plan.header import INLINE_HEADER, MAX_STEP_DIGITS, parse_header, step_ident
from pytest_dotasks.plan.model import Field, Marker, Spec, Step, number_of

if TYPE_CHECKING:
    from pytest_dotasks.plan.fields import StepConfig

# "STEP 8: Title", "Step 8 - Title", "**Step 8**". Not "Step 1-2: Setup" or "Step 1.2"
# (ranges and sub-numbers are not one step's section).
_DETAIL = re.compile(
    r"^(?:\*\*)?[ \t]*step[ \t]+(\d+[A-Za-z]?)[ \t]*(?:\*\*)?[ \t]*(?:(?:[:\uff1a\u2013\u2014]|[.-](?!\d))[ \t]*(.*))?$",
    re.IGNORECASE,
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"



def parse_text(text: str, path: Path) -> Spec:
    """Parse plan text. Raises ``SpecError`` naming file and line."""
    return parse_with_configs(text, path)[0]


def parse_with_configs(text: str, path: Path, fmt: str | None = None) -> tuple[Spec, dict[int, StepConfig]]:
    """Parse and validate plan text of any format (``fmt`` None: detected, DESIGN.md section 9)."""
    from pytest_dotasks.plan.formats.detect import detect

    fmt = detect(text, path, fmt)
    if fmt == "speckit":
        from pytest_dotasks.plan.formats.speckit import parse_speckit

        spec = parse_speckit(strip_bom(text), path)
    elif fmt == "kiro":
        from pytest_dotasks.plan.formats.kiro import parse_kiro

        spec = parse_kiro(strip_bom(text), path)
    else:
        spec = _parse_specmd(strip_bom(text), path)
    from pytest_dotasks.plan.fields import validate_spec  # late: fields imports model only

    return spec, validate_spec(spec)


def _parse_specmd(text: str, path: Path) -> Spec:
    """The SPEC.md grammar (DESIGN.md section 1)."""
    lines = split_lines(text)
    read = blocks(text, path, len(lines))
    blks = read.blocks
    warnings: list[str] = []

    headers: dict[int, tuple[int, Any]] = {}  # number -> (0-based line, Header)
    step_items: list[tuple[Block, Any]] = []
    detail: dict[int, Block] = {}
    heading_stack: list[Block] = []
    phase_of: dict[int, str | None] = {}

    for blk in blks:
        if blk.quoted:
            continue
        if blk.kind == "heading":
            m = _DETAIL.match(blk.inline.strip())
            if m and len(m.group(1)) <= MAX_STEP_DIGITS + 1:
                n = number_of(step_ident(m.group(1)))
                if n in detail:
                    raise SpecError(
                        f"two detail sections for STEP {step_ident(m.group(1))} (lines {detail[n].start + 1} and {blk.start + 1})",
                        path=path, line=blk.start + 1, fix="renumber or merge one of them",
                    )
                detail[n] = blk
            else:
                heading_stack.append(blk)
            continue
        if not INLINE_HEADER.match(blk.inline):
            continue
        if step_items and blk.start < step_items[-1][0].end:
            # A checkbox nested in a step is description. Blocks come in file order
            # and steps never nest, so only the last step can hold this one.
            continue
        h = parse_header(lines[blk.start], "specmd")
        if h is None:  # label spread over lines or odd markup: not a step header line
            continue
        if h.number in headers:
            first = headers[h.number][0] + 1
            raise SpecError(
                f"STEP {h.ident} is defined twice (lines {first} and {blk.start + 1})",
                path=path, line=blk.start + 1, fix="give each step a unique number",
            )
        if h.ident.rstrip(_LETTERS) == "0":
            raise SpecError("step numbers start at 1", path=path, line=blk.start + 1)
        headers[h.number] = (blk.start, h)
        step_items.append((blk, h))
        phase_of[h.number] = heading_stack[-1].inline.strip() if heading_stack else None

    # Section end of every detail heading: the next heading of its level or above, or
    # the next step's detail heading at any level (never two steps' text in one).
    section_end: dict[int, int] = {}
    heads = [b for b in blks if b.kind == "heading" and not b.quoted]
    detail_heads = {id(b) for b in detail.values()}
    for n, blk in detail.items():
        end = len(lines)
        for other in heads:
            if other.start > blk.start and (other.level <= blk.level or id(other) in detail_heads):
                end = other.start
                break
        section_end[n] = end

    steps: list[Step] = []
    items = [b for b in blks if b.kind == "item" and not b.quoted]
    # Lines of every checklist step item: a detail section never takes them (a plan
    # may put "- [ ] **STEP 8**" right under "## STEP 8:"), nor its field bullets.
    in_step: set[int] = set()
    for sblk, _ in step_items:
        in_step.update(range(sblk.start, sblk.end))
    children: dict[int, list[Block]] = {}
    for it in items:
        if it.parent is not None:
            children.setdefault(id(it.parent), []).append(it)
    starts = [it.start for it in items]
    for blk, h in step_items:
        start = blk.start
        fields: list[Field] = []
        field_lines: set[int] = set()
        d = detail.get(h.number)
        # Fields are the step item's own sub-bullets, and the top-level bullets of its
        # detail section; bullets nested deeper are description (examples, notes).
        candidates = list(children.get(id(blk), ()))
        if d is not None:
            lo, hi = bisect.bisect_left(starts, d.end), bisect.bisect_left(starts, section_end[h.number])
            candidates += [it for it in items[lo:hi] if it.start not in in_step
                           and (it.parent is None or it.parent.start < d.start)]
        for it in candidates:
            f = field_of(it, path, warnings, lines)
            if f is not None:
                one_line(it, f, h.ident, lines, path)
                fields.append(f)
                field_lines.update(range(it.start, trim_end(lines, it.start, it.end)))
        parts = [body(lines, blk.start + 1, trim_end(lines, blk.start, blk.end), field_lines)]
        if d is not None:
            end = section_end[h.number]
            skip = field_lines | {i for i in range(d.end, end) if i in in_step}
            parts.append(body(lines, d.end, end, skip))
        description = "\n\n".join(p for p in parts if p)
        steps.append(
            Step(
                number=h.number,
                title=h.title,
                description=description,
                fields=tuple(sorted(fields, key=lambda f: f.line)),
                phase=phase_of.get(h.number),
                path=path,
                line=start + 1,
                marker=h.marker,
                detail_line=d.start + 1 if d is not None else None,
                ident=h.ident,
            )
        )
    collected = [(blk.start, blk.end, f"STEP {h.ident}") for blk, h in step_items]
    warnings += unread_steps(lines, read, collected, path, "specmd")
    if not steps:
        no_steps(lines, read, path, "specmd")
    return Spec(path=path, steps=tuple(steps), warnings=tuple(warnings))


def parse_file(path: Path) -> Spec:
    return parse_text(read_text(path), path)


def header_lines(text: str, fmt: str | None = None) -> dict[int, int]:
    """Step number -> 0-based line of its header, for the marker (any format)."""
    from pytest_dotasks.plan.formats.detect import detect

    text = strip_bom(text)
    fmt = detect(text, None, fmt)
    if fmt != "specmd":
        from pytest_dotasks.plan.formats.tasks import task_header_lines

        return task_header_lines(text, fmt)
    lines = split_lines(text)
    out: dict[int, int] = {}
    step_ranges: list[tuple[int, int]] = []
    for blk in blocks(text).blocks:
        if blk.quoted or blk.kind != "item" or not INLINE_HEADER.match(blk.inline):
            continue
        if step_ranges and blk.start < step_ranges[-1][1]:
            continue  # nested in the last step: description, as in parse_text
        h = parse_header(lines[blk.start], "specmd")
        if h is not None:
            step_ranges.append((blk.start, blk.end))
            out.setdefault(h.number, blk.start)  # a duplicate (a parse error) keeps the first
    return out


def iter_markers(text: str) -> Iterator[tuple[int, Marker]]:
    lines = split_lines(strip_bom(text))
    for n, i in header_lines(text).items():
        h = parse_header(lines[i])
        if h is not None:
            yield n, h.marker
