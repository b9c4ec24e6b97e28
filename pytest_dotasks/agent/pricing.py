"""What a model costs and how much it may write a turn: the table is data, ``prices.json``.

Prices change and new families appear more often than this code does, so the
table lives in ``prices.json`` beside this module (package data), read once,
on the first price asked for. A model id is priced by the longest family key
it contains, so Bedrock and Vertex ids (``anthropic.claude-3-5-haiku-...``)
match too; an id matching none gets the table's ``default``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources

PRICES_FILE = "prices.json"


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """USD per million tokens, and the largest ``max_tokens`` a turn asks for."""

    input: float
    output: float
    cache_write: float  # 5-minute cache writes
    cache_read: float
    max_output: int


def _family(name: str, data: object) -> ModelFamily:
    fields = data if isinstance(data, dict) else {}
    try:
        return ModelFamily(float(fields["input"]), float(fields["output"]), float(fields["cache_write"]),
                           float(fields["cache_read"]), int(fields["max_output"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{PRICES_FILE}: '{name}' needs input, output, cache_write, cache_read (numbers) "
                         f"and max_output (an integer): {exc}") from None


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, ModelFamily], ModelFamily]:
    raw = json.loads(resources.files("pytest_dotasks.agent").joinpath(PRICES_FILE).read_text(encoding="utf-8"))
    families = {name: _family(name, value) for name, value in raw["families"].items()}
    return families, _family("default", raw["default"])


def model_families() -> dict[str, ModelFamily]:
    """The family table: key (a fragment of a model id) -> prices and output limit."""
    return dict(_table()[0])


def default_family() -> ModelFamily:
    """What a model id matching no family costs (Sonnet's prices, 8192 output tokens a turn)."""
    return _table()[1]


def model_family(model: str) -> ModelFamily:
    families, default = _table()
    hits = [k for k in families if k in model]
    return families[max(hits, key=len)] if hits else default
