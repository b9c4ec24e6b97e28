"""Named service checks (``check: tinker``, ``check: anthropic``).

Each probe proves, through the real SDK, that the service answers and accepts
the key, with the cheapest call that does so, and returns a ``ProbeResult``
whose ``reason`` is one line naming the fix. A missing key, a rejected key, a
refused connection and a server that never answers each read differently.

The probes honour their ``timeout``: the SDK is told not to retry and to give
up before it, and the SDK call itself runs in a daemon thread that is
abandoned at the deadline, so an SDK that ignores its timeouts (or retries
internally) cannot hold a probe past it. ``anthropic`` and ``tinker`` are
imported only inside the probes. No pytest here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

TINKER_INSTALL = "pip install 'pytest-dotasks[tinker]'"
TINKER_DEFAULT_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"  # the SDK's, if it says none
ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str  # one line
    seconds: float


Probe = Callable[[float, Mapping[str, str]], ProbeResult]


class _Clock:
    """Start time and the budget a probe may spend (a little under its timeout)."""

    def __init__(self, timeout: float) -> None:
        self.start = time.monotonic()
        self.timeout = max(0.05, float(timeout))
        # Finish slightly early so the caller's own deadline never fires first.
        self.deadline = self.start + max(0.05, self.timeout - min(0.5, 0.1 * self.timeout))

    def left(self) -> float:
        return max(0.05, self.deadline - time.monotonic())

    def result(self, ok: bool, reason: str) -> ProbeResult:
        return ProbeResult(ok, " ".join(reason.split()), round(time.monotonic() - self.start, 3))


class _Abandoned(Exception):
    """The call did not finish within its budget (its thread is left behind)."""


def _call_within(fn: Callable[[], Any], seconds: float) -> Any:
    """Run ``fn`` in a daemon thread; return its value, re-raise its error, or raise _Abandoned."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="dotasks-probe", daemon=True).start()
    if not done.wait(seconds):
        raise _Abandoned()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _connect_problem(exc: BaseException) -> str:
    """What a connection error says underneath the SDK's generic wrapper."""
    import socket

    texts = []
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, socket.gaierror):
            return "cannot resolve the host name"
        text = str(e).strip()
        if text:
            texts.append(text)
    joined = " | ".join(texts).lower()
    if "refused" in joined:
        return "connection refused"
    if "name or service not known" in joined or "nodename nor servname" in joined or "getaddrinfo" in joined \
            or "dns error" in joined or "failed to lookup" in joined:
        return "cannot resolve the host name"
    if "certificate" in joined or "ssl" in joined or "tls" in joined:
        return f"TLS error ({texts[-1][:120]})"
    deepest = next((t for t in reversed(texts) if t.lower() != "connection error."), "")
    return deepest[:160] or type(exc).__name__


def _status_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        msg = err.get("message") if isinstance(err, dict) else body.get("detail") or body.get("message")
        if msg:
            return str(msg)[:160]
    return str(getattr(exc, "message", "") or exc)[:160]


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.2g}s"


def _explain(service: str, url: str, key_name: str, exc: BaseException, timeout: float) -> str:
    """One line for an SDK error, naming the fix. Shared by both probes (same SDK generator)."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if isinstance(exc, (_Abandoned, TimeoutError)) or name == "APITimeoutError":
        return (f"{service} did not answer within {_secs(timeout)} at {url}; the service is slow or unreachable "
                f"(a proxy or firewall?), or raise --preflight-timeout")
    if isinstance(status, int):
        if status == 401:
            return f"{service} rejected the key (401) at {url}; check {key_name}"
        if status == 403:
            return (f"{service} refused the key (403 permission denied) at {url}; check that {key_name} "
                    f"belongs to an account with access")
        if status == 402:
            return f"{service} accepted the key but billing is not set up (402) at {url}; set up billing for the account"
        return f"{service} answered HTTP {status} at {url}: {_status_message(exc)}"
    if name == "APIConnectionError" or any(isinstance(e, OSError) for e in _chain(exc)):
        return f"cannot connect to {service} at {url}: {_connect_problem(exc)}; check the base URL and the network"
    return f"{service} probe failed at {url}: {name}: {str(exc)[:160]}"


# ------------------------------------------------------------------ tinker


def _tinker_key(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(key, where it came from), as the SDK resolves it: argument/env, command, stored login."""
    key = (environ.get("TINKER_API_KEY") or "").strip()
    if key:
        return key, "TINKER_API_KEY"
    if (environ.get("TINKER_CREDENTIAL_CMD") or "").strip():
        return None, "TINKER_CREDENTIAL_CMD"  # the SDK runs it (from the process environment)
    try:
        from tinker.lib.credentials import JsonCredentialStore, default_credentials_path

        record = JsonCredentialStore(default_credentials_path()).get_default_key()
    except Exception:  # noqa: BLE001 - no stored login, an unreadable file, or an SDK without one
        record = None
    if record is not None and getattr(record, "key", None):
        return record.key, "the key stored by `tinker auth login`"
    return None, None


def _tinker_default_url() -> str:
    try:
        from tinker.lib.base_url import DEFAULT_BASE_URL

        return str(DEFAULT_BASE_URL)
    except Exception:  # noqa: BLE001 - older SDK layout
        return TINKER_DEFAULT_URL


