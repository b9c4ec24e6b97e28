"""The task log: one JSON object per line, appended whole, secrets removed.

Each line is written with a single ``write`` on a file opened ``O_APPEND``,
which the kernel keeps whole and ordered across processes on a local file
system; a short write is completed in a loop and a failed one (disk full)
raises ``LogError`` instead of leaving a torn line unnoticed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import json
import os
import re
import stat
import urllib.parse
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


# Between two base64 characters: a line break (base64 tools wrap at 76) as
# itself or as JSON writes it (a transcript line).
_WRAP = r"(?:\r?\n|(?:\\r)?\\n)?"
_URL_SAFE = str.maketrans("+/", "-_")


@functools.lru_cache(maxsize=256)
def secret_forms(secret: str) -> tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]]:
    """How ``secret`` shows up in text: literally and URL-encoded, and base64-encoded.

    Returns (literal forms, base64 forms). A base64 form is the part of the
    encoding that depends on the secret alone, for each of the three byte
    alignments it can have inside a longer encoded text (``env | base64``),
    standard and URL-safe alphabets, allowing line breaks; it comes with a few
    plain windows of it, so text holding none of them is not searched.
    """
    literal = {secret}
    for quoted in (urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)):
        literal |= {quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)}
    raw = secret.encode("utf-8", "surrogateescape")
    encoded = []
    for k in range(3):
        full = base64.b64encode(b"\0" * k + raw).decode("ascii")
        core = full[(4 * k + 2) // 3:(8 * (k + len(raw))) // 6]  # characters made of the secret's bits only
        for form in dict.fromkeys((core, core.translate(_URL_SAFE))):
            if len(form) >= 8:
                mid = len(form) // 2
                windows = (form[:6], form[mid - 3:mid + 3], form[-6:])
                encoded.append((windows, re.compile(_WRAP.join(map(re.escape, form)))))
    return tuple(sorted(literal, key=len, reverse=True)), tuple(encoded)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (see ``secret_forms``) replaced by ``***``."""
    for s in secrets:
        literal, encoded = secret_forms(s)
        for form in literal:
            if form in text:
                text = text.replace(form, "***")
        for windows, pattern in encoded:
            if any(w in text for w in windows):
                text = pattern.sub("***", text)
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
        try:
            data = line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a model's odd text): escape it, never lose the line
            data = (self.scrub(json.dumps(self._scrub_value(entry), ensure_ascii=True, default=str)) + "\n").encode()
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


def probe(path: Path) -> None:
    """Raise ``LogError`` unless the task log at ``path`` can be appended to.

    Checked before any step runs, so a bad ``--task-log`` is a usage error, not
    a step marked failed. Creates and changes nothing: an existing file is
    opened for appending (no write), a missing one needs an existing, writable
    folder. A missing folder is refused (a typo in a path should not create
    folders) unless the first missing one is a ``.dotasks`` folder (the plan's
    state folder, which the run makes anyway).

    A character device (``/dev/full``, ``/dev/null``, a terminal) gets a write
    of zero bytes: that puts nothing into it, yet ``/dev/full`` answers it with
    ENOSPC, so a log that fails every write is a usage error here instead of at
    the first event. A regular file is never written to: a zero-byte write on a
    full disk succeeds, so that case stays the first event's one-line error.
    FIFOs and sockets are left alone (opening one could block on its reader).
    """
    fix = "choose a file in a writable folder with --task-log PATH"
    try:
        st: os.stat_result | None = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise LogError(f"cannot use the task log: {exc.strerror}", path=path, fix=fix) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise LogError("the task log is a folder, not a file", path=path,
                           fix=f"name a file with --task-log (e.g. {Path(path) / '.task_execution.log'})")
        if stat.S_ISCHR(st.st_mode):
            _probe_device(path, fix)
            return
        if not stat.S_ISREG(st.st_mode):
            return  # a FIFO or socket: appending is its business
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))  # no O_CREAT, no write
        except OSError as exc:
            raise LogError(f"cannot write the task log: {exc.strerror}", path=path,
                           fix="make it writable (chmod u+w) or " + fix) from None
        return
    parent = Path(path).parent
    folder = parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise LogError(f"cannot create the task log: {folder} is not a folder", path=path, fix=fix)
    missing = parent
    while missing != folder and missing.parent != folder:
        missing = missing.parent
    if folder != parent and missing.name != ".dotasks":
        raise LogError(f"the task log's folder {missing} does not exist", path=path,
                       fix=f"create it first (mkdir -p {parent}) or correct the path given to --task-log")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LogError(f"cannot create the task log: the folder {folder} is not writable", path=path, fix=fix)


def _probe_device(path: Path, fix: str) -> None:
    """Open a character device for appending and write zero bytes to it (see ``probe``)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError as exc:
        raise LogError(f"cannot write the task log: {exc.strerror}", path=path, fix=fix) from None
    try:
        os.write(fd, b"")
    except BlockingIOError:
        pass  # a terminal that is busy now may take the lines later
    except OSError as exc:
        raise LogError(f"the task log refuses every write: {exc.strerror}", path=path, fix=fix) from None
    finally:
        os.close(fd)
