"""Gateway faults over real HTTP (decisions §5, §12).

A test-only connector, ``faulty``, speaks a small documented JSON protocol over HTTP to a local
fault-injecting gateway started by the test (asyncio streams in a background thread, on a free
loopback port). For each request the gateway can be told to hang past the client's timeout, reset
the connection after reading the request, answer 500, answer 200 with a body that is not JSON,
trickle its body past the operation deadline, or simply answer. Whether it *performed* the
operation is recorded apart from what it answered, and its inquiry endpoint tells that truth.

The gateway protocol (what FaultyConnector relies on):
- ``POST /v1/operations`` with ``Authorization: Bearer <api_key>`` and JSON
  ``{"reference", "operation", "amount", "currency", "payment_reference"}`` → 200
  ``{"status": "done", "reference", "transaction_id"}`` or 200
  ``{"status": "declined", "reference", "message"}``.
- ``GET /v1/operations/<reference>`` → 200 ``{"status": "done", ...}`` or 404
  ``{"status": "not_found", "reference"}``.
Anything else (transport error, 5xx, a body that is not such JSON) means "unknown".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from payops.cli.main import app as cli
from payops.config import Settings, get_settings
from payops.connectors.base import (
    Connector,
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.registry import CONNECTORS
from payops.context import AppContext
from payops.db.models import Operation, PaymentAttempt
from payops.gateways.service import add_gateway
from payops.operations.reconciler import reconcile_once
from payops.transactions import repository
from payops.transactions.service import apply_attempt_result, new_parent, start_attempt
from tests.e2e import post_op
from tests.helpers import Seed

ORDER = "ORD-1"
UNCONFIRMED = "The payment gateway did not confirm the operation; it will be reconciled"
CLIENT_TIMEOUT = 1.0  # the connector's HTTP timeout for each connect / read / write
OPERATION_DEADLINE = 2.0  # settings.gateway_timeout_seconds: the connector's budget for a call
HANG_SECONDS = 4.0  # how long a "timeout" fault sits on the request
FAULTS = ("timeout", "reset", "http500", "malformed", "slow")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "gateway_timeout_seconds": OPERATION_DEADLINE,
        "reconcile_max_attempts": 2,
        "reconcile_after_seconds": 0,
    }


# -- the fault-injecting gateway -----------------------------------------------------------------


class FaultGateway:
    """A tiny HTTP/1.1 gateway with scripted faults; its ``performed`` record is the truth."""

    def __init__(self) -> None:
        self.api_key = "fk_live_" + secrets.token_hex(16)
        self.operation_fault = "none"  # for the next operation requests: none or one of FAULTS
        self.perform = True  # whether an operation is performed before the fault hits
        self.decline = False
        self.inquiry_fault = "none"
        self.performed: dict[str, dict[str, Any]] = {}
        self.operation_calls: Counter[str] = Counter()
        self.inquiry_calls: Counter[str] = Counter()
        self.unauthorized = 0
        self.release = threading.Event()  # lets a "hold" request go on
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.url = ""

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- the wire ---------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:  # keep-alive: one request after another on this connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if not await self._respond(method, target, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # shutting down: end quietly
            return
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            if not writer.is_closing():
                writer.close()

    async def _respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self.unauthorized += 1
            await self._send(writer, 401, {"status": "error", "message": "unauthorized"})
            return True
        if method == "POST" and target == "/v1/operations":
            request = json.loads(body)
            reference = request["reference"]
            self.operation_calls[reference] += 1
            fault = self.operation_fault
            if fault == "hold":  # a slow gateway: it acts only when the test releases it
                await asyncio.to_thread(self.release.wait, 30)
                fault = "none"
            if self.decline and fault == "none":
                return await self._send(
                    writer,
                    200,
                    {"status": "declined", "reference": reference, "message": "Insufficient funds"},
                )
            if fault == "none" or self.perform:
                self.performed.setdefault(
                    reference, {**request, "transaction_id": secrets.token_hex(6)}
                )
            reply = {
                "status": "done",
                "reference": reference,
                "transaction_id": self.performed.get(reference, {}).get("transaction_id"),
            }
            return await self._fault(fault, writer, reply)
        if method == "GET" and target.startswith("/v1/operations/"):
            reference = target.rsplit("/", 1)[1]
            self.inquiry_calls[reference] += 1
            record = self.performed.get(reference)
            if record is None:
                return await self._fault(
                    self.inquiry_fault, writer, {"status": "not_found", "reference": reference}, 404
                )
            return await self._fault(
                self.inquiry_fault,
                writer,
                {
                    "status": "done",
                    "reference": reference,
                    "transaction_id": record["transaction_id"],
                    "amount": record["amount"],
                },
            )
        await self._send(writer, 404, {"status": "error", "message": "no such endpoint"})
        return True

    async def _fault(
        self, fault: str, writer: asyncio.StreamWriter, reply: dict[str, Any], status: int = 200
    ) -> bool:
        if fault == "none":
            return await self._send(writer, status, reply)
        if fault == "timeout":
            await asyncio.sleep(HANG_SECONDS)
            return await self._send(writer, status, reply)
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "http500":
            return await self._send(writer, 500, b"Internal Server Error", "text/plain")
        if fault == "malformed":
            return await self._send(
                writer, 200, b"<html><body>Service temporarily degraded", "application/json"
            )
        if fault == "slow":
            payload = json.dumps(reply).encode()
            writer.write(self._head(status, len(payload), "application/json"))
            await writer.drain()
            for byte in payload:  # one byte every 0.1 s: each read beats CLIENT_TIMEOUT, the
                #                      whole body takes far longer than OPERATION_DEADLINE
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
            return True
        raise AssertionError(f"unknown fault {fault}")

    @staticmethod
    def _head(status: int, length: int, content_type: str) -> bytes:
        return (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: Any,
        content_type: str = "application/json",
    ) -> bool:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        writer.write(self._head(status, len(payload), content_type) + payload)
        await writer.drain()
        return True


# -- the test-only connector -------------------------------------------------------------------


class FaultyConnector(Connector):
    """Like every real connector: honours its configured timeout for a whole call (connect, send,
    read) and turns anything that is not a documented answer into ``Outcome.UNKNOWN``."""

    name: ClassVar[str] = "faulty"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("api_key",)

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._http = httpx.AsyncClient(
            base_url=config.options["base_url"],
            timeout=float(config.options.get("read_timeout", CLIENT_TIMEOUT)),
            headers={"Authorization": f"Bearer {config.credentials['api_key']}"},
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | GatewayResult:
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                return await self._http.request(method, path, **kwargs)
        except (httpx.HTTPError, TimeoutError) as exc:
            return self._unknown({"error": type(exc).__name__})

    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def _operate(self, request: OperationRequest) -> GatewayResult:
        response = await self._call(
            "POST",
            "/v1/operations",
            json={
                "reference": request.reference_number,
                "operation": request.operation,
                "amount": request.amount,
                "currency": request.currency_code,
                "payment_reference": request.payment.reference_number,
            },
        )
        if isinstance(response, GatewayResult):
            return response
        return self._interpret(response, inquiry=False)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        response = await self._call("GET", f"/v1/operations/{request.reference_number}")
        if isinstance(response, GatewayResult):
            return response
        return self._interpret(response, inquiry=True)

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return GatewayResult(Outcome.SUCCESS, {"status": "captured"}, {}, "Approved")

    async def aclose(self) -> None:
        await self._http.aclose()

    @staticmethod
    def _unknown(raw: dict[str, Any]) -> GatewayResult:
        return GatewayResult(Outcome.UNKNOWN, raw, {}, "The gateway did not answer")

    def _interpret(self, response: httpx.Response, *, inquiry: bool) -> GatewayResult:
        if response.status_code >= 500:
            return self._unknown({"status_code": response.status_code})
        try:
            body = response.json()
        except ValueError:
            return self._unknown({"status_code": response.status_code, "error": "unparsable"})
        if not isinstance(body, dict):
            return self._unknown({"status_code": response.status_code, "error": "unparsable"})
        status = body.get("status")
        params = {
            "ref": body.get("reference"),
            "transaction_id": body.get("transaction_id"),
            "result": status,
        }
        if response.status_code == 200 and status == "done":
            return GatewayResult(
                Outcome.SUCCESS,
                body,
                params,
                "Approved",
                {"transaction_id": body.get("transaction_id")},
            )
        if response.status_code == 200 and status == "declined":
            return GatewayResult(Outcome.FAILED, body, params, str(body.get("message", "Declined")))
        if inquiry and response.status_code == 404 and status == "not_found":
            return GatewayResult(Outcome.FAILED, body, params, "No operation with this reference")
        return self._unknown({"status_code": response.status_code, "body": body})


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultGateway]:
    monkeypatch.setitem(CONNECTORS, FaultyConnector.name, FaultyConnector)
    server = FaultGateway()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record, including PayOps's own logger even if something stopped propagation."""
    caplog.set_level(logging.DEBUG)
    payops_logger = logging.getLogger("payops")
    payops_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        payops_logger.removeHandler(caplog.handler)


