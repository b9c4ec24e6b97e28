"""pytest-dotasks: execute a markdown implementation plan (SPEC.md) as pytest tests."""

from __future__ import annotations

__version__ = "0.1.0"

# Light re-exports for conftest authors (no heavy imports: see plugin.py).
from pytest_dotasks.plan.model import Step
from pytest_dotasks.run.checks import Check, CheckContext, CheckResult
from pytest_dotasks.run.context import BodyResult, StepContext

__all__ = ["BodyResult", "Check", "CheckContext", "CheckResult", "Step", "StepContext", "__version__"]
