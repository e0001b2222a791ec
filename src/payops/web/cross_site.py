"""Cross-site request protection for the authenticated API (decisions §13).

The API accepts form posts with Basic credentials, and browsers cache Basic credentials, so
without this a hostile page's form could move money. Browsers say where a request comes from
(``Sec-Fetch-Site``, ``Origin``); server-to-server clients (curl, SDKs) send neither and pass.

Only the authenticated API is guarded (``/b/pbl/``, ``/b/checkout/``, ``/b/payops/``). The hosted
page, gateway returns and ``/b/pg/notifications/`` authenticate by session token, signature or
inquiry, and some gateways send the customer back with a cross-site form POST.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from payops.config import Settings
from payops.domain import messages

GUARDED_PREFIXES = ("/b/pbl/", "/b/checkout/", "/b/payops/")
SAME_SITE_VALUES = ("same-origin", "none")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    if port is None or (parts.scheme, port) in (("http", 80), ("https", 443)):
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def allowed_origins(settings: Settings) -> frozenset[str]:
    listed = settings.allowed_origins.replace(",", " ").split()
    return frozenset(o for o in (origin_of(item) for item in listed) if o)


def refusal(headers: dict[str, str], own_origin: str | None, allowed: frozenset[str]) -> str | None:
    """Why this request is refused as cross-site, or None when it may pass."""
    fetch_site = headers.get("sec-fetch-site", "").strip().lower()
    origin_header = headers.get("origin")
    origin = origin_of(origin_header) if origin_header else None
    if fetch_site in SAME_SITE_VALUES:
        return None
    if fetch_site:  # cross-site, same-site, or anything unknown
        if origin is not None and origin in allowed:
            return None
        if origin_header:
            return messages.CROSS_SITE_REFUSED.format(origin=origin_header[:200])
        return messages.CROSS_SITE_NO_ORIGIN
    if origin_header is None:
        return None  # no browser signal at all: a server-to-server client
    if origin is not None and (origin == own_origin or origin in allowed):
        return None
    return messages.CROSS_SITE_REFUSED.format(origin=origin_header[:200])


class CrossSiteGuard:
    """Pure ASGI middleware: 403 for a cross-site request to the authenticated API."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.public_origin = origin_of(settings.public_url) if settings.public_url else None
        self.allowed = allowed_origins(settings)

    def _own_origin(self, scope: Scope, headers: dict[str, str]) -> str | None:
        # Without PAYOPS_PUBLIC_URL the service's origin is the request's own, as for the
        # checkout links (config.public_url).
        if self.public_origin:
            return self.public_origin
        host = headers.get("host", "")
        return origin_of(f"{scope.get('scheme', 'http')}://{host}") if host else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(GUARDED_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers: dict[str, Any] = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        reason = refusal(headers, self._own_origin(scope, headers), self.allowed)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"vary", b"Origin, Sec-Fetch-Site"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
