"""Models: the alias table (data the ini can override) and how a name resolves to a model id."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_dotasks.agent.frontmatter import DefinitionError

DEFAULT_MODEL = "sonnet"

# Current ids for the aliases Claude Code agent files use. Data, not code:
# users override or extend it with the ini linelist ``dotasks_model_aliases``
# (``sonnet = claude-sonnet-4-6``), see ``alias_table``. Taken from the model
# list of anthropic 2.13, newest per tier (it marks claude-sonnet-4-5 deprecated,
# end of life 2026-11-30, and no longer lists claude-opus-4-1).
MODEL_ALIASES: dict[str, str] = {
    "haiku": "claude-haiku-5-5",
    "sonnet": "claude-sonnet-5-5",
    "opus": "claude-opus-5-5",
}
# ``model: inherit`` in an agent file: use the caller's model.
INHERIT = "inherit"


def parse_alias_lines(lines: Iterable[str]) -> dict[str, str]:
    """``alias = model-id`` lines (the ini linelist) as a dict; ``#`` comments allowed."""
    out: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        alias, sep, model = line.partition("=")
        if not sep or not alias.strip() or not model.strip():
            raise DefinitionError(f"dotasks_model_aliases: cannot read {raw.strip()!r}",
                                  fix="write one 'alias = model-id' per line, e.g. 'opus = claude-opus-4-5'")
        out[alias.strip().lower()] = model.strip()
    return out


def alias_table(override_lines: Iterable[str] = ()) -> dict[str, str]:
    table = dict(MODEL_ALIASES)
    table.update(parse_alias_lines(override_lines))
    return table


def resolve_model(name: str | None, override_lines: Iterable[str] = ()) -> str:
    """An alias (haiku, sonnet, opus or one from the ini) as its model id; an id as itself."""
    value = (name or DEFAULT_MODEL).strip()
    return alias_table(override_lines).get(value.lower(), value)

