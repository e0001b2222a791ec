"""Templates and the security headers every dashboard response carries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from payops.auth.permissions import OPERATION_PERMISSIONS, RESOLVE_PERMISSION
from payops.money import format_minor

# Everything from our own origin only: no inline script or style, no frames, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The navigation: (path, label, permission needed to see the link; None = every signed-in user).
NAVIGATION = (
    ("/dashboard", "Home", None),
    ("/dashboard/transactions", "Transactions", OPERATION_PERMISSIONS["inquiry"]),
    ("/dashboard/review", "Needs review", RESOLVE_PERMISSION),
    ("/dashboard/webhooks", "Webhooks", OPERATION_PERMISSIONS["inquiry"]),
    ("/dashboard/gateways", "Gateways", "admin.gateways"),
    ("/dashboard/api-keys", "API keys", "admin.api_keys"),
    ("/dashboard/users", "Users", "admin.users"),
    ("/dashboard/audit", "Audit log", "audit.view"),
)


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _query(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


environment = Environment(
    loader=PackageLoader("payops.dashboard", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _details(entry: Any) -> str:
    """An audit row's details in one line (the address has its own column)."""
    details = dict(entry.details or {})
    for shown_elsewhere in ("body", "via", "address"):
        details.pop(shown_elsewhere, None)
    return ", ".join(f"{k}={v}" for k, v in details.items() if v not in ("", None, [], {}))


environment.filters["when"] = _when
# One path segment: a name with "/" or "?" still names one user or gateway.
environment.filters["segment"] = lambda value: quote(str(value), safe="")
environment.filters["details"] = _details
environment.globals["query"] = _query
environment.globals["money"] = format_minor


def render(
    request: Request, visitor: Any, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    nav = [
        (path, label)
        for path, label, permission in NAVIGATION
        if visitor is not None and (permission is None or visitor.can(permission))
    ]
    defaults: dict[str, Any] = {"error": "", "notice": ""}
    page = environment.get_template(template).render(
        **{**defaults, **context},
        visitor=visitor,
        nav=nav,
        path=request.url.path,
        status_code=status_code,
        csrf_token=visitor.csrf_token if visitor is not None else "",
    )
    return HTMLResponse(page, status_code=status_code, headers=PAGE_HEADERS)
