"""Named service probes (``check: tinker``, ``check: anthropic``) with the real SDKs and local stubs.

Every server here is on 127.0.0.1. Timing asserts are loose (timeout + 5 s).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_dotasks.run import probes
from pytest_dotasks.run.probes import NAMED_PROBES, ProbeResult, probe_anthropic, probe_tinker
from tests.paths import REPO
from tests.stubs.anthropic_stub import API_KEY as ANTHROPIC_KEY
from tests.stubs.anthropic_stub import AnthropicStub
from tests.stubs.tinker_stub import API_KEY as TINKER_KEY
from tests.stubs.tinker_stub import TinkerStub

# A generous limit for probes that must answer: only a hang guard on a loaded machine
# (importing an SDK alone can take seconds there). Hang behaviour has its own short limits.
LIMIT = 120.0

pytest_plugins = ["tests.stubs.tinker_fixtures"]

needs_tinker = pytest.mark.skipif(importlib.util.find_spec("tinker") is None, reason="tinker SDK not installed")

HANG_TIMEOUT = 1.0

_SDK_ENV = ("TINKER_BASE_URL", "TINKER_API_KEY", "TINKER_CREDENTIAL_CMD", "TINKER_PROJECT_ID",
            "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE",
            "ANTHROPIC_CUSTOM_HEADERS")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, URL or stored login from the developer's machine; no SDK telemetry."""
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TINKER_TELEMETRY", "0")


def tinker_env(url: str, key: str | None = TINKER_KEY) -> dict[str, str]:
    env = {"TINKER_BASE_URL": url}
    if key is not None:
        env["TINKER_API_KEY"] = key
    return env


def anthropic_env(url: str, key: str | None = ANTHROPIC_KEY) -> dict[str, str]:
    env = {"ANTHROPIC_BASE_URL": url}
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    return env


def one_line(result: ProbeResult) -> str:
    assert isinstance(result, ProbeResult)
    assert result.reason and "\n" not in result.reason
    assert result.seconds >= 0
    return result.reason


# ------------------------------------------------------------------ registry and imports


def test_named_probes_registry() -> None:
    assert NAMED_PROBES == {"tinker": probe_tinker, "anthropic": probe_anthropic}


