"""``--steps``: which steps a run selects. Pure logic, no pytest.

Selection by number is decided at collection time (it is the same on every
xdist worker). Whether a selected step is already done is decided when it
is set up, from the file as it is then: collection never depends on the
checkboxes other workers are rewriting.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
import unicodedata
from collections.abc import Iterable

from pytest_dotasks.errors import SettingsError
from pytest_dotasks.plan.model import Step

# One part of the value (between commas). ASCII digits only (re.ASCII: "١" is no digit
# here); "step8" is 8, as its item is named; spaces around the dash are allowed.
_PART = re.compile(r"^(?:step\s*)?(\d+)\s*(?:-\s*(?:step\s*)?(\d+))?$", re.IGNORECASE | re.ASCII)
# Longer numbers are refused, not converted: int() of thousands of digits is slow
# (and refused by Python past 4300); no plan has a step numbered beyond 10**18.
_MAX_DIGITS = 18
_FIX = "write e.g. --steps 8, --steps 1-5, --steps 1-5,8, --steps 2A,T001, --steps T001-T005, --steps all"
# A step id that is not a plain number: "2A", "T001", "T-001", "1.2", "T320-2".
_IDENT = re.compile(r"^(?:step\s*)?(\d{1,18}[A-Za-z]|T-?\d{1,9}(?:-\d{1,9})?|\d{1,9}(?:\.\d{1,9}){1,8}(?:-\d{1,9})?)$",
                    re.IGNORECASE | re.ASCII)
# A range of Spec Kit ids, "T001-T005": every task whose number is in it (a repeated T003-2 too).
# The end may leave out its T when it is written with a leading zero ("T001-003"): a repeated
# task's id ("T003-2", plan.model) never has one, so that reading is the only one.
_ID_RANGE = re.compile(r"^T-?(\d{1,9})\s*-\s*(?:T-?(\d{1,9})|(0\d{0,8}))$", re.IGNORECASE | re.ASCII)
# "T001-3": the id of T001's third copy, or the range T001-T003? The plan decides (unknown_message).
_REPEAT_OR_RANGE = re.compile(r"^(T-?)(\d{1,9})-([1-9]\d{0,8})$", re.IGNORECASE | re.ASCII)
_SPECKIT_ID = re.compile(r"^T-?(\d{1,9})(?:-\d{1,9})?$", re.IGNORECASE | re.ASCII)
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"  # what editors put for "-": hyphens, dashes, minus


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
    # Ranges of Spec Kit ids by their number ("T001-T005" -> (1, 5)).
    id_ranges: tuple[tuple[int, int], ...] = ()

    def names(self, step: Step) -> bool:
        """Does the selection name ``step`` itself (or its Kiro group), not just a range around it?"""
        return step.ident.lower() in self.idents or (step.group or "").lower() in self.idents

    def matches(self, step: Step) -> bool:
        """Is ``step`` selected: by number, by its id, or inside a range of Spec Kit ids?"""
        if step.number in self or self.names(step):
            return True
        m = _SPECKIT_ID.match(step.ident) if self.id_ranges else None
        return m is not None and any(lo <= int(m.group(1)) <= hi for lo, hi in self.id_ranges)

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
    """``8``, ``1-5``, ``1-5,8``, ``2A``, ``T001-T005`` (or ``T001-005``), ``all``, ``continue``. Raises SettingsError.

    Every error is one line naming the whole value, the part that is wrong and the
    value to write instead (``--steps 1,,2: an empty item between commas; write --steps 1,2``).
    """
    value = (text or "").strip()
    if value.lower() in ("all", ""):
        return Selection("all")
    if value.lower() == "continue":
        return Selection("continue")
    parts = [p.strip() for p in value.split(",")]
    _check_commas(value, parts)
    pairs: list[tuple[int, int]] = []
    id_pairs: list[tuple[int, int]] = []
    idents: set[str] = set()
    for part in parts:
        if part.lower() in ("all", "continue"):
            raise _error(value, f"'{part.lower()}' cannot be combined with other steps",
                         f"write --steps {part.lower()} alone, or only step numbers")
        r = _ID_RANGE.match(part)
        if r is not None:
            end = r.group(2) or r.group(3)
            lo, hi = int(r.group(1)), int(end)
            if hi < lo:
                raise _error(value, f"the range {part!r} runs backwards",
                             "write --steps " + _replaced(parts, part, f"{part[:1]}{end}-{part[:1]}{r.group(1)}"))
            id_pairs.append((lo, hi))
            continue
        ident = _IDENT.match(part)
        if ident is not None and _PART.match(part) is None:
            idents.add(ident.group(1).lower())
            continue
        m = _PART.match(part)
        if m is None:
            raise _unreadable(value, parts, part)
        if max(len(m.group(1)), len(m.group(2) or "")) > _MAX_DIGITS:
            raise _error(value, f"a step number has more than {_MAX_DIGITS} digits", _FIX)
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1:
            fixed = f"1-{hi}" if hi >= 1 else None
            raise _error(value, f"step numbers start at 1, not {_clip(part)!r}",
                         ("write --steps " + _replaced(parts, part, fixed)) if fixed or len(parts) > 1
                         else "write e.g. --steps 1")
        if hi < lo:
            raise _error(value, f"the range {part!r} runs backwards",
                         "write --steps " + _replaced(parts, part, f"{hi}-{lo}"))
        pairs.append((lo, hi))
        if m.group(2) is None:
            idents.add(str(lo))
    return Selection("numbers", _merged(pairs), frozenset(idents), tuple(parts), _merged(id_pairs))


def _error(value: str, problem: str, fix: str) -> SettingsError:
    return SettingsError(f"--steps {_shown(_clip(value, 60))}: {problem}", fix=_shown(fix))


def _shown(text: str) -> str:
    """``text`` on one line: a control or invisible character (newline, ESC, U+200B) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _replaced(parts: list[str], part: str, by: str | None) -> str:
    """The whole value with ``part`` written as ``by`` (dropped when None)."""
    out = [by if p == part else p for p in parts]
    return ",".join(p for p in out if p) or "all"


