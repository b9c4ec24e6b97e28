"""The cassette file: one step's API exchanges as JSON lines a person can review in a diff.

``cassettes/SPEC/step8.jsonl``, one JSON object a line::

    {"type": "cassette", "version": 1, "plan": "SPEC.md", "step": "8", "title": "...", "backend": "anthropic", ...}
    {"type": "request", "n": 1, "method": "POST", "path": "/v1/messages", "model": "...", "roles": ["user"],
     "prompt": "...", "system": "...", "tools": [{"name": "Bash", "input_schema": {...}}]}
    {"type": "response", "n": 1, "status": 200, "headers": {"content-type": "text/event-stream"}}
    {"type": "event", "n": 1, "event": "message_start", "data": {...}}
    ...
    {"type": "end", "exchanges": 3}

A request line keeps only what a replay compares (``match.essentials``),
normalised; ``prompt``, ``system`` and ``tools`` are written when they change
from the previous request, so a 40-turn conversation does not repeat its
system prompt 40 times. A streamed reply is its events, one a line; any other
reply is its ``body``. No header is kept but ``content-type`` and the retry
hints, and every line is scrubbed of secrets before it is written. The file is
written whole when the step ends (a temporary file, then a rename), so a run
that dies leaves no half cassette; one that is cut short all the same (or
edited by hand into a broken shape) is refused, naming the line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_dotasks.cassette.sse import Event
from pytest_dotasks.errors import DotasksError

VERSION = 1
KEEP_HEADERS = ("content-type", "retry-after", "retry-after-ms", "x-should-retry")
CARRIED = ("prompt", "system", "tools")  # written only when they change
RERECORD = "record it again with --record"


class CassetteError(DotasksError):
    """A cassette that cannot be replayed: missing, damaged, or not this step's."""


@dataclasses.dataclass(frozen=True)
class Header:
    plan: str  # the plan's file name
    step: str  # the step's id ("8", "T001", "1.1")
    title: str
    backend: str
    recorded: str = ""  # when (local ISO time)
    by: str = ""  # pytest-dotasks version


@dataclasses.dataclass
class Exchange:
    n: int
    method: str
    path: str  # as the API sees it (/v1/messages), the step's routing prefix removed
    query: str = ""
    request: dict[str, Any] = dataclasses.field(default_factory=dict)  # match.essentials, normalised
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: Any = None  # a reply that was not streamed: parsed JSON, or text
    events: list[Event] | None = None  # a streamed reply

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclasses.dataclass
class Cassette:
    header: Header
    exchanges: list[Exchange]


def kept_headers(headers: dict[str, str]) -> dict[str, str]:
    low = {k.lower(): v for k, v in headers.items()}
    return {k: low[k] for k in KEEP_HEADERS if k in low}


# ------------------------------------------------------------ writing

def lines_of(cassette: Cassette) -> list[dict[str, Any]]:
    h = cassette.header
    out: list[dict[str, Any]] = [{"type": "cassette", "version": VERSION, **dataclasses.asdict(h)}]
    carried: dict[str, Any] = {}
    for ex in cassette.exchanges:
        req: dict[str, Any] = {"type": "request", "n": ex.n, "method": ex.method, "path": ex.path}
        if ex.query:
            req["query"] = ex.query
        for key, value in ex.request.items():
            if key in CARRIED:
                if carried.get(key, ...) == value:
                    continue
                carried[key] = value
            req[key] = value
        out.append(req)
        resp: dict[str, Any] = {"type": "response", "n": ex.n, "status": ex.status, "headers": ex.headers}
        if ex.events is None:
            resp["body"] = ex.body
        out.append(resp)
        for name, data in ex.events or []:
            out.append({"type": "event", "n": ex.n, "event": name, "data": data})
    out.append({"type": "end", "exchanges": len(cassette.exchanges)})
    return out


def write(path: Path, cassette: Cassette, scrub: Callable[[str], str] = lambda s: s) -> None:
    """Write ``cassette`` to ``path`` whole (temporary file, then rename); every line scrubbed."""
    text = "".join(scrub(json.dumps(line, ensure_ascii=False)) + "\n" for line in lines_of(cassette))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------ reading

