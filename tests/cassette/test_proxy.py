"""The proxy with real HTTP: the real anthropic SDK through it, the local Messages stub behind it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from pytest_dotasks.cassette import store
from pytest_dotasks.cassette.proxy import Proxy
from pytest_dotasks.cassette.store import Header
from pytest_dotasks.cassette.tape import RECORD, REPLAY, Tape
from tests.stubs.anthropic_stub import API_KEY, AnthropicStub, text, tool_use

HEADER = Header("SPEC.md", "1", "Make the greeting", "anthropic")
TASK = "task_1_0badc0de"
TOOLS = [{"name": "Write", "description": "Write a file.",
          "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]


def ask(base_url: str, prompt: str = f"Execute STEP 1 (task id: {TASK})", system: str = "You are the executor.",
        history: list[dict[str, Any]] | None = None, retries: int = 0) -> Any:
    client = anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=retries)
    try:
        with client.messages.stream(
                model="claude-haiku-4-5", max_tokens=100, tools=TOOLS,  # type: ignore[arg-type]
                system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                messages=history or [{"role": "user", "content": prompt}]) as stream:  # type: ignore[arg-type]
            return stream.get_final_message()
    finally:
        client.close()


def then(first: Any, prompt: str = f"Execute STEP 1 (task id: {TASK})") -> list[dict[str, Any]]:
    """The history after ``first`` called a tool: the tool's result goes back."""
    call = first.content[0]
    return [{"role": "user", "content": prompt},
            {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                               "input": call.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "written"}]}]


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy("http://127.0.0.1:9") as p:
        yield p


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(cassette, the recording's project root): a tool call, then the final words, recorded through the proxy."""
    root = tmp_path / "laptop" / "proj_1"
    root.mkdir(parents=True)
    with AnthropicStub() as stub:
        stub.reply(tool_use("Write", {"file_path": f"{root}/hello.py"}))
        stub.reply(text(f"Wrote {root}/hello.py for {TASK}; key {API_KEY}.\nSTEP RESULT: SUCCESS"))
        tape = Tape(RECORD, root / "cassettes" / "SPEC" / "step1.jsonl", HEADER, root=root, task_id=TASK,
                    scrub=lambda s: s.replace(API_KEY, "***"))
        with Proxy(stub.url) as p:
            base = p.add(tape)
            first = ask(base, system=f"Project root: {root}.")
            last = ask(base, system=f"Project root: {root}.", history=then(first))
        assert stub.violations == []
        assert [r.path for r in stub.message_requests] == ["/v1/messages", "/v1/messages"]
        sent = stub.message_requests[0].headers
        assert API_KEY in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))  # forwarded
    assert first.content[0].input == {"file_path": f"{root}/hello.py"}
    assert last.content[0].text.startswith(f"Wrote {root}/hello.py")  # relayed as the stub sent it
    path = tape.close()
    assert path is not None
    yield path, root


def test_it_binds_loopback_on_a_free_port_and_stops() -> None:
    a, b = Proxy().start(), Proxy().start()
    try:
        assert a.url.startswith("http://127.0.0.1:") and a.url != b.url
        assert a._server is not None and a._server.server_address[0] == "127.0.0.1"
    finally:
        b.stop()
    port = int(a.url.rsplit(":", 1)[1])
    a.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_a_request_for_no_step_gets_an_api_error(proxy: Proxy) -> None:
    res = httpx.get(f"{proxy.url}/step/1/task_1_00000000/v1/models", timeout=10)
    assert res.status_code == 404
    assert res.json()["error"]["message"] == "pytest-dotasks proxy: no step is recording or replaying at /v1/models"


def test_the_cassette_keeps_the_stream_without_credentials_or_machine_paths(recorded: tuple[Path, Path]) -> None:
    path, root = recorded
    raw = path.read_text()
    assert API_KEY not in raw and "x-api-key" not in raw.lower() and "authorization" not in raw.lower()
    assert str(root) not in raw and TASK not in raw
    lines = [json.loads(x) for x in raw.splitlines()]
    requests = [x for x in lines if x["type"] == "request"]
    assert requests[0]["system"] == "Project root: <dotasks:root>."
    assert requests[0]["prompt"] == "Execute STEP 1 (task id: <dotasks:task_id>)"
    assert requests[1]["roles"] == ["user", "assistant", "user"]
    deltas = [x["data"]["delta"] for x in lines if x["type"] == "event" and x["event"] == "content_block_delta"]
    # The stub cut the last text in two halves; the block holding the path and key is kept as one delta.
    assert deltas[-1]["text"] == "Wrote <dotasks:root>/hello.py for <dotasks:task_id>; key ***.\nSTEP RESULT: SUCCESS"
    assert json.loads(deltas[0]["partial_json"]) == {"file_path": "<dotasks:root>/hello.py"}


def replay_tape(path: Path, root: Path, task: str = "task_1_feedbeef", lenient: bool = False) -> Tape:
    return Tape(REPLAY, path, HEADER, root=root, task_id=task, cassette=store.read(path), lenient=lenient,
                shown="cassettes/SPEC/step1.jsonl")


