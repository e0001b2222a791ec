"""Seeding and inspection helpers shared by the API tests (they use the service layer, the same
code the CLI runs)."""

from __future__ import annotations

import base64
import itertools
import os
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from payops.auth.secrets import hash_password, new_api_key
from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    Connector,
    ConnectorConfig,
    GatewayResult,
    Notification,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.context import AppContext
from payops.db.models import (
    ApiKey,
    AuditEntry,
    Operation,
    OutboxEvent,
    PaymentAttempt,
    PaymentTransaction,
    User,
    UserPermission,
)
from payops.gateways.service import add_gateway
from payops.ids import new_reference_number
from payops.money import parse_amount
from payops.transactions import repository
from payops.transactions.service import import_transaction, new_parent, pay_with_sandbox
from payops.webhooks import outbox
from tests.checkout.journeys import BrowserStep

T = TypeVar("T")
SUCCESS_CARD = "4111111111111111"
DECLINED_CARD = "4000000000000002"
PENDING_CARD = "4000000000000259"


class Seed:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._gateways: dict[str, Any] = {}

    async def user(
        self,
        username: str = "merchant",
        password: str = "correct horse battery",
        permissions: list[str] | tuple[str, ...] = (),
        superuser: bool = False,
        active: bool = True,
    ) -> dict[str, str]:
        async with self.ctx.db.write() as session:
            session.add(
                User(
                    username=username,
                    password_hash=hash_password(password),
                    is_superuser=superuser,
                    is_active=active,
                    first_name="Mer",
                    last_name="Chant",
                    email="m@example.com",
                    permissions=[UserPermission(code=code) for code in permissions],
                )
            )
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def superuser(self, username: str = "admin") -> dict[str, str]:
        return await self.user(username, superuser=True)

    async def api_key(self, **fields: Any) -> dict[str, str]:
        key, prefix, secret_hash = new_api_key()
        async with self.ctx.db.write() as session:
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="test", **fields))
        return {"Authorization": f"Api-Key {key}"}

    async def gateway(
        self,
        code: str = "sandbox-kwd",
        mode: str = "purchase",
        currency: str = "KWD",
        **options: Any,
    ) -> Any:
        if code in self._gateways:
            return self._gateways[code]
        async with self.ctx.db.write() as session:
            config = await add_gateway(
                session,
                self.ctx.settings,
                pg_code=code,
                connector="sandbox",
                operation_mode=mode,
                default_currency=currency,
                **options,
            )
        self._gateways[code] = config
        return config

    async def transaction(
        self,
        amount: str = "100.000",
        currency: str = "KWD",
        *,
        order_no: str | None = "ORD-1",
        mode: str = "purchase",
        gateway_code: str | None = None,
        gateway_currency: str | None = None,
        card: str | None = SUCCESS_CARD,
        fee: str | None = None,
        webhook_url: str = "",
        **gateway_options: Any,
    ) -> PaymentTransaction:
        """A parent transaction, paid at a sandbox gateway with ``card`` (None: never attempted)."""
        gw_currency = gateway_currency or currency
        code = gateway_code or f"sandbox-{mode}-{gw_currency.lower()}"
        gateway = await self.gateway(code, mode, gw_currency, **gateway_options)
        async with self.ctx.db.write() as session:
            parent = new_parent(
                amount=parse_amount(amount, currency),
                currency_code=currency,
                pg_codes=[code],
                order_no=order_no,
                fee=parse_amount(fee, currency) if fee else 0,
                webhook_url=webhook_url,
            )
            session.add(parent)
            await session.flush()
            parent_id = parent.id
        if card is not None:
            return await pay_with_sandbox(self.ctx.db, self.ctx.settings, parent_id, gateway, card)
        return await self.parent(parent_id)

    async def imported(
        self,
        *,
        connector: str,
        code: str,
        amount: str,
        currency: str,
        state: str = "paid",
        gateway_refs: dict[str, Any],
        credentials: dict[str, Any],
        options: dict[str, Any],
        order_no: str | None = "ORD-1",
        mode: str | None = None,
        **gateway_options: Any,
    ) -> PaymentTransaction:
        """A payment taken at a real gateway (``payops txn import``), on a new configuration."""
        async with self.ctx.db.write() as session:
            gateway = await add_gateway(
                session,
                self.ctx.settings,
                pg_code=code,
                connector=connector,
                operation_mode=mode or ("authorize" if state == "authorized" else "purchase"),
                default_currency=currency,
                credentials=credentials,
                options=options,
                **gateway_options,
            )
            parent = await import_transaction(
                session,
                gateway=gateway,
                amount=parse_amount(amount, currency),
                currency_code=currency,
                state=state,
                gateway_refs=gateway_refs,
                order_no=order_no,
            )
            return parent

    async def parent(self, parent_id: int) -> PaymentTransaction:
        async with self.ctx.db.read() as session:
            return await session.get_one(PaymentTransaction, parent_id)

    async def set_state(self, order_no: str, state: str) -> None:
        async with self.ctx.db.write() as session:
            parent = await repository.find_parent(session, order_no=order_no)
            assert parent is not None
            parent.state = state

    async def set_hmac_key(self, key: str) -> None:
        async with self.ctx.db.write() as session:
            await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, key)

    async def snapshot(self) -> dict[str, Any]:
        """Every stored transaction, attempt and operation, for "nothing changed" assertions."""
        async with self.ctx.db.read() as session:

            def rows(model: Any) -> Any:
                return session.execute(select(model.__table__).order_by(model.__table__.c.id))

            return {
                "transactions": [tuple(r) for r in await rows(PaymentTransaction)],
                "attempts": [tuple(r) for r in await rows(PaymentAttempt)],
                "operations": [tuple(r) for r in await rows(Operation)],
                "outbox": [tuple(r) for r in await rows(OutboxEvent)],
            }

    async def operations(self, order_no: str = "ORD-1") -> list[Operation]:
        async with self.ctx.db.read() as session:
            parent = await repository.find_parent(session, order_no=order_no, include_deleted=True)
            assert parent is not None
            return await repository.operations(session, parent.id)

    async def find(
        self, order_no: str = "ORD-1", include_deleted: bool = True
    ) -> PaymentTransaction | None:
        async with self.ctx.db.read() as session:
            return await repository.find_parent(
                session, order_no=order_no, include_deleted=include_deleted
            )

    async def outbox(self) -> list[OutboxEvent]:
        async with self.ctx.db.read() as session:
            return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))

    async def audit(self) -> list[AuditEntry]:
        async with self.ctx.db.read() as session:
            return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))

    async def count(self, model: Any) -> int:
        async with self.ctx.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# -- one connector, called directly (the connector tests) ----------------------------------------

