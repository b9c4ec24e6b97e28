"""Kiro ``tasks.md`` (``.kiro/specs/NAME/tasks.md``, DESIGN.md section 9).

``- [ ] 1. Task`` with nested ``- [ ] 1.1 Sub-task``, detail bullets and a
``_Requirements: 1.2, 3.1_`` line. The tasks without sub-tasks are the steps
(``1.1``; a task with none is a step itself, ``3``). A task with sub-tasks is a
group: never executed, ticked when all its sub-tasks are done. ``[-]`` (in
progress) is not done; ``- [ ]*`` marks an optional task, skipped unless
``--steps`` names it or ``--optional`` is given. Order: file order, each task
needing the task before it that is not optional (a skipped optional task never
blocks the rest). The agent gets ``requirements.md`` and ``design.md`` (listed)
and the texts of the requirements a task points to (pasted).
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_dotasks.plan.formats.blocks import split_lines
from pytest_dotasks.plan.formats.tasks import read_tasks
from pytest_dotasks.plan.model import STATUS_DONE, Spec, Step, number_of

_REQS = re.compile(r"_Requirements?:[ \t]*([^_\n]+)_", re.IGNORECASE)
_REQ_HEAD = re.compile(r"^#{1,6}[ \t]+Requirement[ \t]+(\d+)\b", re.IGNORECASE)
_NUMBERED = re.compile(r"^[ \t]*(\d+)[.)][ \t]+(.*)$")
MAX_PASTE = 2000  # characters of one requirement's text in a prompt


def parse_kiro(text: str, path: Path) -> Spec:
    tasks, warnings = read_tasks(text, path, "kiro")
    folder = path.parent
    listed = tuple((name, str(folder / name)) for name in ("requirements.md", "design.md") if (folder / name).exists())
    reqs = _requirements(folder / "requirements.md")
    steps: list[Step] = []
    previous: str | None = None
    for t in tasks:
        if t.children:
            continue
        parent = tasks[t.parent] if t.parent is not None else None
        pasted: list[tuple[str, str]] = []
        for m in _REQS.finditer(t.description):
            for ref in (r.strip() for r in m.group(1).split(",")):
                if ref in reqs:
                    pasted.append((f"Requirement {ref}", reqs[ref]))
        steps.append(Step(
            number=number_of(t.ident), title=t.header.title, description=t.description,
            fields=tuple(sorted(t.fields, key=lambda f: f.line)),
            phase=f"{parent.ident}. {parent.header.title}" if parent is not None else t.phase,
            path=path, line=t.blk.start + 1, marker=t.header.marker, ident=t.ident, fmt="kiro",
            optional=t.header.optional, group=parent.ident if parent is not None else None,
            context=listed + tuple(pasted), default_needs=(previous,) if previous else (),
        ))
        if not t.header.optional:
            previous = t.ident
    groups = tuple((t.ident, t.blk.start + 1, tuple(tasks[c].ident for c in t.children), t.header.marker.status)
                   for t in tasks if t.children)
    return Spec(path=path, steps=tuple(steps), warnings=tuple(warnings), fmt="kiro", groups=groups)


def groups_to_tick(spec: Spec, ident: str) -> list[str]:
    """The groups to mark done now that ``ident`` is: every sub-task done, innermost first.

    ``spec`` is the plan as it is after ``ident`` was marked (re-read from the file).
    """
    done = {s.ident for s in spec.steps if s.done} | {g for g, _, _, status in spec.groups if status == STATUS_DONE}
    out: list[str] = []
    changed = True
    while changed:
        changed = False
        for g, _, children, _ in spec.groups:
            if g not in done and ident_in(ident, g, spec) and all(c in done for c in children):
                done.add(g)
                out.append(g)
                changed = True
    return out


def ident_in(ident: str, group: str, spec: Spec) -> bool:
    """Is ``ident`` below ``group`` (at any depth)?"""
    parent = {c: g for g, _, children, _ in spec.groups for c in children}
    while ident in parent:
        ident = parent[ident]
        if ident == group:
            return True
    return False


def _requirements(path: Path) -> dict[str, str]:
    """``"1"`` -> Requirement 1's section, ``"1.2"`` -> its 2nd numbered criterion."""
    try:
        lines = split_lines(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}
    out: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            out[current] = "\n".join(body).strip()[:MAX_PASTE]

    for line in lines:
        m = _REQ_HEAD.match(line)
        if m:
            close()
            current, body = m.group(1), [line]
            continue
        if line.startswith("#") and current is not None and line.lstrip("#").startswith(" ") \
                and line.count("#") <= 2:
            close()
            current, body = None, []
            continue
        if current is not None:
            body.append(line)
            n = _NUMBERED.match(line)
            if n:
                out[f"{current}.{n.group(1)}"] = n.group(2).strip()[:MAX_PASTE]
    close()
    return out
