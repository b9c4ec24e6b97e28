"""Local stand-ins for remote services, for tests (see anthropic_stub)."""