_references = itertools.count(1)


def operation_request(
    operation: str,
    amount: int,
    payment: PaymentRef,
    *,
    reference: str | None = None,
    currency: str | None = None,
    **gateway_refs: Any,
) -> OperationRequest:
    """An operation on ``payment``, with one argument order for every gateway's tests: the
    operation, its amount in minor units, the payment. The reference is a fresh one unless
    given; the currency is the payment's unless given."""
    return OperationRequest(
        operation=operation,
        reference_number=reference or f"OPREF{next(_references):011d}",
        amount=amount,
        currency_code=currency or payment.currency_code,
        payment=payment,
        gateway_refs=gateway_refs,
    )


async def once(connector: Connector, call: Awaitable[T]) -> T:
    """Await one call of ``connector``, then close it (its HTTP client)."""
    try:
        return await call
    finally:
        await connector.aclose()


async def run_once(connector: Connector, request: OperationRequest) -> GatewayResult:
    return await once(connector, connector.run(request))


async def inquire_once(connector: Connector, request: OperationRequest) -> GatewayResult:
    return await once(connector, connector.inquire_operation(request))


def new_attempt(amount: int, currency: str, mode: str = "purchase") -> PaymentRef:
    """A fresh payment attempt as a connector's checkout sees it: a new reference number."""
    return PaymentRef(
        reference_number=new_reference_number(),
        amount=amount,
        currency_code=currency,
        operation_mode=mode,
    )


def checkout_request(
    payment: PaymentRef,
    return_url: str,
    pg_code: str,
    token: str,
    customer: dict[str, Any] | None = None,
    **changes: Any,
) -> CheckoutRequest:
    """A checkout start as PayOps's checkout sends it: the return, cancel and failure URLs under
    ``return_url``, the response URL of the page ``token``, the notification URL of ``pg_code``."""
    request = CheckoutRequest(
        payment=payment,
        return_url=return_url,
        cancel_url=f"{return_url}?outcome=cancel",
        failure_url=f"{return_url}?outcome=failure",
        response_url=f"http://payops.test/checkout/response/{token}",
        notification_url=f"http://payops.test/b/pg/notifications/{pg_code}",
        merchant_name="PayOps Test Shop",
        description="Order 42",
        customer=customer or {},
    )
    return replace(request, **changes)


