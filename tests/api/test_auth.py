"""Authentication and permissions on the v1 operation and inquiry endpoints.

decisions §11 (Basic with argon2id and Ottu permission codes, API keys stored hashed, failure
throttling with 429 + Retry-After, DRF 401 bodies and WWW-Authenticate), decisions §12 (never log
credentials), ottu-api.md §2 (DRF default messages), §4.5 (401/403 bodies are {"detail"}).

Most users here get a low-cost argon2id hash (the server verifies any argon2 hash with the
parameters stored in it), so the suite does not spend 0.2 s per login; the one test about the
stored hash uses the service's own ``hash_password`` through ``seed.user``.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from payops.auth.permissions import ALL_PERMISSIONS
from payops.db.models import ApiKey, User, UserPermission
from payops.logging import JsonFormatter
from tests.helpers import Seed

OP = "/b/pbl/v1/operation/{order}"
INQ = "/b/pbl/v1/inquiry/{order}"
PASSWORD = "Corr3ct-Horse-Battery-Staple"

AUTH_MISSING = {"detail": "Authentication credentials were not provided."}
INVALID_BASIC = {"detail": "Invalid username/password."}
BAD_BASIC_HEADER = {"detail": "Invalid basic header. Credentials not correctly base64 encoded."}
INACTIVE = {"detail": "User inactive or deleted."}
INVALID_KEY = {"detail": "Invalid API key."}
DENIED = {"detail": "You do not have permission to perform this action."}

_CHEAP_ARGON2ID = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def add_user(
    seed: Seed,
    username: str,
    password: str = PASSWORD,
    *,
    permissions: Any = (),
    superuser: bool = False,
    active: bool = True,
) -> dict[str, str]:
    """Like ``seed.user`` but with a cheap argon2id hash."""
    async with seed.ctx.db.write() as session:
        session.add(
            User(
                username=username,
                password_hash=_CHEAP_ARGON2ID.hash(password),
                is_superuser=superuser,
                is_active=active,
                first_name="Mer",
                last_name="Chant",
                email=f"{username}@example.com",
                permissions=[UserPermission(code=code) for code in permissions],
            )
        )
    return basic(username, password)


@asynccontextmanager
async def client_from(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def refused(
    seed: Seed,
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    status: int,
    body: dict[str, Any],
    json: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST, expect exactly ``status``/``body``, and check that nothing stored changed."""
    before = await seed.snapshot()
    response = await client.post(url, json=json if json is not None else {}, headers=headers)
    assert response.status_code == status, (url, headers, response.status_code, response.text)
    assert response.json() == body, (url, headers, response.text)
    if status == 401:
        assert response.headers.get("www-authenticate", "").startswith("Basic"), response.headers
    else:
        assert "www-authenticate" not in response.headers
    assert await seed.snapshot() == before, f"{url} {headers}: stored data changed"
    return response


# -- 401: no, unknown or bad credentials ----------------------------------------------------------


