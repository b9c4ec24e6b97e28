"""The run's state in ``config.stash``: a key of its own so the plugin can
look it up without importing the pytest glue (items, session) in plain runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_dotasks.session import DotasksRun

RUN_KEY: pytest.StashKey[DotasksRun] = pytest.StashKey()