class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.exchanges: list[Exchange] = []
        self.carried: dict[str, Any] = {}
        self.header: Header | None = None
        self.ended = False
        self.lines: dict[int, int] = {}  # exchange -> the line of its request
        self.open_blocks: set[Any] = set()  # content blocks of the current reply started and not yet stopped

    def fail(self, line: int | None, message: str, fix: str = RERECORD) -> CassetteError:
        return CassetteError(f"cassette {message}", path=self.path, line=line, fix=fix)

    def take(self, no: int, entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise self.fail(no, "line is not an entry (no 'type'); it was edited by hand")
        if self.ended:
            raise self.fail(no, "has lines after its end line; it was edited by hand")
        kind = entry["type"]
        if self.header is None:
            self._header(no, entry)
        elif kind == "request":
            self._request(no, entry)
        elif kind == "response":
            self._response(no, entry)
        elif kind == "event":
            self._event(no, entry)
        elif kind == "end":
            self._end(no, entry)
        else:
            raise self.fail(no, f"has an unknown entry type {kind!r}; it was edited by hand")

    def _need(self, no: int, entry: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise self.fail(no, f"{entry['type']} line lacks a valid {key!r}; it was edited by hand")
        return value

    def _header(self, no: int, entry: dict[str, Any]) -> None:
        if entry["type"] != "cassette":
            raise self.fail(no, "does not start with a cassette line: not a pytest-dotasks cassette")
        version = self._need(no, entry, "version", int)
        if version > VERSION:
            raise self.fail(no, f"is version {version}, newer than this pytest-dotasks reads ({VERSION})",
                            fix="upgrade pytest-dotasks, or " + RERECORD)
        needed = {k: str(self._need(no, entry, k, (str, int))) for k in ("plan", "step", "title", "backend")}
        self.header = Header(**needed, recorded=str(entry.get("recorded", "")), by=str(entry.get("by", "")))

    def _current(self, no: int, entry: dict[str, Any], what: str) -> Exchange:
        n = self._need(no, entry, "n", int)
        if not self.exchanges or self.exchanges[-1].n != n:
            raise self.fail(no, f"has {what} {n} without its request; it was edited by hand")
        return self.exchanges[-1]

    def _request(self, no: int, entry: dict[str, Any]) -> None:
        n = self._need(no, entry, "n", int)
        if n != len(self.exchanges) + 1:
            raise self.fail(no, f"has request {n} where request {len(self.exchanges) + 1} belongs; "
                                "it was edited by hand")
        if self.exchanges and self.exchanges[-1].status == 0:
            raise self.fail(no, f"request {n - 1} has no response; it was edited by hand")
        method, path = self._need(no, entry, "method", str), self._need(no, entry, "path", str)
        request = {k: v for k, v in entry.items() if k not in ("type", "n", "method", "path", "query")}
        if "model" in request or "roles" in request:  # a Messages request: what was left out is carried
            for key in CARRIED:
                if key in request:
                    self.carried[key] = request[key]
                elif key in self.carried:
                    request[key] = self.carried[key]
        self.exchanges.append(Exchange(n, method, path, str(entry.get("query") or ""), request, status=0))
        self.lines[n] = no
        self.open_blocks = set()

    def _response(self, no: int, entry: dict[str, Any]) -> None:
        ex = self._current(no, entry, "a response to request")
        if ex.status:
            raise self.fail(no, f"has two responses to request {ex.n}; it was edited by hand")
        ex.status = self._need(no, entry, "status", int)
        ex.headers = {str(k).lower(): str(v) for k, v in self._need(no, entry, "headers", dict).items()}
        if "body" in entry:
            ex.body = entry["body"]
        else:
            ex.events = []

    def _event(self, no: int, entry: dict[str, Any]) -> None:
        ex = self._current(no, entry, "an event of reply")
        if ex.events is None:
            raise self.fail(no, f"reply {ex.n} has a body and events; it was edited by hand")
        if "data" not in entry:
            raise self.fail(no, "event line lacks its 'data'; it was edited by hand")
        name, data = self._need(no, entry, "event", str), entry["data"]
        index = data.get("index") if isinstance(data, dict) else None
        if name == "content_block_start":
            self.open_blocks.add(index)
        elif name in ("content_block_delta", "content_block_stop") and index not in self.open_blocks:
            raise self.fail(no, f"reply {ex.n} has a {name} for block {index} that never started; "
                                "it was edited by hand")
        if name == "content_block_stop":
            self.open_blocks.discard(index)
        ex.events.append((name, data))

    def _end(self, no: int, entry: dict[str, Any]) -> None:
        count = self._need(no, entry, "exchanges", int)
        if count != len(self.exchanges):
            raise self.fail(no, f"ends saying {count} exchanges but holds {len(self.exchanges)}; "
                                "it was edited by hand")
        self.ended = True

    def finish(self, lines: int) -> Cassette:
        if self.header is None:
            raise self.fail(None, "is empty")
        for ex in self.exchanges:
            if ex.status == 0:
                raise self.fail(lines, f"is cut short: request {ex.n} has no response")
            problem = stream_problem(ex)
            if problem:
                raise self.fail(self.lines.get(ex.n), f"reply {ex.n} {problem}")
        if not self.ended:
            raise self.fail(lines, "is cut short: it has no end line (truncated, or its recording was interrupted)")
        return Cassette(self.header, self.exchanges)


def stream_problem(ex: Exchange) -> str | None:
    """What is wrong with a streamed Messages reply's events (a damaged cassette), or None."""
    if ex.events is None or ex.status != 200:
        return None
    names = [name for name, _ in ex.events]
    if not names:
        return "is a stream with no events; it was cut short or edited by hand"
    if not ex.path.endswith("/messages") or "error" in names:
        return None
    if names[0] != "message_start" or names[-1] != "message_stop":
        return "does not run from message_start to message_stop; it was cut short or edited by hand"
    started = sum(1 for name in names if name == "content_block_start")
    stopped = sum(1 for name in names if name == "content_block_stop")
    return "leaves a content block open; it was edited by hand" if started != stopped else None


def read(path: Path) -> Cassette:
    """The cassette at ``path``, checked line by line; ``CassetteError`` (one line) when it cannot be replayed."""
    reader = _Reader(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CassetteError("no cassette for this step", path=path,
                            fix="record it with --record, or run with --record-missing") from None
    except OSError as exc:
        raise CassetteError(f"cannot read the cassette: {exc.strerror or exc}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise reader.fail(raw.count(b"\n", 0, exc.start) + 1, "is not UTF-8 text; it was damaged") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        raise reader.fail(len(lines), "is cut short: its last line is incomplete")
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise reader.fail(no, "line is not valid JSON (truncated or edited by hand)") from None
        reader.take(no, entry)
    return reader.finish(len(lines))
