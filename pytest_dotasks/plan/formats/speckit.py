"""GitHub Spec Kit ``tasks.md`` (DESIGN.md section 9).

``- [ ] T001 [P] [US1] Description with path/to/file.py`` under ``## Phase N: Name``.
Each task is a step named by its id (``T001``). Order, expressed as default
``needs`` (a ``needs:`` bullet overrides it):

- a task without ``[P]`` needs the task before it in its phase, and the ``[P]``
  tasks right before that (a run of parallel tasks ends where a plain task starts);
- the first task of a phase, and every ``[P]`` task, needs the last tasks of the
  previous phase (those no other task of that phase needs);
- tasks of the first phase with no task before them need nothing.

A repeated id (real files reuse ``T320`` in a later phase) runs as ``T320-2``,
with a warning naming both lines. ``[X]`` or ``[x]`` is done; any other box
character (``[~]``, ``[-]``) is not. ``[USn]`` and other bracketed labels become
keywords and markers; the agent is pointed at the feature folder's documents.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_dotasks.plan.formats.tasks import Task, read_tasks
from pytest_dotasks.plan.model import Spec, Step, number_of

_TAG = re.compile(r"^\[(?P<tag>[A-Za-z][\w.-]{0,30})\][ \t]*")
# The documents /speckit.implement reads, beside tasks.md (listed for the agent, read on demand).
CONTEXT_FILES = ("spec.md", "plan.md", "data-model.md", "research.md", "contracts", "quickstart.md")


def parse_speckit(text: str, path: Path) -> Spec:
    tasks, warnings = read_tasks(text, path, "speckit")
    context = context_of(path)
    steps: list[Step] = []
    needs = _default_needs(tasks)
    for t, deps in zip(tasks, needs):
        title, labels = _labels(t.header.title)
        parallel = "P" in labels or "[P]" in t.header.lead or "[P]" in t.header.label
        if parallel and "P" not in labels:
            labels = ("P", *labels)
        steps.append(Step(
            number=number_of(t.ident), title=title, description=t.description,
            fields=tuple(sorted(t.fields, key=lambda f: f.line)), phase=t.phase, path=path,
            line=t.blk.start + 1, marker=t.header.marker, ident=t.ident, fmt="speckit",
            labels=labels, parallel=parallel, context=context, default_needs=deps,
        ))
    return Spec(path=path, steps=tuple(steps), warnings=tuple(warnings), fmt="speckit")


def _labels(title: str) -> tuple[str, tuple[str, ...]]:
    """``[P] [US1] Do it`` -> (``Do it``, ("P", "US1"))."""
    labels: list[str] = []
    while True:
        m = _TAG.match(title)
        if m is None:
            return title, tuple(labels)
        labels.append(m.group("tag"))
        title = title[m.end():]


def _parallel(t: Task) -> bool:
    h = t.header
    return "[P]" in h.lead or "[P]" in h.label or "P" in _labels(h.title)[1]


def _default_needs(tasks: list[Task]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    previous_sinks: tuple[str, ...] = ()
    phase_tasks: list[int] = []  # indexes of the current phase's tasks
    phase: str | None = None
    needed: set[int] = set()

    def sinks() -> tuple[str, ...]:
        return tuple(tasks[i].ident for i in phase_tasks if i not in needed)

    for i, t in enumerate(tasks):
        if i == 0 or t.phase != phase:
            if phase_tasks:
                previous_sinks = sinks()
            phase, phase_tasks, needed = t.phase, [], set()
        if _parallel(t) or not phase_tasks:
            deps: list[int] = []
            out.append(previous_sinks)
        else:
            deps = [phase_tasks[-1]]
            k = len(phase_tasks) - 2
            while k >= 0 and _parallel(tasks[phase_tasks[k + 1]]):
                deps.append(phase_tasks[k])  # the run of [P] tasks before this one, and the task before them
                if not _parallel(tasks[phase_tasks[k]]):
                    break
                k -= 1
            out.append(tuple(tasks[d].ident for d in sorted(deps)))
        needed.update(deps)
        phase_tasks.append(i)
    return out


def context_of(path: Path) -> tuple[tuple[str, str], ...]:
    """The feature folder's documents that exist, as (label, path) pairs for the prompt."""
    folder = path.parent
    out: list[tuple[str, str]] = []
    for name in CONTEXT_FILES:
        p = folder / name
        if p.exists():
            out.append((name, str(p)))
    return tuple(out)
