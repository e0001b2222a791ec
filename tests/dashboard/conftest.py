"""Dashboard test helpers: a signed-in httpx client that reads the forms' CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers import Seed

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TRACKING = re.compile(r'name="tracking_key" value="([^"]+)"')
PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


class Operator:
    """One person using the dashboard through httpx, with its own cookie jar."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.http = client
        self.csrf = ""

    async def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.http.get("/dashboard/login")
        response = await self.http.post(
            "/dashboard/login",
            data={
                "csrf_token": csrf_of(page.text),
                "username": username,
                "password": password,
                "next": "/dashboard",
            },
        )
        if response.status_code == 303:
            home = await self.http.get("/dashboard")
            assert home.status_code == 200, home.text
            self.csrf = csrf_of(home.text)
        return response

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, csrf: str | None = None
    ) -> httpx.Response:
        form = dict(data or {})
        form.setdefault("csrf_token", self.csrf if csrf is None else csrf)
        return await self.http.post(path, data=form)


@pytest.fixture
async def operator_for(app: Any, seed: Seed):  # type: ignore[no-untyped-def]
    """operator_for(permissions=[...], superuser=False, username=...) → a signed-in Operator."""
    clients: list[httpx.AsyncClient] = []

    async def make(
        permissions: tuple[str, ...] | list[str] = (),
        *,
        superuser: bool = False,
        username: str | None = None,
    ) -> Operator:
        name = username or f"op{len(clients)}"
        await seed.user(name, PASSWORD, permissions=list(permissions), superuser=superuser)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000 + len(clients)))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(client)
        operator = Operator(client)
        response = await operator.sign_in(name)
        assert response.status_code == 303, response.text
        return operator

    yield make
    for client in clients:
        await client.aclose()