def test_a_replay_answers_in_another_folder_with_nothing_behind_it(recorded: tuple[Path, Path], tmp_path: Path,
                                                                 proxy: Proxy) -> None:
    path, _ = recorded
    ci = tmp_path / "ci" / "work"
    ci.mkdir(parents=True)
    tape = replay_tape(path, ci)
    base = proxy.add(tape)
    prompt = "Execute STEP 1 (task id: task_1_feedbeef)"
    first = ask(base, prompt, system=f"Project root: {ci}.")
    assert first.content[0].input == {"file_path": f"{ci}/hello.py"}  # this folder, not the laptop's
    last = ask(base, prompt, system=f"Project root: {ci}.", history=then(first, prompt))
    assert last.content[0].text == f"Wrote {ci}/hello.py for task_1_feedbeef; key ***.\nSTEP RESULT: SUCCESS"
    assert tape.mismatches == [] and tape.warnings == [] and tape.unused() == []


def test_a_request_that_differs_fails_naming_the_first_difference(recorded: tuple[Path, Path], tmp_path: Path,
                                                                  proxy: Proxy) -> None:
    path, _ = recorded
    tape = replay_tape(path, tmp_path)
    base = proxy.add(tape)
    with pytest.raises(anthropic.BadRequestError) as err:
        ask(base, "Execute STEP 1 (task id: task_1_feedbeef)", system="You are someone else.")
    message = err.value.body["error"]["message"]  # type: ignore[index]
    assert message.startswith("pytest-dotasks replay: request 1 (POST /v1/messages) differs from "
                              "cassettes/SPEC/step1.jsonl: system prompt, line 1: recorded")
    assert tape.mismatches == [message.removeprefix("pytest-dotasks replay: ")]
    with pytest.raises(anthropic.BadRequestError, match="replay stopped"):  # nothing more is answered
        ask(base, "Execute STEP 1 (task id: task_1_feedbeef)", system=f"Project root: {tmp_path}.")


def test_lenient_replay_answers_a_differing_request_with_a_warning(recorded: tuple[Path, Path], tmp_path: Path,
                                                                   proxy: Proxy) -> None:
    path, _ = recorded
    tape = replay_tape(path, tmp_path, lenient=True)
    base = proxy.add(tape)
    first = ask(base, "Execute STEP 1, differently", system=f"Project root: {tmp_path}.")
    assert first.content[0].name == "Write"
    assert tape.mismatches == [] and len(tape.warnings) == 1 and "the step's prompt" in tape.warnings[0]
    assert tape.unused() == ["2 (POST /v1/messages)"]


def test_a_request_beyond_the_recording_gets_no_reply(recorded: tuple[Path, Path], tmp_path: Path,
                                                      proxy: Proxy) -> None:
    path, _ = recorded
    tape = replay_tape(path, tmp_path, lenient=True)
    base = proxy.add(tape)
    system, prompt = f"Project root: {tmp_path}.", "Execute STEP 1 (task id: task_1_feedbeef)"
    first = ask(base, prompt, system=system)
    ask(base, prompt, system=system, history=then(first, prompt))
    with pytest.raises(anthropic.BadRequestError, match="holds 2 such requests and no reply for this one"):
        ask(base, prompt, system=system)
    assert len(tape.mismatches) == 1  # even lenient: there is nothing to answer with


def test_a_plain_json_call_and_a_retried_error_are_recorded_and_replayed(tmp_path: Path, proxy: Proxy) -> None:
    with AnthropicStub() as stub:
        stub.fail(529, "Overloaded", retry_after_ms=50).reply(text("hi"))
        tape = Tape(RECORD, tmp_path / "c.jsonl", HEADER, root=tmp_path, task_id=TASK)
        with Proxy(stub.url) as p:
            base = p.add(tape)
            models = anthropic.Anthropic(base_url=base, api_key=API_KEY, max_retries=0).models.list(limit=1)
            assert ask(base, retries=2).content[0].text == "hi"  # the 529 was retried by the SDK
    tape.close()
    cassette = store.read(tmp_path / "c.jsonl")
    assert [(e.route, e.status) for e in cassette.exchanges] == [
        ("GET /v1/models", 200), ("POST /v1/messages", 529), ("POST /v1/messages", 200)]
    base = proxy.add(Tape(REPLAY, tmp_path / "c.jsonl", HEADER, root=tmp_path, task_id=TASK, cassette=cassette,
                          lenient=True))
    again = anthropic.Anthropic(base_url=base, api_key="not-a-key", max_retries=0).models.list(limit=1)
    assert [m.id for m in again.data] == [m.id for m in models.data]
    res = httpx.post(f"{base}/v1/messages", json={"model": "claude-haiku-4-5", "messages": []}, timeout=10)
    assert res.status_code == 529 and res.headers["retry-after-ms"] == "1"  # no waiting in a replay


def test_an_unreachable_api_while_recording_is_a_502_saying_so(tmp_path: Path, closed_port_url: str) -> None:
    with Proxy(closed_port_url) as p:
        base = p.add(Tape(RECORD, tmp_path / "c.jsonl", HEADER, root=tmp_path, task_id=TASK))
        with pytest.raises(anthropic.InternalServerError) as err:
            ask(base)
    assert err.value.status_code == 502
    assert f"pytest-dotasks recording proxy: cannot reach {closed_port_url}: ConnectError" in str(err.value)