def test_importing_probes_imports_no_sdk() -> None:
    code = ("import json, sys; import pytest_dotasks.run.probes; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('anthropic', 'tinker', 'httpx', 'httpx2', 'pytest'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


# ------------------------------------------------------------------ tinker


@needs_tinker
def test_tinker_ok_through_the_sdk(tinker_stub: TinkerStub) -> None:
    result = probe_tinker(LIMIT, os.environ)
    assert result.ok, result.reason
    assert tinker_stub.url in one_line(result)
    paths = tinker_stub.paths()
    assert "/api/v1/client/config" in paths
    assert "/api/v1/get_server_capabilities" in paths  # the SDK's own key check ran
    assert not any(p.startswith("/api/v1/create_session") for p in paths)  # no session, nothing billed
    assert {r.headers.get("x-api-key") for r in tinker_stub.requests} == {TINKER_KEY}


@pytest.mark.parametrize(("mode", "expected"), [
    ("401", "tinker rejected the key (401)"),
    ("late401", "tinker rejected the key (401)"),  # config answered; the SDK's capabilities check refused
    ("403", "(403 permission denied)"),
    ("402", "billing is not set up (402)"),
])
@needs_tinker
def test_tinker_refusals(tinker_stub_factory: Callable[..., TinkerStub], mode: str, expected: str) -> None:
    stub = tinker_stub_factory(mode)
    result = probe_tinker(LIMIT, tinker_env(stub.url))
    assert not result.ok
    reason = one_line(result)
    assert expected in reason and stub.url in reason
    if mode != "402":
        assert reason.endswith("check TINKER_API_KEY") or "that TINKER_API_KEY belongs" in reason


@needs_tinker
def test_tinker_wrong_key_is_rejected(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    stub = tinker_stub_factory("ok")
    result = probe_tinker(LIMIT, tinker_env(stub.url, "tml-not-the-right-key"))
    assert not result.ok
    assert one_line(result) == f"tinker rejected the key (401) at {stub.url}; check TINKER_API_KEY"


@needs_tinker
def test_tinker_malformed_key(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    stub = tinker_stub_factory("ok")
    result = probe_tinker(LIMIT, tinker_env(stub.url, "sk-ant-this-is-not-a-tinker-key"))
    assert not result.ok
    assert "tml-" in one_line(result) and "TINKER_API_KEY" in result.reason
    assert stub.requests == []  # refused by the SDK before anything was sent


@needs_tinker
def test_tinker_connection_refused(closed_port_url: str) -> None:
    result = probe_tinker(LIMIT, tinker_env(closed_port_url))
    assert not result.ok
    assert one_line(result).startswith(f"cannot connect to tinker at {closed_port_url}: connection refused")


@needs_tinker
def test_tinker_never_answers(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    stub = tinker_stub_factory("hang")
    result = probe_tinker(HANG_TIMEOUT, tinker_env(stub.url))
    assert not result.ok
    assert one_line(result).startswith(f"tinker did not answer within {HANG_TIMEOUT:g}s at {stub.url}")
    assert stub.requests  # it did reach the server


@needs_tinker
def test_tinker_missing_key(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    stub = tinker_stub_factory("ok")
    result = probe_tinker(LIMIT, tinker_env(stub.url, key=None))
    assert not result.ok
    assert one_line(result).startswith("TINKER_API_KEY is not set; export it")
    assert stub.requests == []


@needs_tinker
def test_tinker_empty_key_counts_as_missing(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    stub = tinker_stub_factory("ok")
    assert probe_tinker(LIMIT, tinker_env(stub.url, key="  ")).reason.startswith("TINKER_API_KEY is not set")


@needs_tinker
def test_tinker_stored_login_is_used(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    """A user who ran `tinker auth login` has no TINKER_API_KEY; the SDK (and the probe) use the stored key."""
    stub = tinker_stub_factory("ok")
    store = Path(os.environ["HOME"], ".tinker", "credentials.json")
    store.parent.mkdir()
    store.write_text(json.dumps({"version": 1, "default": "me",
                                 "keys": {"me": {"type": "manual", "key": TINKER_KEY, "name": "me"}}}))
    result = probe_tinker(LIMIT, tinker_env(stub.url, key=None))
    assert result.ok, result.reason
    assert "tinker auth login" in result.reason


def test_tinker_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tinker", None)  # `import tinker` now raises ImportError
    result = probe_tinker(5, {"TINKER_API_KEY": TINKER_KEY})
    assert not result.ok
    assert "pip install 'pytest-dotasks[tinker]'" in one_line(result)


@needs_tinker
def test_tinker_reasons_are_distinct(tinker_stub_factory: Callable[..., TinkerStub], closed_port_url: str) -> None:
    ok = tinker_stub_factory("ok")
    reasons = {
        "missing": probe_tinker(LIMIT, tinker_env(ok.url, key=None)).reason,
        "rejected": probe_tinker(LIMIT, tinker_env(tinker_stub_factory("401").url)).reason,
        "refused": probe_tinker(LIMIT, tinker_env(closed_port_url)).reason,
        "hang": probe_tinker(0.5, tinker_env(tinker_stub_factory("hang").url)).reason,
    }
    kinds = {k: r.split(" at ")[0].split(";")[0].split(":")[0] for k, r in reasons.items()}
    assert len(set(kinds.values())) == 4, reasons


@needs_tinker
def test_probe_returns_in_time_when_the_sdk_ignores_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK call that blocks past every timeout is abandoned at the probe's deadline."""
    release = threading.Event()

    def stuck(*args: object, **kwargs: object) -> None:
        release.wait(60)

    monkeypatch.setattr(probes, "_tinker_first_contact", stuck)
    try:
        result = probe_tinker(1.0, tinker_env("http://127.0.0.1:9"))
    finally:
        release.set()
    assert not result.ok and "did not answer within 1s" in result.reason


# ------------------------------------------------------------------ anthropic


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicStub]:
    stub = AnthropicStub(ANTHROPIC_KEY).start()
    yield stub
    stub.stop()


def test_anthropic_ok_through_the_sdk(anthropic_server: AnthropicStub) -> None:
    result = probe_anthropic(LIMIT, anthropic_env(anthropic_server.url))
    assert result.ok, result.reason
    assert anthropic_server.url in one_line(result)
    [request] = anthropic_server.requests  # one request, nothing billed
    assert request.method == "GET" and request.path.startswith("/v1/models")
    assert "limit=1" in request.path


def test_anthropic_auth_token(anthropic_server: AnthropicStub) -> None:
    env = {"ANTHROPIC_BASE_URL": anthropic_server.url, "ANTHROPIC_AUTH_TOKEN": ANTHROPIC_KEY}
    result = probe_anthropic(LIMIT, env)
    assert result.ok, result.reason
    assert "ANTHROPIC_AUTH_TOKEN" in result.reason


def test_anthropic_rejected_key(anthropic_server: AnthropicStub) -> None:
    result = probe_anthropic(LIMIT, anthropic_env(anthropic_server.url, "sk-ant-wrong"))
    assert not result.ok
    assert one_line(result) == f"anthropic rejected the key (401) at {anthropic_server.url}; check ANTHROPIC_API_KEY"
    assert len(anthropic_server.requests) == 1  # not retried


def test_anthropic_connection_refused(closed_port_url: str) -> None:
    result = probe_anthropic(LIMIT, anthropic_env(closed_port_url))
    assert not result.ok
    assert one_line(result).startswith(f"cannot connect to anthropic at {closed_port_url}: connection refused")


def test_anthropic_never_answers(tinker_stub_factory: Callable[..., TinkerStub]) -> None:
    hung = tinker_stub_factory("hang")  # hangs on every path, /v1/models included
    result = probe_anthropic(HANG_TIMEOUT, anthropic_env(hung.url))
    assert not result.ok
    assert one_line(result).startswith(f"anthropic did not answer within {HANG_TIMEOUT:g}s at {hung.url}")
    assert len(hung.requests) == 1  # sent once, not retried


def test_anthropic_missing_key(anthropic_server: AnthropicStub) -> None:
    result = probe_anthropic(LIMIT, anthropic_env(anthropic_server.url, key=None))
    assert not result.ok
    assert one_line(result) == "ANTHROPIC_API_KEY is not set; export it or add it to the environment"
    assert anthropic_server.requests == []
