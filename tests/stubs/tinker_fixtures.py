"""pytest fixtures for the Tinker API stub.

Register with ``pytest_plugins = ["tests.stubs.tinker_fixtures"]`` (root conftest or a test module).
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from .tinker_stub import API_KEY, TinkerStub

_SDK_ENV = ("TINKER_BASE_URL", "TINKER_API_KEY", "TINKER_CREDENTIAL_CMD", "TINKER_PROJECT_ID", "TINKER_TAGS",
            "CLOUDFLARE_ACCESS_CLIENT_ID", "CLOUDFLARE_ACCESS_CLIENT_SECRET")


@pytest.fixture
def tinker_stub_factory() -> Iterator[Callable[..., TinkerStub]]:
    """``make(mode="ok", api_key=API_KEY)`` starts a stub; all are stopped (hung handlers released) at teardown."""
    started: list[TinkerStub] = []

    def make(mode: str = "ok", api_key: str = API_KEY) -> TinkerStub:
        stub = TinkerStub(mode, api_key).start()
        started.append(stub)
        return stub

    try:
        yield make
    finally:
        for stub in started:
            stub.stop()


@pytest.fixture
def tinker_stub(tinker_stub_factory: Callable[..., TinkerStub], monkeypatch: pytest.MonkeyPatch,
                tmp_path_factory: pytest.TempPathFactory) -> TinkerStub:
    """A started stub in ``ok`` mode; the environment points the real SDK at it with a valid key
    (``TINKER_BASE_URL``, ``TINKER_API_KEY``), telemetry off, and no stored login in the way."""
    stub = tinker_stub_factory("ok")
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TINKER_BASE_URL", stub.url)
    monkeypatch.setenv("TINKER_API_KEY", API_KEY)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))  # no ~/.tinker/credentials.json
    return stub


@pytest.fixture
def closed_port_url() -> str:
    """``http://127.0.0.1:PORT`` with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
