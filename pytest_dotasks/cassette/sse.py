"""Server-sent events: split a recorded stream into its events, and write them back.

The Messages API streams ``event: NAME`` / ``data: JSON`` pairs separated by
blank lines. A cassette keeps each event (name and parsed data), so a person
reads the reply turn by turn and a replay sends the same events in the same
order.

A content block's text arrives in many small deltas, so a value that must
be replaced (the project's path, the task id, a secret) may be cut in two.
``merge_deltas`` joins the deltas of such a block into its first one: the
value is then whole, and the replayed block carries the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Event = tuple[str, Any]  # (name, data: parsed JSON, or the raw text when it is not JSON)
_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


class Splitter:
    """Feed it bytes as they arrive; it returns the events completed so far."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[Event]:
        data = self._buf + chunk
        held = b"\r" if data.endswith(b"\r") else b""  # a CRLF may be cut between two chunks
        self._buf = data[:len(data) - len(held)].replace(b"\r\n", b"\n")
        out: list[Event] = []
        while b"\n\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n\n", 1)
            event = parse_event(raw.decode("utf-8", "replace"))
            if event is not None:
                out.append(event)
        self._buf += held
        return out

    def close(self) -> list[Event]:
        rest, self._buf = self._buf, b""
        event = parse_event(rest.decode("utf-8", "replace")) if rest.strip() else None
        return [event] if event is not None else []


def parse_event(raw: str) -> Event | None:
    name = "message"
    data: list[str] = []
    for line in raw.split("\n"):
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if not data:
        return None
    text = "\n".join(data)
    try:
        return name, json.loads(text)
    except ValueError:
        return name, text


def encode(events: list[Event]) -> bytes:
    """The events as a stream body again."""
    parts = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        lines = "".join(f"data: {ln}\n" for ln in text.split("\n"))
        parts.append(f"event: {name}\n{lines}\n")
    return "".join(parts).encode("utf-8")


def _delta(data: Any) -> tuple[int, str, str] | None:
    """(block index, delta type, its text) of a content_block_delta carrying text."""
    if not isinstance(data, dict) or data.get("type") != "content_block_delta":
        return None
    delta = data.get("delta")
    if not isinstance(delta, dict) or delta.get("type") not in _DELTA_TEXT:
        return None
    value = delta.get(_DELTA_TEXT[delta["type"]])
    index = data.get("index")
    if not isinstance(value, str) or not isinstance(index, int):
        return None
    return index, delta["type"], value


def merge_deltas(events: list[Event], wanted: Callable[[str], bool]) -> list[Event]:
    """Join the text deltas of each block whose whole text ``wanted`` says holds a value to replace."""
    whole: dict[tuple[int, str], list[str]] = {}
    for _name, data in events:
        d = _delta(data)
        if d is not None:
            whole.setdefault((d[0], d[1]), []).append(d[2])
    merge = {key: "".join(parts) for key, parts in whole.items() if len(parts) > 1 and wanted("".join(parts))}
    if not merge:
        return events
    out: list[Event] = []
    done: set[tuple[int, str]] = set()
    for name, data in events:
        d = _delta(data)
        key = (d[0], d[1]) if d is not None else None
        if key is None or key not in merge:
            out.append((name, data))
        elif key not in done:
            done.add(key)
            delta = dict(data["delta"], **{_DELTA_TEXT[key[1]]: merge[key]})
            out.append((name, dict(data, delta=delta)))
    return out
