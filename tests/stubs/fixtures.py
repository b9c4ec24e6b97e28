"""pytest fixtures for the Anthropic API stub.

Register with ``pytest_plugins = ["tests.stubs.fixtures"]`` (root conftest or a test module).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .anthropic_stub import API_KEY, AnthropicStub


@pytest.fixture
def anthropic_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicStub]:
    """A started stub; the environment points the SDK at it with a valid key.

    Only 127.0.0.1 is contacted. Tests script it (``anthropic_stub.reply(...)``)
    and end by asserting ``anthropic_stub.violations == []``.
    """
    stub = AnthropicStub(API_KEY).start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield stub
    finally:
        stub.stop()