def _tinker_first_contact(tinker: Any, url: str, key: str | None, seconds: float) -> Any:
    """The request every Tinker client starts with (``POST /api/v1/client/config``, key attached),
    sent once, without retries, within ``seconds``: tells refused, hung and rejected apart fast.

    Returns None when this SDK has no such low-level client (then only the SDK check runs).
    """
    try:
        from tinker._client import AsyncTinker
        from tinker.types import ClientConfigRequest, ClientConfigResponse
    except ImportError:
        return None
    sdk_timeout = max(0.05, seconds * 0.9)

    async def contact() -> Any:
        try:
            client = AsyncTinker(api_key=key, base_url=url, max_retries=0, timeout=sdk_timeout,
                                 _client_config=ClientConfigResponse(use_pyqwest_transport=False))
        except TypeError:  # another SDK version's constructor: skip to the SDK check
            return None
        try:
            return await asyncio.wait_for(
                client.service.client_config(request=ClientConfigRequest(sdk_version=tinker.__version__)),
                sdk_timeout)
        finally:
            await client.close()

    return asyncio.run(contact())


def _tinker_sdk_check(tinker: Any, url: str, key: str | None) -> None:
    """The SDK's own "can I use Tinker" check: a session-less client and one request to the
    billing-gated capabilities endpoint (what ``tinker.auth.raise_if_tinker_not_accessible`` does,
    with our URL and key rather than the process environment's). Creates no session."""
    client = tinker.ServiceClient(base_url=url, api_key=key)
    try:
        check = getattr(client, "_check_accessible", None)
        if check is not None:
            check()
        else:  # an SDK without it: the capabilities call through the public REST client
            tinker.RestClient(base_url=url, api_key=key).get_server_capabilities().result()
    finally:
        with contextlib.suppress(Exception):
            client.close("success")  # no session was made: this only releases connections


def probe_tinker(timeout: float, environ: Mapping[str, str]) -> ProbeResult:
    """Tinker answers at ``TINKER_BASE_URL`` (default: production) and accepts the key."""
    clock = _Clock(timeout)
    try:
        import tinker
    except ImportError as exc:
        if exc.name in (None, "tinker"):
            return clock.result(False, f"the tinker SDK is not installed; {TINKER_INSTALL}")
        return clock.result(False, f"the tinker SDK failed to import ({exc}); {TINKER_INSTALL}")
    # The SDK's own pydantic-v1 call, not the user's concern: keep it out of their warning summary.
    warnings.filterwarnings("ignore", message="The `construct` method is deprecated", category=DeprecationWarning,
                            module=r"tinker\.")
    url = (environ.get("TINKER_BASE_URL") or "").strip().rstrip("/") or _tinker_default_url()
    key, source = _tinker_key(environ)
    if source is None:
        return clock.result(False, "TINKER_API_KEY is not set; export it or add it to the environment "
                                   "(or log in with `tinker auth login`)")
    key_name = "TINKER_API_KEY" if source == "TINKER_API_KEY" else source
    try:
        _call_within(lambda: _tinker_first_contact(tinker, url, key, clock.left()), clock.left())
        _call_within(lambda: _tinker_sdk_check(tinker, url, key), clock.left())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason
        if isinstance(exc, tinker.TinkerError) and not hasattr(exc, "status_code") \
                and type(exc).__name__ == "TinkerError":
            # raised before any request: a malformed key or no usable credential
            return clock.result(False, f"the tinker SDK refused the credential before sending it ({exc}); "
                                       f"check {key_name}")
        return clock.result(False, _explain("tinker", url, key_name, exc, clock.timeout))
    return clock.result(True, f"tinker at {url} accepted the key ({key_name})")


# ------------------------------------------------------------------ anthropic


def probe_anthropic(timeout: float, environ: Mapping[str, str]) -> ProbeResult:
    """The Anthropic API answers at ``ANTHROPIC_BASE_URL`` (default: api.anthropic.com) and
    accepts the key: ``GET /v1/models?limit=1``, free, one request, no retries."""
    clock = _Clock(timeout)
    api_key = (environ.get("ANTHROPIC_API_KEY") or "").strip() or None
    auth_token = (environ.get("ANTHROPIC_AUTH_TOKEN") or "").strip() or None
    profile = (environ.get("ANTHROPIC_PROFILE") or "").strip() or None
    if not (api_key or auth_token or profile):
        return clock.result(False, "ANTHROPIC_API_KEY is not set; export it or add it to the environment")
    key_name = "ANTHROPIC_API_KEY" if api_key else "ANTHROPIC_AUTH_TOKEN" if auth_token else "ANTHROPIC_PROFILE"
    try:
        import anthropic
    except ImportError as exc:
        return clock.result(False, f"the anthropic SDK is not installed ({exc}); pip install anthropic")
    url = (environ.get("ANTHROPIC_BASE_URL") or "").strip().rstrip("/") or ANTHROPIC_DEFAULT_URL

    def call() -> Any:
        creds: dict[str, Any] = {"api_key": api_key} if api_key else \
            {"auth_token": auth_token} if auth_token else {"profile": profile}
        client = anthropic.Anthropic(base_url=url, max_retries=0, timeout=max(0.05, clock.left() * 0.9), **creds)
        try:
            return client.models.list(limit=1)
        finally:
            client.close()

    try:
        page = _call_within(call, clock.left())
    except Exception as exc:  # noqa: BLE001
        return clock.result(False, _explain("anthropic", url, key_name, exc, clock.timeout))
    first = next(iter(getattr(page, "data", None) or []), None)
    seen = f"; first model {first.id}" if first is not None and getattr(first, "id", None) else ""
    return clock.result(True, f"anthropic at {url} accepted the key ({key_name}){seen}")


NAMED_PROBES: dict[str, Probe] = {"tinker": probe_tinker, "anthropic": probe_anthropic}
