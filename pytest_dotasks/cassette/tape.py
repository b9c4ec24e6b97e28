"""A tape: one step execution's API exchanges, being recorded or being replayed.

The proxy hands each request of a step to that step's tape:

- recording, the tape turns the request into what matters (normalised) and
  the reply into what the cassette keeps (the project's path and the task id
  made placeholders, so the cassette replays in another folder with another
  task id), then writes the cassette when the step ends;
- replaying, the tape answers the n-th request to an endpoint with the n-th
  reply recorded for it, after comparing what matters. A request that
  differs fails the step (an API error the agent cannot get past, and a
  mismatch the pytest face reports), or in lenient mode is answered anyway
  with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pytest_dotasks.cassette import sse
from pytest_dotasks.cassette.match import (
    PLACE_ROOT,
    PLACE_TASK,
    Normalizer,
    essentials,
    first_difference,
    map_strings,
    path_forms,
)
from pytest_dotasks.cassette.store import Cassette, Exchange, Header, kept_headers, write

RECORD, REPLAY = "record", "replay"
RETRIED = (408, 409, 429, 500, 502, 503, 504, 529)  # what the SDKs retry: replayed without the wait


@dataclasses.dataclass
class Reply:
    """What the proxy sends back for a replayed request."""

    status: int
    headers: dict[str, str]
    payload: bytes


def api_error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    """An error in the Messages API's own shape, which both SDKs and the CLI explain."""
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Reply(status, {"content-type": "application/json", "x-should-retry": "false"},
                 json.dumps(body).encode("utf-8"))


def parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Tape:
    """One step execution's exchanges (see the module docstring). Thread-safe."""

    def __init__(self, mode: str, path: Path, header: Header, *, root: Path, task_id: str,
                 scrub: Callable[[str], str] = lambda s: s, shown: str | None = None,
                 cassette: Cassette | None = None, lenient: bool = False, homes: Iterable[str] = ()) -> None:
        self.mode = mode
        self.path = path
        self.shown = shown or str(path)  # how reports name the file
        self.header = header
        self.task_id = task_id
        self.scrub = scrub
        self.lenient = lenient
        self.normalizer = Normalizer([str(root)], homes)
        self._roots = path_forms([str(root)])
        self._root = str(root)
        self.cassette = cassette
        self.recorded: dict[int, Exchange] = {}
        self.requests = 0
        self.served: dict[str, int] = {}  # route -> replies given
        self.mismatches: list[str] = []  # strict: the first one fails the step
        self.warnings: list[str] = []  # lenient mismatches, unused recordings
        self._lock = threading.Lock()

    # ------------------------------------------------------------ both

    def next_number(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests

    def _where(self, n: int, method: str, path: str) -> str:
        return f"request {n} ({method} {path})"

    # ------------------------------------------------------------ recording

    def _volatile(self, text: str) -> bool:
        return self.scrub(text) != text or self.task_id in text or any(r in text for r in self._roots)

    def _keep(self, text: str) -> str:
        """A reply's text as the cassette keeps it: this run's path and task id as placeholders."""
        for root in self._roots:
            if root in text:
                text = text.replace(root, PLACE_ROOT)
        return text.replace(self.task_id, PLACE_TASK) if self.task_id in text else text

    def what_matters(self, body: bytes) -> dict[str, Any]:
        """A Messages request's essentials, normalised and scrubbed ({} for any other request)."""
        data = parse_body(body)
        if not isinstance(data, dict) or "messages" not in data:
            return {}
        return map_strings(self.normalizer.value(essentials(data)), self.scrub)

    def started(self, n: int, method: str, path: str, query: str, body: bytes) -> Exchange:
        """A request being forwarded (recording): what the cassette keeps of it."""
        return Exchange(n, method, path, query, self.what_matters(body), status=0)

    def finished(self, ex: Exchange, status: int, headers: dict[str, str], body: bytes | None,
                 events: list[sse.Event] | None) -> None:
        """The reply arrived whole (recording)."""
        ex.status = status
        ex.headers = kept_headers(headers)
        if events is not None:
            ex.events = [(name, map_strings(data, self._keep)) for name, data in
                         sse.merge_deltas(events, self._volatile)]
        else:
            ex.body = map_strings(parse_body(body or b""), self._keep)
        with self._lock:
            self.recorded[ex.n] = ex

    def close(self, save: bool = True) -> Path | None:
        """End of the step: a recording tape writes its cassette (numbered again from 1)."""
        if self.mode != RECORD or not save:
            return None
        with self._lock:
            exchanges = [self.recorded[n] for n in sorted(self.recorded)]
        for i, ex in enumerate(exchanges, 1):
            ex.n = i
        write(self.path, Cassette(self.header, exchanges), self.scrub)
        return self.path

    # ------------------------------------------------------------ replaying

    def _give(self, text: str) -> str:
        """A recorded reply's text for this run: placeholders back to this path and task id."""
        if PLACE_ROOT in text:
            text = text.replace(PLACE_ROOT, self._root)
        return text.replace(PLACE_TASK, self.task_id) if PLACE_TASK in text else text

    def answer(self, method: str, path: str, body: bytes) -> Reply:
        """The recorded reply to this request (replaying), or the API error saying why there is none."""
        n = self.next_number()
        where = self._where(n, method, path)
        with self._lock:
            if self.mismatches and not self.lenient:
                return api_error(400, f"pytest-dotasks replay stopped: {self.mismatches[0]}")
            route = f"{method} {path}"
            k = self.served.get(route, 0)
            recorded = [ex for ex in (self.cassette.exchanges if self.cassette else []) if ex.route == route]
            if k >= len(recorded):
                why = (f"{where}: {self.shown} holds {len(recorded)} such request{'s' if len(recorded) != 1 else ''}"
                       f" and no reply for this one")
                self.mismatches.append(why)
                return api_error(400, f"pytest-dotasks replay: {why}")
            self.served[route] = k + 1
            ex = recorded[k]
            diff = self._compare(ex, body)
            if diff is not None:
                why = f"{where} differs from {self.shown}: {diff}"
                if not self.lenient:
                    self.mismatches.append(why)
                    return api_error(400, f"pytest-dotasks replay: {why}")
                self.warnings.append(why)
        return self._reply(ex)

    def _compare(self, ex: Exchange, body: bytes) -> str | None:
        return first_difference(ex.request, self.what_matters(body)) if ex.request else None

    def _reply(self, ex: Exchange) -> Reply:
        headers = dict(ex.headers)
        if ex.status in RETRIED:  # the SDK retries it: at once, as the recording did after its wait
            headers.pop("retry-after", None)
            headers["retry-after-ms"] = "1"
        if ex.events is not None:
            events = [(name, map_strings(data, self._give)) for name, data in ex.events]
            headers.setdefault("content-type", "text/event-stream")
            return Reply(ex.status, headers, sse.encode(events))
        body = map_strings(ex.body, self._give)
        payload = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        headers.setdefault("content-type", "application/json")
        return Reply(ex.status, headers, payload.encode("utf-8"))

    def unused(self) -> list[str]:
        """Recorded replies this replay never asked for (the run took a shorter path)."""
        if self.cassette is None:
            return []
        left: list[str] = []
        counts: dict[str, int] = {}
        for ex in self.cassette.exchanges:
            counts[ex.route] = counts.get(ex.route, 0) + 1
            if counts[ex.route] > self.served.get(ex.route, 0):
                left.append(f"{ex.n} ({ex.route})")
        return left
