"""What Spec Kit's and Kiro's ``tasks.md`` share: task lines, their fields and bodies.

A task is a list item whose first line is a task header of the format
(``header.SPECKIT_TASK`` / ``header.KIRO_TASK``), at any depth; the nearest
task above it in the list tree is its parent. Its ``- key: value`` sub-bullets
are fields (DESIGN.md section 1), everything else its description.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pytest_dotasks.plan.formats.blocks import Block, Read, blocks, body, split_lines, strip_bom, trim_end
from pytest_dotasks.plan.formats.diagnose import no_steps, unread_steps
from pytest_dotasks.plan.formats.fieldbullets import field_of, one_line
from pytest_dotasks.plan.header import Header, parse_header
from pytest_dotasks.plan.model import Field, number_of


@dataclasses.dataclass
class Task:
    blk: Block
    header: Header
    ident: str  # unique in the file (a repeated Spec Kit id gets "-2")
    parent: int | None  # index of the enclosing task
    phase: str | None
    fields: list[Field]
    description: str
    children: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Scan:
    lines: list[str]
    read: Read
    tasks: list[Task]
    warnings: list[str]
    phases: list[tuple[int, str]]  # (0-based line, heading text) of every heading


def scan(text: str, path: Path, fmt: str) -> Scan:
    lines = split_lines(text)
    read = blocks(text, path, len(lines))
    warnings: list[str] = []
    tasks: list[Task] = []
    by_blk: dict[int, int] = {}
    heading: str | None = None
    phases: list[tuple[int, str]] = []
    seen: dict[str, list[int]] = {}  # id as written -> 1-based lines
    for blk in read.blocks:
        if blk.quoted:
            continue
        if blk.kind == "heading":
            heading = blk.inline.strip()
            phases.append((blk.start, heading))
            continue
        h = parse_header(lines[blk.start], fmt)
        if h is None or not blk.bullet:
            continue
        parent = blk.parent
        while parent is not None and id(parent) not in by_blk:
            parent = parent.parent
        ident = h.ident
        earlier = seen.setdefault(h.ident, [])
        if earlier:
            ident = f"{h.ident}-{len(earlier) + 1}"
            warnings.append(f"{path}:{blk.start + 1}: task {h.ident} is also on line {earlier[0]}; "
                            f"this one runs as {ident} (give it an id of its own to name it)")
        earlier.append(blk.start + 1)
        index = len(tasks)
        by_blk[id(blk)] = index
        p = by_blk[id(parent)] if parent is not None else None
        tasks.append(Task(blk, h, ident, p, heading, [], ""))
        if p is not None:
            tasks[p].children.append(index)
    task_lines = {t.blk.start for t in tasks}
    kids: dict[int, list[Block]] = {}
    for it in read.blocks:
        if it.kind == "item" and it.parent is not None and it.start not in task_lines:
            kids.setdefault(id(it.parent), []).append(it)
    for t in tasks:
        own = kids.get(id(t.blk), [])
        skip: set[int] = set()
        for it in own:
            f = field_of(it, path, warnings, lines)
            if f is not None:
                one_line(it, f, t.ident, lines, path)
                t.fields.append(f)
                skip.update(range(it.start, trim_end(lines, it.start, it.end)))
        for c in t.children:
            cb = tasks[c].blk
            skip.update(range(cb.start, cb.end))
        t.description = body(lines, t.blk.start + 1, trim_end(lines, t.blk.start, t.blk.end), skip)
    return Scan(lines, read, tasks, warnings, phases)


def read_tasks(text: str, path: Path, fmt: str) -> tuple[list[Task], list[str]]:
    """A ``tasks.md``'s tasks and warnings (every step line left unread named); none at all is an error."""
    sc = scan(text, path, fmt)
    collected = [(t.blk.start, t.blk.end, f"task {t.ident}") for t in sc.tasks]
    warnings = sc.warnings + unread_steps(sc.lines, sc.read, collected, path, fmt)
    if not sc.tasks:
        no_steps(sc.lines, sc.read, path, fmt)
    return sc.tasks, warnings


def task_header_lines(text: str, fmt: str) -> dict[int, int]:
    """Task number -> 0-based line of its header (groups included), for the marker."""
    text = strip_bom(text)
    lines = split_lines(text)
    out: dict[int, int] = {}
    seen: dict[str, int] = {}
    for blk in blocks(text).blocks:
        if blk.quoted or blk.kind != "item" or not blk.bullet:
            continue
        h = parse_header(lines[blk.start], fmt)
        if h is None:
            continue
        k = seen.get(h.ident, 0) + 1
        seen[h.ident] = k
        out[number_of(h.ident if k == 1 else f"{h.ident}-{k}")] = blk.start
    return out