def _check_commas(value: str, parts: list[str]) -> None:
    """Empty items: ``1,,2``, ``8,``, ``,3``, ``,``."""
    if all(parts):
        return
    kept = [p for p in parts if p]
    if not kept:
        raise _error(value, "no step between the commas", "write e.g. --steps 1,2, or --steps all")
    k = parts.index("")
    where = ("before the first comma" if k == 0 else "after the last comma" if k == len(parts) - 1
             else "between commas")
    raise _error(value, f"an empty item {where}", "write --steps " + ",".join(kept))


def _unreadable(value: str, parts: list[str], part: str) -> SettingsError:
    """The one-line error for a part that is neither a number, a range nor an id, with the likely fix."""
    hidden = [ch for ch in part if not ch.isprintable() and not ch.isspace()]
    if hidden:
        visible = "".join(ch for ch in part if ch not in hidden)
        readable = bool(_PART.match(visible) or _IDENT.match(visible) or _ID_RANGE.match(visible))
        return _error(value, f"{_clip(part)!r} holds an invisible character (U+{ord(hidden[0]):04X})",
                      "write --steps " + _replaced(parts, part, visible) if readable else _FIX)
    if any(ch.isdigit() and not ch.isascii() for ch in part):
        ascii_part = "".join(str(unicodedata.digit(ch)) if ch.isdigit() and not ch.isascii() else ch for ch in part)
        if _PART.match(ascii_part) or _IDENT.match(ascii_part) or _ID_RANGE.match(ascii_part):
            return _error(value, f"{_clip(part)!r} is not written in ASCII digits",
                          "write --steps " + _replaced(parts, part, ascii_part))
        return _error(value, f"{_clip(part)!r} is not written in ASCII digits", _FIX)
    for dash in (*_DASHES, "..", ":"):
        if dash in part:
            fixed = re.sub(r"\s*" + re.escape(dash) + r"\s*", "-", part)
            if _PART.match(fixed) or _ID_RANGE.match(fixed):
                return _error(value, f"{_clip(part)!r}: a range is written with '-'",
                              "write --steps " + _replaced(parts, part, fixed))
    words = [w for w in re.split(r"[\s;]+", part) if w]
    if len(words) > 1 and all(_PART.match(w) or _IDENT.match(w) for w in words):
        return _error(value, f"{_clip(part)!r}: steps are separated by commas",
                      "write --steps " + _replaced(parts, part, ",".join(words)))
    m = re.match(r"^(?:step\s*)?(\d{1,18})\s*-$|^-\s*(?:step\s*)?(\d{1,18})$", part, re.IGNORECASE | re.ASCII)
    if m is not None:
        if m.group(1):
            return _error(value, f"the range {part!r} has no end",
                          f"write e.g. --steps {m.group(1)}-{int(m.group(1)) + 4}, or --steps continue for every "
                          "step after the last done one")
        return _error(value, f"the range {part!r} has no start", "write --steps "
                      + _replaced(parts, part, f"1-{m.group(2)}"))
    ends = [e.strip() for e in part.split("-")]
    if len(ends) > 2 and all(e.isascii() and e.isdigit() for e in ends):
        return _error(value, f"the range {part!r} has more than two ends",
                      "write --steps " + _replaced(parts, part, f"{ends[0]}-{ends[-1]}"))
    if len(ends) == 2 and all(_IDENT.match(e) or _PART.match(e) for e in ends):
        return _error(value, f"cannot read the range {part!r}: ranges are of step numbers (1-5) or Spec Kit ids "
                      "(T001-T005)", f"name each step: --steps {ends[0]},...,{ends[1]}")
    close = difflib.get_close_matches(part.lower(), ["all", "continue"], n=1, cutoff=0.6)
    if close or part.lower() in ("a", "al", "c", "co", "con", "cont"):
        word = close[0] if close else ("all" if part.lower().startswith("a") else "continue")
        return _error(value, f"cannot read {_clip(part)!r} as a step", f"write --steps {word}")
    return _error(value, f"cannot read {_clip(part)!r} as a step", _FIX)


