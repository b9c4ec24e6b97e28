"""What a model costs and how much it may write a turn: the table is data, ``prices.json``.

Prices change and new families appear more often than this code does, so the
table lives in ``prices.json`` beside this module (package data), read once,
on the first price asked for. A model id is priced by the longest family key
it contains, so Bedrock and Vertex ids (``anthropic.claude-3-5-haiku-...``)
match too; an id matching none gets the table's ``default``.

Users override it with a JSON file of the same shape (``--prices PATH`` or
the ini's ``dotasks_prices``; ``prices_path`` says where it is): its
``families`` replace or add to the built-in ones, its ``default``, when given,
replaces the built-in default. ``load_prices`` reads it, once per file
version, and raises ``PricesError`` naming the file and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_dotasks.errors import DotasksError
from pytest_dotasks.settings import Settings

PRICES_FILE = "prices.json"
FIELDS = "input, output, cache_write, cache_read (USD per million tokens) and max_output (an integer)"


class PricesError(DotasksError):
    """The price table given with --prices / dotasks_prices cannot be used."""

    phase = "main"


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """USD per million tokens, and the largest ``max_tokens`` a turn asks for."""

    input: float
    output: float
    cache_write: float  # 5-minute cache writes
    cache_read: float
    max_output: int

    def cost(self, input_tokens: int, output_tokens: int, cache_write: int, cache_read: int) -> float:
        """USD for one turn's tokens."""
        return (input_tokens * self.input + output_tokens * self.output + cache_write * self.cache_write
                + cache_read * self.cache_read) / 1e6


@dataclasses.dataclass(frozen=True)
class PriceTable:
    families: Mapping[str, ModelFamily]
    default: ModelFamily
    source: str = "built-in"  # or the path of the user's file

    def family(self, model: str) -> ModelFamily:
        hits = [k for k in self.families if k in model]
        return self.families[max(hits, key=len)] if hits else self.default


def _family(name: str, data: object, where: str) -> ModelFamily:
    fields = data if isinstance(data, dict) else {}
    try:
        family = ModelFamily(float(fields["input"]), float(fields["output"]), float(fields["cache_write"]),
                             float(fields["cache_read"]), int(fields["max_output"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PricesError(f"{where}: '{name}' needs {FIELDS}; {type(exc).__name__}: {exc}",
                          fix=f"give '{name}' every field, as the built-in prices.json does") from None
    if min(family.input, family.output, family.cache_write, family.cache_read) < 0 or family.max_output < 1:
        raise PricesError(f"{where}: '{name}' has a negative price or a max_output below 1",
                          fix="prices are USD per million tokens, 0 or more")
    return family


def _parse(raw: Any, where: str, base: PriceTable | None = None) -> PriceTable:
    if not isinstance(raw, dict) or not isinstance(raw.get("families", {}), dict):
        raise PricesError(f"{where}: not a price table", fix='write {"families": {"claude-sonnet-4": {...}}, '
                          '"default": {...}} as in the built-in prices.json')
    families = dict(base.families) if base is not None else {}
    families.update({str(k): _family(str(k), v, where) for k, v in raw.get("families", {}).items()})
    if "default" in raw:
        default = _family("default", raw["default"], where)
    elif base is not None:
        default = base.default
    else:
        raise PricesError(f"{where}: no 'default' family", fix="add a 'default' entry")
    return PriceTable(families, default, where if base is not None else "built-in")


@functools.lru_cache(maxsize=1)
def builtin_prices() -> PriceTable:
    raw = json.loads(resources.files("pytest_dotasks.agent").joinpath(PRICES_FILE).read_text(encoding="utf-8"))
    return _parse(raw, PRICES_FILE)


@functools.lru_cache(maxsize=8)
def _user_prices(path: str, mtime_ns: int) -> PriceTable:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PricesError(f"cannot read the price table: {exc}", path=path,
                          fix="point --prices / dotasks_prices at a JSON file shaped like prices.json") from None
    except json.JSONDecodeError as exc:
        raise PricesError(f"the price table is not valid JSON: {exc.msg}", path=path, line=exc.lineno,
                          fix="fix the JSON (a trailing comma?)") from None
    return _parse(raw, path, builtin_prices())


def load_prices(path: Path | None) -> PriceTable:
    """The built-in table, overridden by the file at ``path`` when given. Raises PricesError."""
    if path is None:
        return builtin_prices()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise PricesError(f"price table not found: {exc.strerror}", path=path,
                          fix="point --prices / dotasks_prices at an existing JSON file") from None
    return _user_prices(str(path), mtime)


def prices_path(settings: Settings) -> Path | None:
    """Where ``--prices`` (relative to the current directory) or ``dotasks_prices`` (relative to the
    rootdir) points; None when neither is set."""
    value = settings.values.get("prices")
    if not value:
        return None
    path = Path(os.path.expanduser(str(value)))
    if path.is_absolute():
        return path
    from_cli = str(settings.sources.get("prices", "")).startswith("--")
    return (Path.cwd() if from_cli else settings.rootdir) / path


def settings_prices(settings: Settings) -> PriceTable:
    """The price table a run uses."""
    return load_prices(prices_path(settings))


# ------------------------------------------------------------ the built-in table, as before

def model_families() -> dict[str, ModelFamily]:
    """The family table: key (a fragment of a model id) -> prices and output limit."""
    return dict(builtin_prices().families)


def default_family() -> ModelFamily:
    """What a model id matching no family costs (Sonnet's prices, 8192 output tokens a turn)."""
    return builtin_prices().default


def model_family(model: str, table: PriceTable | None = None) -> ModelFamily:
    return (table or builtin_prices()).family(model)