async def seed_paid_at_faulty(ctx: AppContext, gateway: FaultGateway, **options: Any) -> None:
    """A KWD 100.000 purchase, paid (one successful attempt) at gateway configuration faulty-kwd."""
    async with ctx.db.write() as session:
        config = await add_gateway(
            session,
            ctx.settings,
            pg_code="faulty-kwd",
            connector="faulty",
            operation_mode="purchase",
            default_currency="KWD",
            credentials={"api_key": gateway.api_key},
            options={"base_url": gateway.url, **options},
        )
        parent = new_parent(
            amount=100_000, currency_code="KWD", pg_codes=["faulty-kwd"], order_no=ORDER
        )
        session.add(parent)
        await session.flush()
        parent_id = parent.id
    attempt = await start_attempt(ctx.db, parent_id, config)
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        stored = await session.get(PaymentAttempt, attempt.id)
        assert stored is not None
        await apply_attempt_result(
            session,
            parent,
            stored,
            GatewayResult(
                Outcome.SUCCESS,
                {"status": "captured"},
                {"ref": attempt.reference_number},
                "Approved",
                {"payment_id": "pay_" + attempt.reference_number},
            ),
        )
        assert parent.state == "paid"


async def refund(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    amount: str = "10.000",
    tracking_key: str | None = "fault-1",
) -> httpx.Response:
    return await post_op(client, auth, "refund", amount, order_no=ORDER, tracking_key=tracking_key)


