"""What the HTTP upgrade request tells the emulator: which endpoint and API version, and the credentials.

The key itself is compared with the rejected ones and dropped here; only whether one came, and whether it
came in the URL (which our client must never do), reaches the records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request

__all__ = ["API_PATH", "DEFAULT_PATH", "Credentials", "credentials_of"]

API_PATH = re.compile(
    r"/ws/google\.ai\.generativelanguage\.(?P<version>v1beta|v1|v1alpha)\.GenerativeService\."
    r"(?P<endpoint>BidiGenerateContent|BidiGenerateContentConstrained)"
)
DEFAULT_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@dataclass(frozen=True)
class Credentials:
    """What the handshake told us about auth. The key itself is compared and dropped, never stored."""

    has_key: bool
    key_in_url: bool
    rejected: bool


def credentials_of(request: Request, endpoint: str, rejected_keys: frozenset[str]) -> Credentials:
    headers: Headers = request.headers
    query = parse_qs(urlsplit(request.path).query)
    given: list[str] = []
    in_url = False
    if headers.get("x-goog-api-key"):
        given.append(headers["x-goog-api-key"])
    if query.get("key"):
        given.append(query["key"][0])
        in_url = True
    if endpoint == "BidiGenerateContentConstrained":
        auth = headers.get("Authorization", "")
        if auth.startswith("Token ") and auth[6:].strip():
            given.append(auth[6:].strip())
        if query.get("access_token"):
            given.append(query["access_token"][0])
            in_url = True
    return Credentials(bool(given), in_url, any(value in rejected_keys for value in given))
