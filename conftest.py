"""Root conftest for the project's own tests."""
