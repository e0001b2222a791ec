"""Taking a payment at a real gateway's hosted page (issue 17): the service behind the hosted
page's payment methods and PayOps's return, response and receipt endpoints.

The journey: the customer chooses a gateway on ``/checkout/{session_id}`` → an **attempt** is
recorded (one open attempt per session, under the parent's lock) with a new unguessable
**token** → the connector's ``start_checkout`` asks the gateway for a payment session (or builds
the signed/encrypted request) with URLs that carry the token → what the gateway answered is
stored on the attempt (``gateway_refs`` and ``start``) **before** the browser is sent → the
browser comes back to ``/checkout/return/{token}`` (or, for KNET, the gateway's server posts to
``/checkout/response/{token}`` and the browser then reaches ``/checkout/receipt/{token}``) → the
attempt is settled from a server-side read or a verified message (``confirm_return`` /
``receive_result``), never from the browser's parameters.

The token is stored as is, under a unique index: a retried start (a lost gateway reply) must
give the gateway the same URLs as the first one, which may have reached it. It names the attempt
and grants nothing else: a request to its URLs only makes PayOps ask the gateway again.

``start`` holds ``{"outcome": "starting"|"success"|"failed"|"unknown", "method", "url",
"fields", "origin", "message", "since", "returned"}``; ``"starting"`` marks a start in flight so a
double click waits for it instead of starting again. Gateway references whose key starts with
``secret_`` (MPGS's success indicator) stay on the server: ``public_refs`` drops them wherever
references are shown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from payops.connectors.base import (
    CALL_MARGIN_SECONDS,
    CheckoutRequest,
    CheckoutStart,
    GatewayResult,
    NotificationRejected,
    Outcome,
)
from payops.context import AppContext
from payops.db.models import GatewayConfig, PaymentAttempt, PaymentTransaction
from payops.gateways.service import (
    ask_gateway,
    connector_for,
    timeout_seconds,
    without_personal_data,
)
from payops.transactions import repository
from payops.transactions.service import apply_attempt_result, payment_ref, start_attempt

log = logging.getLogger(__name__)

STARTING, STARTED, START_FAILED, START_UNKNOWN = "starting", "success", "failed", "unknown"
# An attempt whose outcome is known for good: a return is answered from storage.
SETTLED_ATTEMPT_STATES = ("success", "failed", "needs_review")
SECRET_PREFIX = "secret_"
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits, 43 URL-safe characters


def token_ok(token: str) -> bool:
    return 20 <= len(token) <= 64 and set(token) <= TOKEN_ALPHABET


def public_refs(refs: dict[str, Any] | None) -> dict[str, Any]:
    """Gateway references fit to show (API bodies, pages, logs, dashboard)."""
    return {k: v for k, v in (refs or {}).items() if not str(k).startswith(SECRET_PREFIX)}


def return_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/checkout/return/{token}"


def response_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/checkout/response/{token}"


def receipt_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/checkout/receipt/{token}"


def notification_url(base: str, pg_code: str) -> str:
    return f"{base.rstrip('/')}/b/pg/notifications/{pg_code}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def checkout_request(
    base: str,
    token: str,
    parent: PaymentTransaction,
    attempt: PaymentAttempt,
    *,
    retry: bool = False,
) -> CheckoutRequest:
    back = return_url(base, token)
    customer = parent.customer or {}
    return CheckoutRequest(
        payment=payment_ref(attempt),
        return_url=back,
        cancel_url=f"{back}?outcome=cancel",
        failure_url=f"{back}?outcome=failure",
        timeout_url=f"{back}?outcome=timeout",
        response_url=response_url(base, token),
        notification_url=notification_url(base, attempt.gateway_config.pg_code),
        description=f"Order {parent.order_no}" if parent.order_no else "",
        customer={
            "email": str(customer.get("customer_email") or ""),
            "first_name": str(customer.get("customer_first_name") or ""),
            "last_name": str(customer.get("customer_last_name") or ""),
            "phone": str(customer.get("customer_phone") or ""),
        },
        language=parent.language or "en",
        expires_at=parent.expires_at,
        retry=retry,
    )


def stored_start(start: CheckoutStart) -> dict[str, Any]:
    return {
        "outcome": {Outcome.SUCCESS: STARTED, Outcome.FAILED: START_FAILED}.get(
            start.outcome, START_UNKNOWN
        ),
        "method": (start.method or "GET").upper(),
        "url": start.url,
        "fields": {str(k): str(v) for k, v in (start.fields or {}).items()},
        "origin": origin_of(start.url),
        "message": start.message,
        "raw": public_refs(start.raw),
    }


def _now() -> datetime:
    return datetime.now(UTC)


def start_budget(gateway: GatewayConfig, ctx: AppContext) -> float:
    """How long a start may take (MPGS may read the order before it creates a session)."""
    return 2 * timeout_seconds(gateway, ctx.settings) + CALL_MARGIN_SECONDS


def in_flight(attempt: PaymentAttempt, ctx: AppContext) -> bool:
    start = attempt.start or {}
    if start.get("outcome") != STARTING:
        return False
    try:
        since = datetime.fromisoformat(str(start.get("since")))
    except ValueError:
        return False
    return _now() - since < timedelta(seconds=start_budget(attempt.gateway_config, ctx))


@dataclass
class Begun:
    attempt: PaymentAttempt
    parent: PaymentTransaction


async def _ask_start(
    ctx: AppContext, gateway: GatewayConfig, request: CheckoutRequest
) -> CheckoutStart:
    """One start_checkout call that never raises and never outlives its budget; run as a task,
    so a customer closing the tab does not cut it short between the call and its recording."""
    connector = connector_for(gateway, ctx.settings)
    try:
        return await asyncio.wait_for(connector.start_checkout(request), start_budget(gateway, ctx))
    except Exception as exc:  # noqa: BLE001 - anything but an answer is "unknown"
        log.warning(
            "checkout start at %s ended without an answer: %s", gateway.pg_code, type(exc).__name__
        )
        return CheckoutStart(
            Outcome.UNKNOWN,
            raw={"error": type(exc).__name__},
            message="The payment gateway did not answer",
        )
    finally:
        await connector.aclose()


async def _record_start(ctx: AppContext, attempt_id: int, start: CheckoutStart) -> Begun:
    async with ctx.db.write() as session:
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        parent = await repository.lock_parent_by_id(session, attempt.transaction_id)
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        attempt.gateway_refs = {**(attempt.gateway_refs or {}), **(start.gateway_refs or {})}
        # The gateway's reply is stored as evidence, without buyer personal data or secrets.
        redacted = without_personal_data(
            attempt.gateway_config, GatewayResult(start.outcome, dict(start.raw or {}))
        ).raw
        attempt.start = stored_start(replace(start, raw=redacted))
        if start.outcome == Outcome.FAILED and attempt.state == "pending":
            result = without_personal_data(
                attempt.gateway_config,
                GatewayResult(
                    Outcome.FAILED,
                    public_refs(start.raw),
                    {},
                    start.message or "The payment gateway refused the payment",
                ),
            )
            await apply_attempt_result(session, parent, attempt, result)
        log.info(
            "checkout start for attempt %s: %s", attempt.reference_number, attempt.start["outcome"]
        )
        return Begun(attempt, parent)


async def _run_start(ctx: AppContext, base: str, attempt_id: int, *, retry: bool) -> Begun:
    async with ctx.db.read() as session:
        attempt = await session.get(PaymentAttempt, attempt_id)
        assert attempt is not None and attempt.token is not None
        parent = await session.get(PaymentTransaction, attempt.transaction_id)
        assert parent is not None
        request = checkout_request(base, attempt.token, parent, attempt, retry=retry)
        gateway = attempt.gateway_config
    task = asyncio.ensure_future(_start_and_record(ctx, gateway, request, attempt_id))
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)
    return await asyncio.shield(task)


async def _start_and_record(
    ctx: AppContext, gateway: GatewayConfig, request: CheckoutRequest, attempt_id: int
) -> Begun:
    return await _record_start(ctx, attempt_id, await _ask_start(ctx, gateway, request))


async def begin(ctx: AppContext, base: str, parent_id: int, gateway: GatewayConfig) -> Begun:
    """The customer chose ``gateway``: a new attempt, started at the gateway. Raises
    ``NoNewAttempt`` (an attempt is open, or the session is paid or closed) and
    ``TransactionError`` (the gateway does not take the currency)."""
    marker = {"outcome": STARTING, "since": _now().isoformat()}
    attempt = await start_attempt(ctx.db, parent_id, gateway, token=new_token(), start=marker)
    return await _run_start(ctx, base, attempt.id, retry=False)


async def claim_retry(ctx: AppContext, attempt_id: int) -> bool:
    """Take the right to start an attempt again after an unknown start (one at a time)."""
    async with ctx.db.write() as session:
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        if attempt is None:
            return False
        await repository.lock_parent_by_id(session, attempt.transaction_id)
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        start = attempt.start or {}
        if attempt.state != "pending" or start.get("returned"):
            return False
        if start.get("outcome") == START_UNKNOWN or (
            start.get("outcome") == STARTING and not in_flight(attempt, ctx)
        ):
            attempt.start = {**start, "outcome": STARTING, "since": _now().isoformat()}
            return True
        return False


async def retry(ctx: AppContext, base: str, attempt_id: int) -> Begun | None:
    """ "Try again" after a start whose reply was lost: the same attempt, started again with
    ``retry=True`` (never a second attempt). None when the attempt is not retryable (another
    request is starting it, or it has moved on)."""
    if not await claim_retry(ctx, attempt_id):
        return None
    return await _run_start(ctx, base, attempt_id, retry=True)


async def wait_for_start(ctx: AppContext, attempt_id: int) -> PaymentAttempt | None:
    """A double click: wait (bounded) for the start another request is making."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with ctx.db.read() as session:
            attempt = await session.get(PaymentAttempt, attempt_id)
        if attempt is None or not in_flight(attempt, ctx):
            return attempt
        if asyncio.get_running_loop().time() > deadline:
            return attempt
        await asyncio.sleep(0.1)


