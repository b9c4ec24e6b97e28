"""The deck: a tape per step execution, the environment it needs, and why a replay cannot start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from pytest_dotasks.cassette import store
from pytest_dotasks.cassette.deck import PLACEHOLDER_KEY, Deck, with_loopback
from pytest_dotasks.cassette.store import Cassette, Exchange, Header
from pytest_dotasks.cassette.tape import RECORD, REPLAY

HEADER = Header("SPEC.md", "3", "Explore the dataset", "anthropic")


def cassette(path: Path, header: Header = HEADER) -> Path:
    store.write(path, Cassette(header, [Exchange(1, "GET", "/v1/models", "", {}, 200,
                                                 {"content-type": "application/json"}, body={"data": []})]))
    return path


def test_a_missing_cassette_still_gets_a_tape_so_nothing_reaches_the_network(tmp_path: Path) -> None:
    deck = Deck(REPLAY)
    try:
        st = deck.open(tmp_path / "step3.jsonl", HEADER, root=tmp_path, task_id="task_3_0badc0de",
                       shown="cassettes/SPEC/step3.jsonl")
        assert st.problem is not None and st.problem.one_line() == (
            "cassettes/SPEC/step3.jsonl: no cassette for this step; record it with --record, or run with "
            "--record-missing")
        assert st.env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")
        assert st.env["ANTHROPIC_BASE_URL"].endswith("/step/3/task_3_0badc0de")
        assert st.env["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY
        res = httpx.get(st.env["ANTHROPIC_BASE_URL"] + "/v1/models", timeout=10)
        assert res.status_code == 400 and "holds 0 such requests" in res.json()["error"]["message"]
        assert deck.close(st) is None
    finally:
        deck.stop()


def test_record_missing_records_what_has_no_cassette(tmp_path: Path) -> None:
    deck = Deck(REPLAY, record_missing=True)
    try:
        st = deck.open(tmp_path / "step3.jsonl", HEADER, root=tmp_path, task_id="task_3_0badc0de")
        assert st.mode == RECORD and st.problem is None and "ANTHROPIC_API_KEY" not in st.env
        assert deck.close(st) == tmp_path / "step3.jsonl"  # an empty recording is still a cassette
        assert store.read(tmp_path / "step3.jsonl").exchanges == []
        broken = tmp_path / "step4.jsonl"
        broken.write_text("{")
        st = deck.open(broken, HEADER, root=tmp_path, task_id="task_4_0badc0de")
        assert st.mode == REPLAY and st.problem is not None  # a damaged cassette is not a missing one
    finally:
        deck.stop()


@pytest.mark.parametrize(("recorded", "says"), [
    (Header("OTHER.md", "3", "Train the model", "anthropic"),
     'was recorded for STEP 3 "Train the model" of OTHER.md, not for STEP 3 "Explore the dataset" of SPEC.md'),
    (Header("OTHER.md", "3", "Explore the dataset", "anthropic"), "was recorded for OTHER.md, not SPEC.md"),
    (Header("SPEC.md", "4", "Explore the dataset", "anthropic"), 'recorded for STEP 4 "Explore the dataset"'),
    (Header("SPEC.md", "3", "Explore the dataset", "claude-code"),
     "was recorded with --agent-backend claude-code; this run uses anthropic"),
])
def test_a_cassette_of_another_plan_step_or_backend_is_refused(tmp_path: Path, recorded: Header, says: str) -> None:
    path = cassette(tmp_path / "step3.jsonl", recorded)
    deck = Deck(REPLAY)
    try:
        st = deck.open(path, HEADER, root=tmp_path, task_id="task_3_0badc0de", shown="c/step3.jsonl")
        assert st.problem is not None and says in st.problem.one_line()
        assert st.problem.one_line().startswith("c/step3.jsonl: cassette ")
    finally:
        deck.stop()
    deck = Deck(REPLAY)  # whitespace in a title does not count
    try:
        ok = cassette(tmp_path / "ok.jsonl", Header("SPEC.md", "3", "Explore  the\tdataset", "anthropic"))
        assert deck.open(ok, HEADER, root=tmp_path, task_id="task_3_0badc0de").problem is None
    finally:
        deck.stop()


def test_a_dry_run_or_a_step_stopped_in_preflight_writes_no_cassette(tmp_path: Path) -> None:
    for deck, keep in ((Deck(RECORD, save=False), True), (Deck(RECORD), False)):
        try:
            st = deck.open(tmp_path / "step3.jsonl", HEADER, root=tmp_path, task_id="task_3_0badc0de")
            assert deck.close(st, keep=keep) is None
        finally:
            deck.stop()
    assert not (tmp_path / "step3.jsonl").exists()


def test_the_proxy_is_reached_directly_even_behind_an_http_proxy(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert with_loopback(None) == "127.0.0.1"
    assert with_loopback("example.com, localhost") == "example.com,localhost,127.0.0.1"
    assert with_loopback("*") == "*"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing there: using it would fail
    monkeypatch.setenv("NO_PROXY", "example.com")
    monkeypatch.delenv("no_proxy", raising=False)
    deck = Deck(REPLAY)
    st = deck.open(cassette(tmp_path / "step3.jsonl"), HEADER, root=tmp_path, task_id="task_3_0badc0de")
    try:
        assert os.environ["NO_PROXY"] == os.environ["no_proxy"] == "example.com,127.0.0.1"
        assert st.env["NO_PROXY"] == "example.com,127.0.0.1"
        with httpx.Client(timeout=10) as client:  # trust_env: it would use HTTPS_PROXY if it applied
            assert client.get(st.env["ANTHROPIC_BASE_URL"] + "/v1/models").json() == {"data": []}
    finally:
        deck.stop()
    assert os.environ["NO_PROXY"] == "example.com" and "no_proxy" not in os.environ
    assert json.loads((tmp_path / "step3.jsonl").read_text().splitlines()[-1]) == {"type": "end", "exchanges": 1}
