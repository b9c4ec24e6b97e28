"""A failed Messages API call, explained in one line with the fix.

Transient errors (429, 5xx, 529 overloaded, connection resets) were already
retried by the SDK itself; what reaches here fails the step, and the user
reads one line saying what happened and what to do, never an SDK traceback.
"""

from __future__ import annotations

from typing import Any


def explain_api_error(exc: Exception, model: str, retries: int) -> tuple[str, str]:
    """(what happened, how to fix it) for an ``anthropic.APIError`` raised on ``model``."""
    import anthropic  # already imported: the exception came from it

    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = ""
    if isinstance(body, dict):
        inner = body.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else body
        detail = f"{err.get('type', '')}: {err.get('message', '')}".strip(": ")
    detail = (detail or str(exc)).splitlines()[0] if (detail or str(exc)) else type(exc).__name__
    if isinstance(exc, anthropic.AuthenticationError):
        return (f"the Anthropic API rejected the key (401 {detail})",
                "check ANTHROPIC_API_KEY (console.anthropic.com/settings/keys)")
    if isinstance(exc, anthropic.PermissionDeniedError):
        return f"the key may not use this API or model (403 {detail})", "check the key's workspace and model access"
    if isinstance(exc, anthropic.NotFoundError):
        return (f"model '{model}' not found (404 {detail})",
                "choose another with --agent-model, 'model:' or dotasks_model_aliases")
    if isinstance(exc, anthropic.BadRequestError):
        return f"the API refused the request (400 {detail})", "see the transcript"
    if isinstance(exc, anthropic.APIConnectionError):
        return f"cannot reach the Anthropic API: {detail}", f"check the network (retried {retries} times)"
    code = f"{status} " if status else ""
    return (f"Anthropic API error ({code}{detail})",
            f"transient errors were retried {retries} times; try again later")
