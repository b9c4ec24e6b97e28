"""``--steps``: which steps a run selects. Pure logic, no pytest.

Selection by number is decided at collection time (it is the same on every
xdist worker). Whether a selected step is already done is decided when it
is set up, from the file as it is then: collection never depends on the
checkboxes other workers are rewriting.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Iterable

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.model import Step

_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
# Longer numbers are refused, not converted: int() of thousands of digits is slow
# (and refused by Python past 4300); no plan has a step numbered beyond 10**18.
_MAX_DIGITS = 18
_FIX = "write e.g. --steps 8, --steps 1-5, --steps 1-5,8, --steps 2A,T001, --steps all or --steps continue"
# A step id that is not a plain number: "2A", "T001", "T-001", "1.2", "T320-2".
_IDENT = re.compile(r"^\s*(?:step\s*)?(\d{1,18}[A-Za-z]|T-?\d{1,9}(?:-\d{1,9})?|\d{1,9}(?:\.\d{1,9}){1,8}(?:-\d{1,9})?)\s*$",
                    re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Selection:
    """What ``--steps`` chose. ``ranges``: sorted, disjoint, inclusive ``(lo, hi)`` pairs.

    A range stays a pair however wide (``1-99999999999999``): never a set of numbers.
    """

    mode: str  # "all", "continue" or "numbers"
    ranges: tuple[tuple[int, int], ...] = ()
    # ids named one by one, lowercased ("8", "2a", "t001", "1.2"); every part as written
    # (for "--steps 7: no such step"). Both follow from ``ranges`` for plain numbers.
    idents: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)
    named: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def names(self, step: Step) -> bool:
        """Does the selection name ``step`` itself (or its Kiro group), not just a range around it?"""
        return step.ident.lower() in self.idents or (step.group or "").lower() in self.idents

    def explicit(self) -> bool:
        return self.mode == "numbers"

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        k = bisect.bisect_right(self.ranges, (number, _INF)) - 1
        return k >= 0 and self.ranges[k][0] <= number <= self.ranges[k][1]


_INF = 10**_MAX_DIGITS + 1


def _merged(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(pairs):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def parse_steps(text: str | None) -> Selection:
    """``8``, ``1-5``, ``1-5,8``, ``all``, ``continue``. Raises SettingsError."""
    value = (text or "all").strip().lower()
    if value in ("all", ""):
        return Selection("all")
    if value == "continue":
        return Selection("continue")
    pairs: list[tuple[int, int]] = []
    idents: set[str] = set()
    named: list[str] = []
    for part, written in zip(value.split(","), (text or "").strip().split(",")):
        m = _PART.match(part)
        ident = _IDENT.match(part) if m is None else None
        if ident is not None:
            idents.add(ident.group(1).lower())
            named.append(written.strip())
            continue
        if not m:
            raise SettingsError(f"invalid --steps value {_clip(text)!r}: cannot read {_clip(part.strip())!r}", fix=_FIX)
        if max(len(m.group(1)), len(m.group(2) or "")) > _MAX_DIGITS:
            raise SettingsError(f"invalid --steps value {_clip(text)!r}: a step number has more than "
                                f"{_MAX_DIGITS} digits", fix=_FIX)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1:
            raise SettingsError(f"invalid --steps value {_clip(text)!r}: step numbers start at 1",
                                fix="write e.g. --steps 1-5")
        if hi < lo:
            raise SettingsError(f"invalid --steps range {part.strip()!r}: {hi} is below {lo}",
                                fix=f"write --steps {hi}-{lo}")
        pairs.append((lo, hi))
        if m.group(2) is None:
            idents.add(str(lo))
        named.append(written.strip())
    return Selection("numbers", _merged(pairs), frozenset(idents), tuple(named))


def unknown(selection: Selection, plans: Iterable[Iterable[Step]]) -> list[str]:
    """The parts of ``--steps`` that name no step of any plan (a usage error, never "0 collected")."""
    if selection.mode != "numbers":
        return []
    steps = [s for plan in plans for s in plan]
    out = []
    for part in selection.named:
        one = Selection("numbers", parse_steps(part).ranges, parse_steps(part).idents)
        if not any(s.number in one or one.names(s) for s in steps):
            out.append(part)
    return out


def unknown_message(parts: list[str], plans: Iterable[Iterable[Step]]) -> SettingsError:
    ids = [s.ident for plan in plans for s in plan]
    shown = ", ".join(ids[:12]) + (f", ... ({len(ids)} in all)" if len(ids) > 12 else "")
    which = ", ".join(parts)
    return SettingsError(f"--steps {_clip(which)}: no such step in the plan (its steps: {shown or 'none'})",
                         fix="name steps the plan has, e.g. --steps " + (ids[0] if ids else "1"))


def _clip(text: str | None, width: int = 40) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 3] + "..."


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
        return [s for s in steps if s.number in selection or selection.names(s)]
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
