"""The cassette file: written whole and reviewable, read back checked, refused in one line when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_dotasks.cassette import store
from pytest_dotasks.cassette.store import Cassette, CassetteError, Exchange, Header

HEADER = Header("SPEC.md", "3", "Explore the dataset", "anthropic", "2026-11-24T10:30:12", "pytest-dotasks 0.1.0")
SECRET = "sk-ant-secret-0123456789abcdef"


def stream(text: str) -> list[tuple[str, object]]:
    return [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "content": [], "usage": {}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def request(prompt: str = "Execute STEP 3", system: str = "You are the executor.",
            roles: tuple[str, ...] = ("user",)) -> dict[str, object]:
    return {"model": "claude-haiku-4-5", "roles": list(roles), "prompt": prompt, "system": system,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]}


def sample() -> Cassette:
    return Cassette(HEADER, [
        Exchange(1, "GET", "/v1/models", "limit=1", {}, 200, {"content-type": "application/json"},
                 body={"data": [{"id": "claude-haiku-4-5"}]}),
        Exchange(2, "POST", "/v1/messages", "", request(), 200, {"content-type": "text/event-stream"},
                 events=stream("working")),
        Exchange(3, "POST", "/v1/messages", "", request(roles=("user", "assistant", "user")), 529,
                 {"content-type": "application/json", "retry-after": "3"},
                 body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        Exchange(4, "POST", "/v1/messages", "", request(roles=("user", "assistant", "user")), 200,
                 {"content-type": "text/event-stream"}, events=stream(f"done, key {SECRET}\nSTEP RESULT: SUCCESS")),
    ])


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "cassettes" / "SPEC" / "step3.jsonl"
    store.write(path, sample(), lambda s: s.replace(SECRET, "***"))
    return path


def test_a_cassette_reads_back_as_written(written: Path) -> None:
    back = store.read(written)
    assert back.header == HEADER
    expected = sample()
    expected.exchanges[3].events = stream("done, key ***\nSTEP RESULT: SUCCESS")
    assert back.exchanges == expected.exchanges


def test_it_is_plain_json_lines_without_repeats_or_secrets(written: Path) -> None:
    text = written.read_text()
    assert SECRET not in text and "***" in text
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["type"] for x in lines][:4] == ["cassette", "request", "response", "request"]
    assert lines[-1] == {"type": "end", "exchanges": 4}
    requests = [x for x in lines if x["type"] == "request"]
    assert "system" in requests[1] and "system" not in requests[2] and "system" not in requests[3]  # carried
    assert requests[2]["roles"] == ["user", "assistant", "user"]
    assert sum(1 for x in lines if x["type"] == "event") == 12
    assert list(written.parent.iterdir()) == [written]  # no temporary file left behind


def test_a_missing_cassette_is_named(tmp_path: Path) -> None:
    with pytest.raises(CassetteError) as err:
        store.read(tmp_path / "step3.jsonl")
    assert err.value.one_line() == (f"{tmp_path / 'step3.jsonl'}: no cassette for this step; "
                                    "record it with --record, or run with --record-missing")


def _damaged(path: Path, text: str) -> str:
    path.write_text(text)
    with pytest.raises(CassetteError) as err:
        store.read(path)
    line = err.value.one_line()
    assert "\n" not in line and str(path) in line
    return line


def test_a_truncated_cassette_is_refused_naming_the_line(written: Path) -> None:
    text = written.read_text()
    lines = text.splitlines(keepends=True)
    assert ":9: cassette is cut short: its last line is incomplete" in _damaged(written, "".join(lines[:8]) + lines[8][:30])
    assert "cassette is cut short: it has no end line" in _damaged(written, "".join(lines[:-1]))
    cut = "".join(lines[:7])  # request 2 with only the start of its reply
    assert ":4: cassette reply 2 does not run from message_start to message_stop" in _damaged(written, cut + lines[-1].replace("4", "2"))
    assert "cassette is cut short: request 1 has no response" in _damaged(written, "".join(lines[:2]))
    assert "cassette is empty" in _damaged(written, "")


def test_a_hand_edited_cassette_is_refused_naming_the_line(written: Path) -> None:
    lines = written.read_text().splitlines(keepends=True)

    def edit(i: int, new: str | None) -> str:
        out = list(lines)
        if new is None:
            del out[i]
        else:
            out[i] = new + "\n"
        return _damaged(written, "".join(out))

    assert ":3: cassette line is not valid JSON" in edit(2, lines[2][:-3] + "}")
    assert "has request 5 where request 2 belongs" in edit(3, lines[3].replace('"n": 2', '"n": 5').rstrip("\n"))
    assert "unknown entry type 'comment'" in edit(4, '{"type": "comment", "text": "looks fine"}')
    assert "reply 4 does not run from message_start to message_stop" in edit(len(lines) - 2, None)
    last = next(i for i, x in enumerate(lines) if '"type": "request", "n": 4' in x)
    assert "ends saying 4 exchanges but holds 3" in _damaged(written, "".join(lines[:last] + lines[-1:]))
    assert "does not start with a cassette line" in edit(0, '{"type": "request", "n": 1}')
    assert "has lines after its end line" in _damaged(written, "".join(lines) + '{"type": "end", "exchanges": 4}\n')
    assert "lacks a valid 'status'" in edit(2, lines[2].replace('"status": 200', '"status": "200"').rstrip("\n"))
    assert "block 0 that never started" in edit(6, None)  # content_block_start of reply 2 removed
    assert "is not an entry" in edit(1, "[1, 2, 3]")


def test_a_cassette_from_a_newer_pytest_dotasks_says_so(written: Path) -> None:
    lines = written.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"version": 1', '"version": 7')
    line = _damaged(written, "".join(lines))
    assert "is version 7, newer than this pytest-dotasks reads (1)" in line and "upgrade pytest-dotasks" in line


def test_bytes_that_are_not_utf8_are_refused(written: Path) -> None:
    written.write_bytes(written.read_bytes()[:200] + b"\xff\xfe" + written.read_bytes()[200:])
    with pytest.raises(CassetteError, match="not UTF-8"):
        store.read(written)
