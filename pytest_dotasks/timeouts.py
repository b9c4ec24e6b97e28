"""pytest-timeout for steps: our short report instead of its thread dump, and the limit shown.

A step's ``timeout:`` field becomes ``pytest.mark.timeout``, which pytest-timeout
puts before ``--timeout`` and the ini (marker > option > ini). With its
``signal`` method this ``pytest_timeout_set_timer`` (``tryfirst``) arms the same
SIGALRM timer but fails the step with one line: the item's report names the step,
the phase and the task id, and the marker becomes ``✗ Failed``. The ``thread``
method, and any other item, stay pytest-timeout's own.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from pytest_dotasks.items import StepItem


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if not isinstance(item, StepItem):
        return None
    seconds = float(settings.timeout)
    item.effective_timeout = seconds
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        pytest.fail(f"Timeout (>{settings.timeout}s) from pytest-timeout.", pytrace=False)  # its own words

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return True
