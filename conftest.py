"""Root conftest for the project's own tests."""

# pytester's in-process runs drop modules first imported inside them, so every
# run would import hypothesis's plugin afresh (~0.8 s). Importing it here once
# keeps it in the snapshot pytester restores.
import hypothesis.internal.observability  # noqa: F401

pytest_plugins = ["tests.stubs.fixtures", "tests.stubs.tinker_fixtures"]
