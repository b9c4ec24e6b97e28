"""Prices and output limits per model family, read from the package's prices.json."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from pytest_dotasks.agent.pricing import default_family, model_families, model_family
from pytest_dotasks.agent.session import Usage


def test_model_family_prices_and_limits() -> None:
    assert model_family("claude-opus-4-1").input == 15.0
    assert model_family("claude-opus-4-5-20251101").input == 5.0
    assert model_family("claude-haiku-4-5").output == 5.0
    assert model_family("anthropic.claude-3-5-haiku-20241022-v1:0").max_output == 8192
    assert model_family("some-other-model").max_output == 8192
    assert model_family("claude-sonnet-5-5").input == 3.0  # a tier fallback
    u = Usage()
    u.add("claude-haiku-4-5", {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    assert u.cost_usd == pytest.approx(6.0) and u.total == 2_000_000


def test_the_table_is_package_data_read_as_json() -> None:
    raw = json.loads(resources.files("pytest_dotasks.agent").joinpath("prices.json").read_text())
    assert set(raw["families"]) == set(model_families())
    assert model_families()["claude-haiku-4"].cache_read == raw["families"]["claude-haiku-4"]["cache_read"]
    assert default_family().max_output == raw["default"]["max_output"] == 8192
