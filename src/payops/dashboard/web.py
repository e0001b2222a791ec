"""Request helpers shared by the dashboard's handlers: who is signed in, and checked forms."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse

from payops.dashboard import sessions
from payops.dashboard.rendering import PAGE_HEADERS
from payops.dashboard.service import DashboardError
from payops.dashboard.sessions import Visitor
from payops.errors import DetailError
from payops.web.cross_site import allowed_origins, origin_of, refusal
from payops.web.dependencies import get_context
from payops.web.requests import read_limited

FORM_LIMIT = 65_536
CSRF_REFUSED = (
    "The form's security token is missing or out of date. Go back, reload the page and try again."
)


class SignInNeeded(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Form:
    """A submitted urlencoded form; fields may repeat (checkboxes)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.pairs:
            if key == name:
                return value
        return default

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


async def read_form(request: Request) -> Form:
    try:
        raw = await read_limited(request, FORM_LIMIT)
    except DetailError as exc:
        detail = exc.body.get("detail", "Bad request.") if isinstance(exc.body, dict) else ""
        raise DashboardError(str(detail or "Bad request."), exc.status_code) from None
    return Form(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


async def signed_in(request: Request) -> Visitor:
    visitor = await sessions.current_visitor(get_context(request), request)
    if visitor is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInNeeded(request.url.path + query)
    return visitor


def check_same_origin(request: Request) -> None:
    """Defence in depth beside the token and SameSite=Strict: a browser that says the form came
    from another site is refused."""
    settings = get_context(request).settings
    headers = {k.lower(): v for k, v in request.headers.items()}
    own = (
        origin_of(settings.public_url)
        if settings.public_url
        else origin_of(f"{request.url.scheme}://{headers.get('host', '')}")
    )
    if refusal(headers, own, allowed_origins(settings)) is not None:
        raise DashboardError(CSRF_REFUSED, 403)


async def posted(request: Request) -> tuple[Visitor, Form]:
    """A signed-in user's form submission carrying the session's CSRF token."""
    visitor = await signed_in(request)
    check_same_origin(request)
    form = await read_form(request)
    if not sessions.tokens_match(visitor.csrf_token, form.get("csrf_token")):
        raise DashboardError(CSRF_REFUSED, 403)
    return visitor, form


def redirect(path: str, **params: str) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(
        path + (f"?{query}" if query else ""), status_code=303, headers=PAGE_HEADERS
    )


def safe_next(value: str) -> str:
    """Only a path inside the dashboard: never an open redirect."""
    if (
        value.startswith("/dashboard")
        and not value.startswith("//")
        and "\\" not in value
        and "\r" not in value
        and "\n" not in value
    ):
        return value
    return "/dashboard"
