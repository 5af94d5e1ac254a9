"""Which Live API WebSocket URLs the appliance may connect to, and the one it builds by default.

The rule has one owner so that the config loader (which reports a bad `live.endpoint` with
where it was set) and the session (which refuses any URL it is handed, however it was made)
can never disagree.  The API key travels in a header, so a URL must not carry one, and plain
ws:// is allowed only to this machine, where nobody on the network can read the header.

Import-light on purpose (stdlib and `appliance.netutil` only): the settings import it.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from appliance.netutil import is_loopback_host

__all__ = ["GOOGLE_HOST", "InsecureEndpointError", "check_endpoint", "endpoint_problem", "endpoint_url"]

#: the Google Live API WebSocket base; the service path follows it
GOOGLE_HOST = "wss://generativelanguage.googleapis.com/ws"
_SERVICE = "google.ai.generativelanguage.{version}.GenerativeService.{method}"
#: query parameter names that would put a credential in the URL (compared case-insensitively)
_CREDENTIAL_PARAM_ENDINGS = ("key", "token")


class InsecureEndpointError(ValueError):
    """The URL would leak the API key or is not a WebSocket URL at all."""


def endpoint_problem(url: str) -> str | None:
    """What is wrong with `url` as a Live API endpoint, or None; "" (use the default) is fine.

    The text completes a sentence about the setting, like "live.endpoint <problem>".
    """
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        return "must be a ws:// or wss:// URL"
    if not parts.hostname:
        return "must name a host, like wss://host/path"
    if any(name.lower().endswith(_CREDENTIAL_PARAM_ENDINGS) for name, _ in parse_qsl(parts.query)):
        return "must not carry a key or token; put the key in GEMINI_API_KEY or live.api_key_file"
    if parts.username or parts.password:
        return "must not contain a user name or password"
    if parts.scheme == "ws" and not is_loopback_host(parts.hostname):
        return "uses plain ws://, which would send the API key in clear; use wss:// (ws:// only to 127.0.0.1)"
    return None


def check_endpoint(url: str) -> None:
    """Raise `InsecureEndpointError` for a URL `endpoint_problem` refuses (an empty one too)."""
    problem = endpoint_problem(url) if url else "must be a ws:// or wss:// URL"
    if problem:
        raise InsecureEndpointError(f"live.endpoint {problem}")


class LiveTarget(Protocol):
    """The parts of `[live]` that choose the URL (`LiveConfig` has them)."""

    @property
    def endpoint(self) -> str: ...
    @property
    def auth(self) -> str: ...
    @property
    def api_version(self) -> str: ...


def endpoint_url(live: LiveTarget) -> str:
    """The WebSocket URL to connect to.  Never contains the key: it goes in a header."""
    if live.endpoint:
        return live.endpoint
    if live.auth == "ephemeral":
        service = _SERVICE.format(version="v1alpha", method="BidiGenerateContentConstrained")
    else:
        service = _SERVICE.format(version=live.api_version, method="BidiGenerateContent")
    return f"{GOOGLE_HOST}/{service}"