async def open_attempt(ctx: AppContext, parent_id: int) -> PaymentAttempt | None:
    async with ctx.db.read() as session:
        return await repository.blocking_attempt(session, parent_id)


async def find_by_token(ctx: AppContext, token: str) -> PaymentAttempt | None:
    if not token_ok(token):
        return None
    async with ctx.db.read() as session:
        return await repository.attempt_by_token(session, token)


@dataclass
class Settled:
    parent: PaymentTransaction
    attempt: PaymentAttempt
    asked_gateway: bool


async def settle_return(
    ctx: AppContext, attempt: PaymentAttempt, params: dict[str, str]
) -> Settled:
    """The browser came back for ``attempt``: confirm at the gateway (only the connector's
    server-side read or verified message decides) and apply what it says. An attempt whose
    outcome is known is answered from storage, without a gateway call."""
    asked = False
    if attempt.state not in SETTLED_ATTEMPT_STATES:
        asked = True
        gateway = attempt.gateway_config
        ref = payment_ref(attempt)
        task = asyncio.ensure_future(_confirm_and_apply(ctx, gateway, attempt.id, ref, params))
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
        await asyncio.shield(task)
    async with ctx.db.read() as session:
        stored = await session.get(PaymentAttempt, attempt.id)
        assert stored is not None
        parent = await session.get(PaymentTransaction, stored.transaction_id)
        assert parent is not None
        return Settled(parent, stored, asked)


