"""Streamed replies: split into events as bytes arrive, written back the same, deltas joined where needed."""

from __future__ import annotations

from pytest_dotasks.cassette import sse

STREAM = (b"event: message_start\r\ndata: {\"type\": \"message_start\"}\r\n\r\n"
          b": keep-alive comment\n\n"
          b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, "
          b"\"delta\": {\"type\": \"text_delta\", \"text\": \"hel\"}}\n\n"
          b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, "
          b"\"delta\": {\"type\": \"text_delta\", \"text\": \"lo\"}}\n\n"
          b"event: note\ndata: not json\ndata: second line\n\n")


def test_events_are_found_whatever_the_chunks() -> None:
    whole = sse.Splitter().feed(STREAM)
    for size in (1, 3, 7, 64):
        s = sse.Splitter()
        events = []
        for i in range(0, len(STREAM), size):
            events += s.feed(STREAM[i:i + size])
        assert events + s.close() == whole
    assert [name for name, _ in whole] == ["message_start", "content_block_delta", "content_block_delta", "note"]
    assert whole[3][1] == "not json\nsecond line"


def test_a_last_event_without_its_blank_line_is_kept() -> None:
    s = sse.Splitter()
    assert s.feed(b"event: message_stop\ndata: {\"type\": \"message_stop\"}\n") == []
    assert s.close() == [("message_stop", {"type": "message_stop"})]


def test_encoding_gives_the_same_events_back() -> None:
    events = sse.Splitter().feed(STREAM)
    assert sse.Splitter().feed(sse.encode(events)) == events


def test_deltas_are_joined_only_in_blocks_holding_a_value_to_replace() -> None:
    def delta(index: int, value: str) -> sse.Event:
        return "content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": {"type": "input_json_delta", "partial_json": value}}

    events = [delta(0, '{"path": "/ho'), delta(0, 'me/me/x"}'), delta(1, "a"), delta(1, "b")]
    merged = sse.merge_deltas(events, lambda s: "/home/me" in s)
    assert merged == [delta(0, '{"path": "/home/me/x"}'), delta(1, "a"), delta(1, "b")]
    assert sse.merge_deltas(events, lambda s: False) == events