def started(payment: PaymentRef, start: CheckoutStart) -> PaymentRef:
    """The attempt as PayOps keeps it after ``start``: its gateway refs stored."""
    return replace(payment, gateway_refs={**payment.gateway_refs, **start.gateway_refs})


def attempt_of(request: CheckoutRequest, start: CheckoutStart) -> PaymentRef:
    return started(request.payment, start)


async def begun(connector: Connector, request: CheckoutRequest) -> tuple[PaymentRef, CheckoutStart]:
    """Start ``request``, which must succeed: the attempt as kept after it, and the start."""
    start = await connector.start_checkout(request)
    assert start.outcome == Outcome.SUCCESS, start
    return started(request.payment, start), start


def returned_params(step: BrowserStep, return_url: str) -> dict[str, str]:
    """What the browser brings back to ``return_url``: its query and posted fields."""
    assert step.url.startswith(return_url)
    return {**dict(parse_qsl(urlsplit(step.url).query)), **step.fields}


def browser_step(start: CheckoutStart) -> BrowserStep:
    """Where ``start`` sends the customer's browser."""
    return BrowserStep(start.method, start.url, dict(start.fields))


async def paid_and_returned(
    gateway: Connector, journey: Any, fake: Any, request: CheckoutRequest
) -> tuple[CheckoutStart, GatewayResult]:
    """Start ``request``, pay at the fake's page, and confirm the browser's return."""
    start = await gateway.start_checkout(request)
    back = journey.pay(fake, browser_step(start), "success")
    assert back is not None
    return start, await gateway.confirm_return(attempt_of(request, start), back.fields)


async def forged_return(
    connector: Connector,
    journey: Any,
    fake: Any,
    attempt: tuple[PaymentRef, CheckoutStart],
    return_url: str,
    forged_key: str,
) -> GatewayResult:
    """Confirm the return the driver forges for ``attempt`` (a paid-looking return naming
    another gateway id in ``forged_key``), after which the fake must never have been asked about
    that id: only the stored one is read."""
    payment, start = attempt
    params = returned_params(journey.forge_return(fake, BrowserStep("GET", start.url)), return_url)
    result = await connector.confirm_return(payment, params)
    assert all(params[forged_key] not in r.path for r in fake.requests)
    return result


def driver_notification(
    journey: Any, fake: Any, connector_class: type[Connector], pg_code: str
) -> tuple[Notification, bytes]:
    """The notification a journey driver has the fake send, read by a connector configured as
    the driver configures the gateway (its webhook secret included), and the raw body."""
    from tests.fakes.receiver import receiver

    config = journey.gateway_config(fake, "purchase")
    listening = connector_class(
        ConnectorConfig(
            pg_code=pg_code,
            is_sandbox=True,
            credentials=config["credentials"],
            options=config["options"],
            webhook_secret=config["webhook_secret"],
        )
    )
    with receiver() as received:
        assert journey.notify(fake, received.url) is True
    [(headers, body)] = received.posts
    return listening.parse_notification(headers, body), body


# -- `payops serve` in a subprocess ----------------------------------------------------------------


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `payops serve` subprocess: a fresh data dir and secret key, no
    PAYOPS_* from the caller, and no background loops."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYOPS_")}
    env.update(
        {
            "PAYOPS_DATA_DIR": str(tmp_path / "data"),
            "PAYOPS_SECRET_KEY": Fernet.generate_key().decode(),
            "PAYOPS_RECONCILE_INTERVAL_SECONDS": "0",
            "PAYOPS_WEBHOOK_INTERVAL_SECONDS": "0",
            "PAYOPS_EXPIRY_INTERVAL_SECONDS": "0",
            **extra,
        }
    )
    return env


def wait_until_healthy(server: subprocess.Popen[Any], base_url: str, seconds: float = 90.0) -> None:
    """Until ``/healthz`` answers 200; fails with the server's output if it exits first."""
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, server.communicate()
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


def asgi_post_scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The ASGI scope of a POST to ``path`` from 127.0.0.1, for tests that drive an app's
    ``receive`` themselves (a client that goes away mid-body, say)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