async def test_missing_or_unknown_credentials_are_401_with_www_authenticate(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    for url in (OP.format(order="ORD-1"), INQ.format(order="ORD-1")):
        await refused(seed, client, url, {}, 401, AUTH_MISSING, json={"operation": "refund"})
        await refused(
            seed,
            client,
            url,
            {"Authorization": ""},
            401,
            AUTH_MISSING,
            json={"operation": "refund"},
        )
    # Unknown order without credentials: still 401, nothing about the order is revealed.
    await refused(
        seed, client, OP.format(order="NOPE"), {}, 401, AUTH_MISSING, json={"operation": "refund"}
    )
    # A scheme PayOps does not take is "no credentials" (DRF: no authenticator claims it).
    for value in (
        "Bearer x",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "Token abc",
        "Digest x",
        "Negotiate abc",
        "Basic-ish abc",
        "x",
    ):
        for url in (OP.format(order="ORD-1"), INQ.format(order="ORD-1")):
            await refused(
                seed,
                client,
                url,
                {"Authorization": value},
                401,
                AUTH_MISSING,
                json={"operation": "refund", "amount": "1.000"},
            )


async def test_bad_basic_credentials_are_401(client: httpx.AsyncClient, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    await add_user(seed, "merchant", superuser=True)
    for headers in (
        basic("merchant", "wrong password"),
        basic("merchant", ""),
        basic("merchant", PASSWORD.lower()),
        basic("merchant", PASSWORD + " "),
        basic("Merchant", PASSWORD),  # usernames are case-sensitive (Django)
        basic("nobody", PASSWORD),
    ):
        await refused(
            seed,
            client,
            OP.format(order="ORD-1"),
            headers,
            401,
            INVALID_BASIC,
            json={"operation": "refund", "amount": "1.000"},
        )
    # Eight failures from this address so far: under the per-address limit of ten.
    for headers in (basic("merchant", "wrong password"), basic("", PASSWORD)):
        await refused(seed, client, INQ.format(order="ORD-1"), headers, 401, INVALID_BASIC)
    # A header that does not decode is refused before any lookup (and is not a counted failure).
    for value in (
        "Basic !!!not-base64!!!",
        "Basic bWVyY2hhbnQ",  # bad padding
        "Basic " + base64.b64encode(b"merchant-without-colon").decode(),
        "Basic bWVyY2hhbnQ6cHc=%",
    ):
        await refused(
            seed,
            client,
            OP.format(order="ORD-1"),
            {"Authorization": value},
            401,
            BAD_BASIC_HEADER,
            json={"operation": "refund", "amount": "1.000"},
        )


async def test_basic_header_messages_follow_drf(client: httpx.AsyncClient, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    url = OP.format(order="ORD-1")
    await refused(
        seed,
        client,
        url,
        {"Authorization": "Basic"},
        401,
        {"detail": "Invalid basic header. No credentials provided."},
        json={"operation": "refund"},
    )
    await refused(
        seed,
        client,
        url,
        {"Authorization": "Basic YWJj ZGVm"},
        401,
        {"detail": "Invalid basic header. Credentials string should not contain spaces."},
        json={"operation": "refund"},
    )


async def test_basic_credentials_in_latin_1_are_read_as_drf_reads_them(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    # DRF decodes UTF-8 and falls back to latin-1; Python's requests sends str credentials as
    # latin-1, so a non-ASCII password from such a client was refused as a malformed header.
    auth = await seed.user("jos\u00e9", "p\u00e4ssw\u00f6rd", permissions=["payment.inquiry"])
    utf8 = auth["Authorization"]
    latin1 = "Basic " + base64.b64encode("jos\u00e9:p\u00e4ssw\u00f6rd".encode("latin-1")).decode()
    await seed.transaction(order_no="ORD-1")
    for header in (utf8, latin1):
        response = await client.post("/b/pbl/v1/inquiry/ORD-1", headers={"Authorization": header})
        assert response.status_code == 200, response.text
    wrong = "Basic " + base64.b64encode("jos\u00e9:w\u00e4rong".encode("latin-1")).decode()
    response = await client.post("/b/pbl/v1/inquiry/ORD-1", headers={"Authorization": wrong})
    assert (response.status_code, response.json()) == (
        401,
        {"detail": "Invalid username/password."},
    )


async def test_inactive_user_is_401(client: httpx.AsyncClient, seed: Seed) -> None:
    await seed.transaction(order_no="ORD-1")
    inactive = await add_user(seed, "gone", superuser=True, active=False)
    for url in (OP.format(order="ORD-1"), INQ.format(order="ORD-1")):
        await refused(
            seed,
            client,
            url,
            inactive,
            401,
            INACTIVE,
            json={"operation": "refund", "amount": "1.000"},
        )
    # Deactivation takes effect at once, even for a credential verified (and cached) just before.
    active = await add_user(seed, "soon-gone", superuser=True)
    ok = await client.post(INQ.format(order="ORD-1"), headers=active)
    assert ok.status_code == 200, ok.text
    async with seed.ctx.db.write() as session:
        user = (await session.scalars(select(User).where(User.username == "soon-gone"))).one()
        user.is_active = False
    await refused(
        seed,
        client,
        OP.format(order="ORD-1"),
        active,
        401,
        INACTIVE,
        json={"operation": "refund", "amount": "1.000"},
    )


# -- 403: permissions -----------------------------------------------------------------------------


async def _target(seed: Seed, operation: str) -> tuple[str, dict[str, Any]]:
    """A transaction the operation is allowed on, and the request (url, body) that runs it."""
    if operation in ("capture", "void"):
        await seed.transaction(order_no="ORD-1", mode="authorize")
    elif operation == "cancel":
        await seed.transaction(order_no="ORD-1", card=None)  # created, never attempted
    else:
        await seed.transaction(order_no="ORD-1")
    if operation == "inquiry":
        return INQ.format(order="ORD-1"), {}
    body: dict[str, Any] = {"operation": operation}
    if operation in ("capture", "refund"):
        body["amount"] = "1.000"
    return OP.format(order="ORD-1"), body


@pytest.mark.parametrize("operation", ["capture", "refund", "void", "cancel", "inquiry"])
async def test_each_operation_needs_its_own_permission(
    client: httpx.AsyncClient, seed: Seed, operation: str
) -> None:
    code = f"payment.{operation}"
    url, body = await _target(seed, operation)
    everything_else = await add_user(seed, "others", permissions=sorted(ALL_PERMISSIONS - {code}))
    await refused(seed, client, url, everything_else, 403, DENIED, json=body)
    nothing = await add_user(seed, "nothing")
    await refused(seed, client, url, nothing, 403, DENIED, json=body)
    only_this = await add_user(seed, "only", permissions=[code])
    response = await client.post(url, json=body, headers=only_this)
    assert response.status_code == 200, response.text
    if operation != "inquiry":
        assert response.json()["result"] == "success"


async def test_capture_permission_allows_capture_but_not_refund(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1", mode="authorize")
    url = OP.format(order="ORD-1")
    capturer = await add_user(seed, "capturer", permissions=["payment.capture"])
    await refused(
        seed, client, url, capturer, 403, DENIED, json={"operation": "refund", "amount": "1.000"}
    )
    captured = await client.post(
        url, json={"operation": "capture", "amount": "5.000"}, headers=capturer
    )
    assert captured.status_code == 200, captured.text
    body = captured.json()
    assert (body["operation"], body["amount"], body["result"]) == ("capture", "5.000", "success")
    # Basic auth fills in the initiator (ottu-api §2).
    assert body["initiator"]["username"] == "capturer"
    assert set(body["initiator"]) == {"id", "first_name", "last_name", "username", "email", "phone"}
    # Something is captured now, so a refund would be allowed by the rules: still 403.
    for refused_body in (
        {"operation": "refund", "amount": "1.000"},
        {"operation": "void"},
        {"operation": "cancel"},
    ):
        await refused(seed, client, url, capturer, 403, DENIED, json=refused_body)
    await refused(seed, client, INQ.format(order="ORD-1"), capturer, 403, DENIED)
    # The permission check comes before the lookup: no hint whether an order exists.
    await refused(
        seed,
        client,
        OP.format(order="NOPE"),
        capturer,
        403,
        DENIED,
        json={"operation": "refund", "amount": "1.000"},
    )


async def test_superuser_can_do_everything(client: httpx.AsyncClient, seed: Seed) -> None:
    admin = await add_user(seed, "admin", superuser=True)
    await seed.transaction(order_no="ORD-AUTH", mode="authorize")
    await seed.transaction(order_no="ORD-VOID", mode="authorize")
    await seed.transaction(order_no="ORD-PAID")
    await seed.transaction(order_no="ORD-NEW", card=None)
    for url, body in (
        (OP.format(order="ORD-AUTH"), {"operation": "capture", "amount": "1.000"}),
        (OP.format(order="ORD-VOID"), {"operation": "void"}),
        (OP.format(order="ORD-PAID"), {"operation": "refund", "amount": "1.000"}),
        (OP.format(order="ORD-NEW"), {"operation": "cancel"}),
        (INQ.format(order="ORD-PAID"), {}),
    ):
        response = await client.post(url, json=body, headers=admin)
        assert response.status_code == 200, (url, body, response.text)


# -- API keys -------------------------------------------------------------------------------------


async def test_api_keys(client: httpx.AsyncClient, seed: Seed) -> None:
    key = await seed.api_key()
    later = await seed.api_key(expires_at=datetime.now(UTC) + timedelta(days=1))
    await seed.transaction(order_no="ORD-AUTH", mode="authorize")
    await seed.transaction(order_no="ORD-PAID")
    captured = await client.post(
        OP.format(order="ORD-AUTH"), json={"operation": "capture", "amount": "1.000"}, headers=key
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["initiator"] == {}  # ottu-api §2: {} for an API key
    refunded = await client.post(
        OP.format(order="ORD-PAID"), json={"operation": "refund", "amount": "1.000"}, headers=later
    )
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["initiator"] == {}
    inquiry = await client.post(INQ.format(order="ORD-PAID"), headers=key)
    assert inquiry.status_code == 200, inquiry.text
    # The scheme keyword is case-insensitive, as DRF's.
    lower = {"Authorization": key["Authorization"].replace("Api-Key", "api-key")}
    assert (await client.post(INQ.format(order="ORD-PAID"), headers=lower)).status_code == 200

    # Wrong, unknown, revoked or expired keys: 401, nothing changed.
    await seed.transaction(order_no="ORD-1")
    good = key["Authorization"].split(" ", 1)[1]
    prefix, secret = good.split(".", 1)
    revoked = await seed.api_key(revoked_at=datetime.now(UTC) - timedelta(seconds=1))
    expired = await seed.api_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for headers in (
        {"Authorization": f"Api-Key {prefix}.{flipped}"},  # wrong secret
        {"Authorization": f"Api-Key zzzzzzzz.{secret}"},  # unknown prefix
        revoked,
        expired,
        {"Authorization": f"Api-Key {prefix}{secret}"},  # no separator
        {"Authorization": f"Api-Key {prefix}."},  # no secret
        {"Authorization": f"Api-Key {good}x"},
    ):
        await refused(
            seed,
            client,
            OP.format(order="ORD-1"),
            headers,
            401,
            INVALID_KEY,
            json={"operation": "refund", "amount": "1.000"},
        )
    # Still fine after all that (seven failures stay under the per-address limit of ten).
    ok = await client.post(INQ.format(order="ORD-1"), headers={"Authorization": f"Api-Key {good}"})
    assert ok.status_code == 200, ok.text


# -- throttling (decisions §11): tests/api/test_auth_limits.py ------------------------------------

# -- secrets at rest and in logs (decisions §11, §12) ---------------------------------------------


async def test_password_is_argon2id_and_api_key_is_stored_hashed(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    await seed.transaction(order_no="ORD-1")
    headers = await seed.user("real", PASSWORD, permissions=["payment.inquiry"])
    key_header = await seed.api_key()
    key = key_header["Authorization"].split(" ", 1)[1]
    prefix, secret = key.split(".", 1)
    async with seed.ctx.db.read() as session:
        user = (await session.scalars(select(User).where(User.username == "real"))).one()
        keys = list((await session.execute(select(ApiKey.__table__))).all())
    assert user.password_hash.startswith("$argon2id$"), user.password_hash[:20]
    assert PASSWORD not in user.password_hash
    assert len(keys) == 1
    stored = " ".join(str(value) for value in keys[0])
    assert keys[0].prefix == prefix
    assert secret not in stored and key not in stored and keys[0].secret_hash != secret
    # Both still authenticate.
    for auth in (headers, key_header):
        response = await client.post(INQ.format(order="ORD-1"), headers=auth)
        assert response.status_code == 200, response.text


async def test_credentials_never_appear_in_logs(
    client: httpx.AsyncClient,
    seed: Seed,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="payops")
    formatted = io.StringIO()
    json_handler = logging.StreamHandler(formatted)
    json_handler.setFormatter(JsonFormatter())
    json_handler.setLevel(logging.DEBUG)
    payops_logger = logging.getLogger("payops")
    payops_logger.addHandler(json_handler)
    try:
        await seed.transaction(order_no="ORD-1")
        password = "Pw-9f3b1c77-secret"
        wrong = "Wrong-Pw-5d2e0a11"
        good = await add_user(seed, "merchant", password, superuser=True)
        bad = basic("merchant", wrong)
        unknown = basic("ghost-user", "Ghost-Pw-1a2b3c4d")
        key_header = await seed.api_key()
        key = key_header["Authorization"].split(" ", 1)[1]
        secret = key.split(".", 1)[1]
        wrong_key = f"{key.split('.', 1)[0]}.{'Q' * 32}"
        bearer = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2lnbmF0dXJlLXNlY3JldA"
        garbage = "Basic Zm9vOmJhcg==garbage-secret-77"
        for headers, url, body in (
            (good, OP, {"operation": "refund", "amount": "1.000"}),
            (good, INQ, {}),
            (bad, OP, {"operation": "refund", "amount": "1.000"}),
            (unknown, INQ, {}),
            (key_header, INQ, {}),
            ({"Authorization": f"Api-Key {wrong_key}"}, INQ, {}),
            ({"Authorization": f"Bearer {bearer}"}, INQ, {}),
            ({"Authorization": garbage}, INQ, {}),
            (good, OP, {"operation": "refund", "amount": "1.2345"}),
        ):
            response = await client.post(url.format(order="ORD-1"), json=body, headers=headers)
            assert response.status_code < 500, response.text
    finally:
        payops_logger.removeHandler(json_handler)
    captured = capsys.readouterr()

    assert any(r.name.startswith("payops") for r in caplog.records), "no payops log captured"
    assert formatted.getvalue(), "the JSON formatter saw nothing"
    forbidden = {
        "password": password,
        "wrong password": wrong,
        "unknown user's password": "Ghost-Pw-1a2b3c4d",
        "API key": key,
        "API key secret": secret,
        "wrong API key": wrong_key,
        "bearer token": bearer,
        "garbage credential": "garbage-secret-77",
    }
    for headers in (good, bad, unknown, key_header):
        value = headers["Authorization"]
        forbidden[f"header {value[:12]}"] = value
        forbidden[f"token {value[:12]}"] = value.split(" ", 1)[1]
    texts = {
        "caplog": caplog.text,
        "records": "\n".join(repr(vars(r)) + r.getMessage() for r in caplog.records),
        "json logs": formatted.getvalue(),
        "stderr": captured.err,
        "stdout": captured.out,
    }
    leaks = [
        f"{what} in {where}"
        for what, secret_value in forbidden.items()
        for where, text in texts.items()
        if secret_value in text
    ]
    assert not leaks, leaks