def unknown(selection: Selection, plans: Iterable[Iterable[Step]]) -> list[str]:
    """The parts of ``--steps`` that name no step of any plan (a usage error, never "0 collected")."""
    if selection.mode != "numbers":
        return []
    steps = [s for plan in plans for s in plan]
    out = []
    for part in selection.named:
        one = parse_steps(part)
        if not any(one.matches(s) for s in steps):
            out.append(part)
    return out


def unknown_message(parts: list[str], plans: Iterable[Iterable[Step]]) -> SettingsError:
    """``--steps`` names steps no plan has: the plan's steps, and what to write instead.

    ``T001-3`` names T001's third copy (a repeated id); when the plan has none, the fix is
    the range it likely meant, written in full: ``T001-T003``.
    """
    ids = [s.ident for plan in plans for s in plan]
    shown = ", ".join(ids[:12]) + (f", ... ({len(ids)} in all)" if len(ids) > 12 else "")
    which = ", ".join(parts)
    fix = "name steps the plan has, e.g. --steps " + (ids[0] if ids else "1")
    for part in parts:
        m = _REPEAT_OR_RANGE.match(part)
        if m is not None and int(m.group(3)) >= int(m.group(2)):
            t, lo, hi = m.group(1).upper(), m.group(2), m.group(3).zfill(len(m.group(2)))
            fix = (f"for {t}{lo} to {t}{hi}, write {t}{lo}-{t}{hi} in --steps ({part} is the id of a repeated "
                   f"{t}{lo}, which this plan does not have)")
            break
    return SettingsError(f"--steps {_clip(which)}: no such step in the plan (its steps: {shown or 'none'})",
                         fix=fix)


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
        return [s for s in steps if selection.matches(s)]
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
