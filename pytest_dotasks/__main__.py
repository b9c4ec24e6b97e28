"""``python -m pytest_dotasks init DIR``: the console script without the script."""

from __future__ import annotations

from pytest_dotasks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
