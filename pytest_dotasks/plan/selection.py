"""``--steps``: which steps a run selects. Pure logic, no pytest.

Selection by number is decided at collection time (it is the same on every
xdist worker). Whether a selected step is already done is decided when it
is set up, from the file as it is then: collection never depends on the
checkboxes other workers are rewriting.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.model import Step

_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


@dataclasses.dataclass(frozen=True)
class Selection:
    mode: str  # "all", "continue" or "numbers"
    numbers: frozenset[int] = frozenset()

    def explicit(self) -> bool:
        return self.mode == "numbers"


def parse_steps(text: str | None) -> Selection:
    """``8``, ``1-5``, ``1-5,8``, ``all``, ``continue``. Raises SettingsError."""
    value = (text or "all").strip().lower()
    if value in ("all", ""):
        return Selection("all")
    if value == "continue":
        return Selection("continue")
    numbers: set[int] = set()
    for part in value.split(","):
        m = _PART.match(part)
        if not m:
            raise SettingsError(
                f"invalid --steps value {text!r}: cannot read {part.strip()!r}",
                fix="write e.g. --steps 8, --steps 1-5, --steps 1-5,8, --steps all or --steps continue",
            )
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1:
            raise SettingsError(f"invalid --steps value {text!r}: step numbers start at 1",
                                fix="write e.g. --steps 1-5")
        if hi < lo:
            raise SettingsError(f"invalid --steps range {part.strip()!r}: {hi} is below {lo}",
                                fix=f"write --steps {hi}-{lo}")
        numbers.update(range(lo, hi + 1))
    return Selection("numbers", frozenset(numbers))


def continue_point(steps: Iterable[Step]) -> int | None:
    """Number of the last completed step in file order (None when none is done)."""
    last = None
    for s in steps:
        if s.done:
            last = s.number
    return last


def select(steps: Iterable[Step], selection: Selection) -> list[Step]:
    """Steps the run keeps, in file order. Done steps stay: they skip at setup."""
    steps = list(steps)
    if selection.mode == "numbers":
        return [s for s in steps if s.number in selection.numbers]
    if selection.mode == "continue":
        point = continue_point(steps)
        if point is None:
            return steps
        after = False
        out = []
        for s in steps:
            if after:
                out.append(s)
            if s.number == point:
                after = True
        return out
    return steps
