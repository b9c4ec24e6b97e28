"""Where the tests find the repository, its fixture plans and the shared seed plan."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
# The real 20-step plan our first users run, kept in shared/ beside the checkout.
SEED = REPO.parent / "shared" / "fixtures" / "seed-SPEC.md"
