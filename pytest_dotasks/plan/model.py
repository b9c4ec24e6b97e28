"""The step model: what every plan format parses into.

Nothing here knows markdown or pytest. A second parser (Spec Kit's or Kiro's
``tasks.md``) only has to produce these objects for selection, marking, the
task log and the pytest items to work unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

# Field names a step may carry (DESIGN.md section 1).
FIELD_NAMES: tuple[str, ...] = (
    "needs",
    "requires",
    "env",
    "inputs",
    "check",
    "run",
    "agent",
    "skills",
    "model",
    "retries",
    "background",
    "monitor",
    "alert",
    "outputs",
    "validate",
    "metrics",
    "timeout",
    "kind",
)
# Fields that may be written several times; every occurrence is kept.
REPEATABLE_FIELDS = frozenset({"check", "validate", "metrics", "outputs", "inputs", "requires", "env"})
KINDS = ("quick", "data", "training", "evaluation")

STATUS_TODO = "todo"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"


@dataclasses.dataclass(frozen=True)
class Field:
    """One ``- key: value`` bullet, with where it was written."""

    key: str
    value: str
    line: int  # 1-based line in the source file


@dataclasses.dataclass(frozen=True)
class Marker:
    """The status a header line carries (checkbox plus optional marker)."""

    status: str  # one of STATUS_*
    task_id: str | None = None
    timestamp: str | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One executable step of a plan.

    ``number`` orders and identifies the step; ``ident`` is its id as written
    (``"8"`` here, ``"T001"`` for other formats). ``line`` is the 1-based line
    of the header that carries the checkbox; ``detail_line`` the 1-based line
    of its detail heading, if any.
    """

    number: int
    title: str
    description: str
    fields: tuple[Field, ...]
    phase: str | None
    path: Path
    line: int
    marker: Marker
    detail_line: int | None = None

    @property
    def ident(self) -> str:
        return str(self.number)

    @property
    def name(self) -> str:
        """The pytest item name: ``step8``."""
        return f"step{self.number}"

    def values(self, key: str) -> list[str]:
        """Every value given for ``key``, in file order (raw strings)."""
        return [f.value for f in self.fields if f.key == key]

    def value(self, key: str) -> str | None:
        vals = self.values(key)
        return vals[-1] if vals else None

    def field(self, key: str) -> Field | None:
        for f in reversed(self.fields):
            if f.key == key:
                return f
        return None

    def items(self, key: str) -> list[str]:
        """Comma-separated list values of ``key`` across all its bullets."""
        out: list[str] = []
        for v in self.values(key):
            out.extend(split_list(v))
        return out

    @property
    def done(self) -> bool:
        return self.marker.status == STATUS_DONE

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclasses.dataclass(frozen=True)
class Spec:
    path: Path
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()

    def by_number(self) -> dict[int, Step]:
        return {s.number: s for s in self.steps}


_SPLIT = re.compile(r"\s*,\s*")


def split_list(value: str) -> list[str]:
    """Split a list field value on commas, dropping empties."""
    return [p for p in _SPLIT.split(value.strip()) if p]