async def state_of(ctx: AppContext) -> tuple[list[tuple[str, str]], int, int]:
    """([(reference, state)], parent.refunded, reserved refunds)."""
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, order_no=ORDER)
        assert parent is not None
        ops = await repository.operations(session, parent.id)
        held = await repository.reservations(session, parent.id)
        return [(o.reference_number, o.state) for o in ops], parent.refunded, held["refund"]


def assert_no_secret(gateway: FaultGateway, *texts: str) -> None:
    for text in texts:
        assert gateway.api_key not in text, "a gateway credential leaked"


async def list_operations(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, state: str
) -> Result:
    """`payops ops list --state <state>` as an operator runs it, configured by the environment.

    The command runs its own event loop, so it runs in a worker thread of this test."""
    for name in [n for n in os.environ if n.startswith("PAYOPS_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "PAYOPS_DATABASE_URL": settings.effective_database_url,
        "PAYOPS_DATA_DIR": str(settings.data_dir),
        "PAYOPS_SECRET_KEY": settings.secret_key,
        "COLUMNS": "250",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        return await asyncio.to_thread(
            CliRunner().invoke, cli, ["ops", "list", "--state", state], catch_exceptions=False
        )
    finally:
        get_settings.cache_clear()


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("performed", [True, False], ids=["performed", "not-performed"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_answers_504_then_reconciles_to_the_gateway_truth(
    fault: str,
    performed: bool,
    gateway: FaultGateway,
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    auth = await seed.api_key()
    await seed_paid_at_faulty(ctx, gateway)
    gateway.operation_fault, gateway.perform = fault, performed

    response = await refund(client, auth)
    assert response.status_code == 504, response.text
    body = response.json()
    assert body == {
        "detail": UNCONFIRMED,
        "operation": "refund",
        "result": "pending",
        "reference_number": body["reference_number"],
    }
    reference = body["reference_number"]
    assert gateway.operation_calls == {reference: 1}
    assert (reference in gateway.performed) is performed
    # Open: still processing, the amount reserved, totals untouched, the key busy.
    assert await state_of(ctx) == ([(reference, "processing")], 0, 10_000)
    over = await refund(client, auth, "95.000", tracking_key=None)
    assert over.status_code == 400, over.text
    assert over.json()["detail"] == "Amount exceeds the refundable amount (90.000 KWD)"
    busy = await refund(client, auth)
    assert busy.status_code == 409, busy.text
    assert busy.json()["operation"] == "operation_tracking"

    # The reconciler asks the gateway, which now answers, and settles to what it recorded.
    gateway.operation_fault = "none"
    summary = await reconcile_once(ctx)
    final = "succeeded" if performed else "failed"
    assert dict(summary.outcomes) == {final: 1}
    if performed:
        assert await state_of(ctx) == ([(reference, "succeeded")], 10_000, 0)
    else:
        assert await state_of(ctx) == ([(reference, "failed")], 0, 0)
    assert (await reconcile_once(ctx)).examined == 0
    assert (await state_of(ctx))[1] == (10_000 if performed else 0), "totals move at most once"
    assert gateway.operation_calls[reference] == 1, "the gateway was called once per operation"
    assert gateway.inquiry_calls[reference] == 1

    # The Tracking-Key: the stored success, or (after a failure) free for a new operation.
    retry = await refund(client, auth)
    assert retry.status_code == 200, retry.text
    assert retry.json()["result"] == "success"
    if performed:
        assert retry.json()["reference_number"] == reference
        assert gateway.operation_calls == {reference: 1}
    else:
        assert retry.json()["reference_number"] != reference
        assert sum(gateway.operation_calls.values()) == 2
    assert (await state_of(ctx))[1:] == (10_000, 0)
    assert gateway.unauthorized == 0

    async with ctx.db.read() as session:
        stored = [
            json.dumps([o.pg_response, o.pg_params, o.message])
            for o in await session.scalars(select(Operation))
        ]
    captured = capsys.readouterr()
    assert_no_secret(
        gateway, logs.text, captured.err, captured.out, response.text, retry.text, *stored
    )


async def test_plain_success_and_decline_through_the_faulty_connector(
    gateway: FaultGateway,
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    logs: pytest.LogCaptureFixture,
) -> None:
    """The control case: with no fault the documented replies map to 200 and 400."""
    auth = await seed.api_key()
    await seed_paid_at_faulty(ctx, gateway)
    ok = await refund(client, auth, "10.000", tracking_key="a")
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"] == "success" and ok.json()["txn"]["state"] == "refunded"
    gateway.decline = True
    declined = await refund(client, auth, "5.000", tracking_key="b")
    assert declined.status_code == 400, declined.text
    assert declined.json()["detail"] == "Insufficient funds"
    assert declined.json()["result"] == "failed"
    states, refunded, reserved = await state_of(ctx)
    assert [s for _, s in states] == ["succeeded", "failed"]
    assert (refunded, reserved) == (10_000, 0)
    assert_no_secret(gateway, logs.text, ok.text, declined.text)


@pytest.mark.parametrize("inquiry_fault", FAULTS)
async def test_unanswerable_inquiry_ends_in_needs_review(
    inquiry_fault: str,
    gateway: FaultGateway,
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.reconcile_max_attempts == 2
    auth = await seed.api_key()
    await seed_paid_at_faulty(ctx, gateway)
    gateway.operation_fault, gateway.perform = "timeout", True
    gateway.inquiry_fault = inquiry_fault
    response = await refund(client, auth)
    assert response.status_code == 504, response.text
    reference = response.json()["reference_number"]

    first = await reconcile_once(ctx)
    assert dict(first.outcomes) == {"still_open": 1}
    assert await state_of(ctx) == ([(reference, "processing")], 0, 10_000)
    second = await reconcile_once(ctx)
    assert dict(second.outcomes) == {"needs_review": 1}
    assert await state_of(ctx) == ([(reference, "needs_review")], 0, 10_000)
    assert gateway.inquiry_calls[reference] == 2
    # Never retried blindly afterwards, and the gateway is never asked to perform it again.
    assert (await reconcile_once(ctx)).examined == 0
    assert gateway.inquiry_calls[reference] == 2
    assert gateway.operation_calls == {reference: 1}
    busy = await refund(client, auth)
    assert busy.status_code == 409, busy.text

    listing = await list_operations(settings, monkeypatch, "needs_review")
    assert listing.exit_code == 0, listing.output
    assert reference in listing.stdout
    assert ORDER in listing.stdout and "needs_review" in listing.stdout
    assert "1 operation(s)" in listing.stdout
    captured = capsys.readouterr()
    assert_no_secret(gateway, logs.text, captured.err, captured.out, listing.output, response.text)


async def test_reconciler_leaves_an_operation_whose_gateway_call_is_in_flight_alone(
    gateway: FaultGateway,
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    """`payops reconcile --older-than 0` is documented as safe beside a running server. While the
    server's own call to the gateway is still within its deadline, nobody knows the outcome yet:
    a reconciler that asks now hears "not found" and must not conclude "failed" — the gateway may
    still perform the operation a moment later (decisions §5: refunds never exceed refundable)."""
    assert settings.reconcile_after_seconds == 0  # what --older-than 0 asks for
    auth = await seed.api_key()
    # A gateway configured with a generous timeout, as real ones are (30 s by default).
    await seed_paid_at_faulty(ctx, gateway, timeout_seconds=20, read_timeout=20)
    gateway.operation_fault = "hold"
    call = asyncio.create_task(refund(client, auth))
    try:
        for _ in range(200):  # until the gateway has the request in hand
            if gateway.operation_calls:
                break
            await asyncio.sleep(0.05)
        [reference] = gateway.operation_calls
        assert await state_of(ctx) == ([(reference, "processing")], 0, 10_000)

        summary = await reconcile_once(ctx)
        after_pass = await state_of(ctx)
    finally:
        gateway.release.set()  # the gateway now performs the refund and answers "done"
        response = await asyncio.wait_for(call, timeout=30)

    # The in-flight operation was not the reconciler's to settle ...
    assert (summary.examined, after_pass) == (0, ([(reference, "processing")], 0, 10_000)), (
        f"the reconciler settled an operation whose gateway call was in flight: "
        f"{dict(summary.outcomes)}; the gateway then performed it and the client got "
        f"{response.status_code} {response.text}"
    )
    # ... and the client hears the truth: the gateway did refund, once.
    assert reference in gateway.performed
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "success"
    assert await state_of(ctx) == ([(reference, "succeeded")], 10_000, 0)
