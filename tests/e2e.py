"""End-to-end helpers: one way to send a v1 or v2 operation and check its answer, and the
fixtures and helpers every gateway's end-to-end module shares.

Every test that drives ``POST /b/pbl/v1/operation/{order_no}`` through the HTTP API uses these,
with one argument order: ``post_op(client, auth, operation, amount, order_no=…)``; v2 (by
session id) is ``post_v2_op(client, auth, operation, session_id, amount)``.

A gateway's module takes the shared fixtures by name, as it takes its fake's::

    auth = e2e.auth
    settings_overrides = e2e.settings_overrides
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest

from payops.db.models import Operation
from tests.helpers import Seed

OPERATION_PATH = "/b/pbl/v1/operation/{}"
V2_OPERATION_PATH = "/b/pbl/v2/operation/"
V2_INQUIRY_PATH = "/b/pbl/v2/inquiry/"
# What PayOps answers when a gateway's reply was lost, and for an operation it cannot perform.
UNCONFIRMED = "The payment gateway did not confirm the operation; it will be reconciled"
NOT_SUPPORTED = "Operation is not supported by the payment gateway"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """A generous default gateway timeout, so a loaded test machine never turns a healthy call
    into an unknown outcome; the timeout tests set a short one per configuration
    (``gateway_options(…, timeout=…)``)."""
    return {"gateway_timeout_seconds": 20.0}


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    """An API key's header (sha256-hashed: no argon2 cost per test)."""
    return await seed.api_key()


def gateway_options(base_url: str, timeout: float | None = None, **options: Any) -> dict[str, Any]:
    """A gateway configuration's options pointing at a fake: its base URL, the given options,
    and a timeout of its own when given."""
    found: dict[str, Any] = {"base_url": base_url, **options}
    if timeout is not None:
        found["timeout_seconds"] = timeout
    return found


async def states(seed: Seed) -> list[str]:
    """The states of every operation, oldest first."""
    return [op.state for op in await seed.operations()]


async def totals(seed: Seed, order_no: str = "ORD-1") -> tuple[int, int, int]:
    """The parent's captured, refunded and voided totals (minor units)."""
    parent = await seed.find(order_no)
    assert parent is not None
    return parent.captured, parent.refunded, parent.voided


async def post_v2_op(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    operation: str,
    session_id: str,
    amount: str | None = None,
) -> httpx.Response:
    """Send one v2 operation (the transaction named by its session id)."""
    body: dict[str, Any] = {"operation": operation, "session_id": session_id}
    if amount is not None:
        body["amount"] = amount
    return await client.post(V2_OPERATION_PATH, headers=auth, json=body)


async def v2_inquiry(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: str
) -> httpx.Response:
    return await client.post(V2_INQUIRY_PATH, headers=auth, json={"session_id": session_id})


def op_path(order_no: str = "ORD-1", *, slash: bool = False) -> str:
    return OPERATION_PATH.format(order_no) + ("/" if slash else "")


async def post_op(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    operation: str,
    amount: str | None = None,
    *,
    order_no: str = "ORD-1",
    slash: bool = False,
    tracking_key: str | None = None,
    never_shown: Iterable[str] = (),
    base_url: str = "",
    expect: int | None = None,
) -> httpx.Response:
    """Send one v1 operation; ``never_shown`` are secrets the answer must not contain, ``expect``
    the status it must have. ``base_url`` names a server apart from ``client``'s own."""
    body: dict[str, Any] = {"operation": operation}
    if amount is not None:
        body["amount"] = amount
    headers = dict(auth)
    if tracking_key is not None:
        headers["Tracking-Key"] = tracking_key
    url = base_url + op_path(order_no, slash=slash)
    response = await client.post(url, json=body, headers=headers)
    if expect is not None:
        assert response.status_code == expect, response.text
    for secret in never_shown:
        assert secret not in response.text
    return response


def assert_operation(
    response: httpx.Response,
    operation: str,
    amount: str,
    state: str,
    *,
    never_shown: Iterable[str] = (),
) -> dict[str, Any]:
    """A successful external operation (the ExternalOperation body) leaving the transaction in
    ``state``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["operation"] == operation
    assert body["amount"] == amount
    assert body["success"] is True
    assert body["pg_code"] and "gateway_name" not in body  # exactly ExternalOperation
    assert body["txn"]["state"] == state
    assert body["txn"]["amount"] == amount
    for secret in never_shown:
        assert secret not in response.text
    return body


def asserting_operation(*never_shown: str) -> Callable[..., dict[str, Any]]:
    """``assert_operation`` for a gateway's module: its secrets are never shown."""
    return functools.partial(assert_operation, never_shown=never_shown)


async def import_payment(
    seed: Seed,
    connector: str,
    base_url: str,
    gateway_refs: dict[str, Any],
    credentials: dict[str, Any],
    *,
    amount: str,
    currency: str,
    state: str = "paid",
    timeout: float | None = None,
    options: dict[str, Any] | None = None,
    **gateway: Any,
) -> None:
    """A payment at a fake gateway (at ``base_url``) imported into PayOps as order ORD-1, on a
    new configuration ``<connector>-<currency>``."""
    await seed.imported(
        connector=connector,
        code=f"{connector}-{currency.lower()}",
        amount=amount,
        currency=currency,
        state=state,
        gateway_refs=gateway_refs,
        credentials=credentials,
        options=gateway_options(base_url, timeout, **(options or {})),
        **gateway,
    )


async def assert_unconfirmed(response: httpx.Response, seed: Seed, operation: str) -> Operation:
    """The 504 answer to an operation the gateway did not confirm: the one operation of ORD-1,
    left processing for the reconciler."""
    assert response.status_code == 504, response.text
    [stored] = await seed.operations()
    assert response.json() == {
        "detail": UNCONFIRMED,
        "operation": operation,
        "result": "pending",
        "reference_number": stored.reference_number,
    }
    assert stored.state == "processing"
    return stored
