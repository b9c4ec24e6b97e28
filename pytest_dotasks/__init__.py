"""pytest-dotasks: execute a markdown implementation plan (SPEC.md) as pytest tests."""

from __future__ import annotations

__version__ = "0.1.0"

# Light re-exports for conftest authors (no heavy imports: see plugin.py).
from .checks import Check, CheckContext, CheckResult  # noqa: E402
from .context import BodyResult, StepContext  # noqa: E402
from .model import Step  # noqa: E402

__all__ = ["BodyResult", "Check", "CheckContext", "CheckResult", "Step", "StepContext", "__version__"]
