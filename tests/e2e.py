"""End-to-end helpers: one way to send a v1 operation and check its answer.

Every test that drives ``POST /b/pbl/v1/operation/{order_no}`` through the HTTP API uses these,
with one argument order: ``post_op(client, auth, operation, amount, order_no=…)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

OPERATION_PATH = "/b/pbl/v1/operation/{}"


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
) -> httpx.Response:
    """Send one v1 operation; ``never_shown`` are secrets the answer must not contain."""
    body: dict[str, Any] = {"operation": operation}
    if amount is not None:
        body["amount"] = amount
    headers = dict(auth)
    if tracking_key is not None:
        headers["Tracking-Key"] = tracking_key
    response = await client.post(op_path(order_no, slash=slash), json=body, headers=headers)
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
