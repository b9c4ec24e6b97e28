"""The task log: one JSON object per line, appended whole, secrets removed.

Each line is written with a single ``write`` on a file opened ``O_APPEND``,
which the kernel keeps whole and ordered across processes on a local file
system; a short write is completed in a loop and a failed one (disk full)
raises ``LogError`` instead of leaving a torn line unnoticed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import LogError

# Variables whose values are secrets even when no step names them in ``env``.
_SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values would redact ordinary words


def now_iso() -> str:
    """Local time, ISO 8601, seconds (the marker and log timestamp format)."""
    return _dt.datetime.now().astimezone().replace(microsecond=0, tzinfo=None).isoformat()


def secret_values(names: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """Values to redact: variables named in ``names`` plus any key-like variable."""
    env = os.environ if environ is None else environ
    wanted = set(names)
    vals = {
        v
        for k, v in env.items()
        if (k in wanted or _SECRET_NAME.search(k)) and v and len(v) >= _MIN_SECRET
    }
    # Longest first, so a secret containing another is replaced whole.
    return sorted(vals, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class TaskLog:
    """Appender for ``.task_execution.log``; safe to share across threads and processes."""

    def __init__(self, path: Path, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.secrets = list(secrets)

    def add_secrets(self, values: Iterable[str]) -> None:
        new = [v for v in values if v and len(v) >= _MIN_SECRET and v not in self.secrets]
        self.secrets = sorted([*self.secrets, *new], key=len, reverse=True)

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def event(
        self,
        task_id: str | None,
        message: str,
        *,
        step: int | str | None = None,
        phase: str | None = None,
        event: str | None = None,
        **data: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"timestamp": now_iso(), "task_id": task_id, "message": message}
        if step is not None:
            entry["step"] = step
        if phase is not None:
            entry["phase"] = phase
        if event is not None:
            entry["event"] = event
        entry.update(data)
        self.write(entry)
        return entry

    def _scrub_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {k: self._scrub_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub_value(v) for v in value]
        return value

    def write(self, entry: Mapping[str, Any]) -> None:
        # Redact the values before serialising (JSON escapes quotes and
        # backslashes, so a secret holding one would not be found after),
        # and the line after (a value turned into text by ``default=str``).
        line = json.dumps(self._scrub_value(entry), ensure_ascii=False, default=str)
        line = self.scrub(line) + "\n"
        data = line.encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LogError(
                f"cannot open the task log: {exc.strerror}",
                path=self.path,
                fix="make its folder writable or choose another with --task-log",
            ) from None
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as exc:
            raise LogError(
                f"cannot append to the task log: {exc.strerror}",
                path=self.path,
                fix="free disk space or choose another file with --task-log",
            ) from None
        finally:
            os.close(fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every entry of a task log (for tests, summaries and reconciliation)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out
