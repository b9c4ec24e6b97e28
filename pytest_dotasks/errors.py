"""One exception family: every failure we report carries phase, place and fix.

``repr_failure`` of our items and collectors renders these as a few plain
lines; anything else falls back to pytest's usual traceback.
"""

from __future__ import annotations

from pathlib import Path


class DotasksError(Exception):
    """Base of every error the plugin reports to a user."""

    phase: str = "dotasks"

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        fix: str | None = None,
        detail: str | None = None,
        phase: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.fix = fix
        self.detail = detail
        if phase is not None:
            self.phase = phase

    @property
    def where(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else str(self.path)

    def one_line(self) -> str:
        """``file:line: message (fix)``: the form for usage and collection errors."""
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f"; {self.fix}"
        return text

    def render(self) -> str:
        lines = [self.one_line()]
        if self.detail:
            lines.append(self.detail.rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.one_line()


class SpecError(DotasksError):
    """The plan file cannot be read or parsed (a collection/usage error)."""

    phase = "collect"


class SettingsError(DotasksError):
    """An option or ini value is invalid."""

    phase = "settings"


class MarkError(DotasksError):
    """SPEC.md could not be updated (read-only, deleted, step vanished)."""

    phase = "mark"


class LogError(DotasksError):
    """The task log could not be written (disk full, permissions)."""

    phase = "log"


class StepFailure(DotasksError):
    """A phase of a step failed; ``phase`` is preflight, main or post."""


class PreflightFailed(StepFailure):
    phase = "preflight"


class BodyFailed(StepFailure):
    phase = "main"


class PostFailed(StepFailure):
    phase = "post"