async def _confirm_and_apply(
    ctx: AppContext, gateway: GatewayConfig, attempt_id: int, ref: Any, params: dict[str, str]
) -> None:
    result = await ask_gateway(
        gateway, ctx.settings, lambda c: c.confirm_return(ref, params), ref.reference_number
    )
    async with ctx.db.write() as session:
        attempt = await session.get(PaymentAttempt, attempt_id)
        assert attempt is not None
        parent = await repository.lock_parent_by_id(session, attempt.transaction_id)
        attempt = await session.get(PaymentAttempt, attempt_id, populate_existing=True)
        assert attempt is not None
        attempt.start = {**(attempt.start or {}), "returned": True}
        if attempt.state in SETTLED_ATTEMPT_STATES:
            return  # another return settled it meanwhile
        if result.outcome in (Outcome.SUCCESS, Outcome.FAILED):
            await apply_attempt_result(session, parent, attempt, result)
        else:
            # Not final (PENDING) or not known (UNKNOWN): the attempt stays open, its latest
            # answer kept; the notification or the automatic attempt inquiry settles it.
            attempt.pg_response = result.raw
            attempt.pg_params = result.pg_params
            attempt.message = result.message
            attempt.gateway_refs = {**(attempt.gateway_refs or {}), **result.gateway_refs}


async def receive_posted_result(ctx: AppContext, token: str, form: dict[str, str]) -> None:
    """KNET-style: the gateway's server posted the result for the attempt named by ``token``.
    Decrypted/verified by the connector (no gateway call); applied only when it is a success or
    a failure the connector vouches for, else only stored. Never raises."""
    try:
        attempt = await find_by_token(ctx, token)
        if attempt is None:
            log.warning("posted gateway result for an unknown token refused")
            return
        gateway = attempt.gateway_config
        connector = connector_for(gateway, ctx.settings)
        try:
            result = connector.receive_result(payment_ref(attempt), form)
        except NotificationRejected as exc:
            log.warning("posted result for attempt %s refused: %s", attempt.reference_number, exc)
            return
        except NotImplementedError:
            log.warning("%s does not post results", gateway.pg_code)
            return
        finally:
            await connector.aclose()
        result = without_personal_data(gateway, result)
        async with ctx.db.write() as session:
            parent = await repository.lock_parent_by_id(session, attempt.transaction_id)
            stored = await session.get(PaymentAttempt, attempt.id, populate_existing=True)
            assert stored is not None
            stored.start = {**(stored.start or {}), "posted": True}
            if stored.state in SETTLED_ATTEMPT_STATES:
                return
            if result.outcome in (Outcome.SUCCESS, Outcome.FAILED):
                await apply_attempt_result(session, parent, stored, result)
            else:
                stored.pg_response = result.raw
                stored.pg_params = result.pg_params
                stored.message = result.message
                stored.gateway_refs = {**(stored.gateway_refs or {}), **result.gateway_refs}
    except Exception as exc:  # noqa: BLE001 - the gateway must get its answer regardless
        log.error("posted gateway result could not be recorded: %s", type(exc).__name__)
