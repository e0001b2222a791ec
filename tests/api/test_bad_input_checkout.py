"""Hostile and careless input on the Checkout API and the server itself (decisions §13).

`extra` keeps any JSON number exactly or is refused with a field error; absurd durations are
field errors; oversized headers are refused before the app runs; data stored before these rules
still reads; and any 5xx left is counted, logged once and carries its request id.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text, update

from payops import exact_json
from payops import logging as payops_logging
from payops.api.app import create_app
from payops.api.server import MAX_HEADER_BYTES, server_config
from payops.checkout import service as checkout_service
from payops.checkout.schemas import BAD_NUMBER, TOO_LONG
from payops.config import Settings
from payops.db.models import PaymentTransaction
from payops.domain import messages
from tests.helpers import Seed
from tests.live import free_port

URL = "/b/checkout/v1/pymt-txn/"
VALID = {
    "type": "e_commerce",
    "amount": "25.000",
    "currency_code": "KWD",
    "pg_codes": ["sandbox-kwd"],
}
JSON_CT = {"Content-Type": "application/json"}
TOO_DEEP = [messages.EXTRA_TOO_DEEP.format(n=32)]
TOO_LARGE = [messages.EXTRA_TOO_LARGE.format(n=65536)]


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    return await seed.api_key()


def body_with_extra(extra_json: str, **fields: Any) -> bytes:
    """A create body with ``extra`` spliced in as raw JSON text (so numbers stay as written)."""
    base = json.dumps({**VALID, **fields})
    return (base[:-1] + f', "extra": {extra_json}}}').encode()


def nested(levels: int, kind: str = "object") -> str:
    opening, closing = ('{"a":', "}") if kind == "object" else ("[", "]")
    return opening * (levels - 1) + ("{}" if kind == "object" else "[]") + closing * (levels - 1)


def exact(response: httpx.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


EXTRA_NUMBERS = (
    '{"int": 12345678901234567890123456789012345678901234567890, "neg": -7, '
    '"half": 1.5, "written": 1.50, "pi": 3.14159265358979323846264338327950288, '
    '"big": 1E+308, "tiny": 1e-300, "zero": 0.0, "list": [0.1, 2, {"x": 0.25}], '
    '"flag": true, "none": null, "text": "1.5"}'
)


async def test_extra_numbers_are_kept_exactly(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    created = await client.post(
        URL, content=body_with_extra(EXTRA_NUMBERS, order_no="X-1"), headers={**auth, **JSON_CT}
    )
    assert created.status_code == 201, created.text
    sent = json.loads(EXTRA_NUMBERS, parse_float=Decimal)
    assert exact(created)["extra"] == sent
    for literal in (
        '"half":1.5',
        '"written":1.50',
        '"pi":3.14159265358979323846264338327950288',
        '"int":12345678901234567890123456789012345678901234567890',
        '"zero":0.0',
    ):
        assert literal in created.text, literal

    sid = created.json()["session_id"]
    retrieved = await client.get(f"{URL}{sid}", headers=auth)
    assert retrieved.status_code == 200 and exact(retrieved)["extra"] == sent
    assert '"written":1.50' in retrieved.text
    inquiry = await client.post("/b/pbl/v2/inquiry/", json={"session_id": sid}, headers=auth)
    assert inquiry.status_code == 400  # never attempted; the answer is a refusal, not a 500
    patched = await client.patch(
        f"{URL}{sid}",
        headers={**auth, **JSON_CT},
        content=b'{"extra": {"rate": 0.1000000000000000000001}}',
    )
    assert patched.status_code == 200 and '"rate":0.1000000000000000000001' in patched.text

    # A paid session: inquiry, operations and the payment webhook echo the same numbers.
    paid = await seed.transaction("10.000", order_no="X-2", gateway_code="sandbox-kwd")
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.id == paid.id)
            .values(extra=exact_json.loads(EXTRA_NUMBERS))
        )
    stored = await client.get(f"{URL}{paid.session_id}", headers=auth)
    assert stored.status_code == 200
    refund = await client.post(
        "/b/pbl/v1/operation/X-2", json={"operation": "refund", "amount": "1.000"}, headers=auth
    )
    assert refund.status_code == 200, refund.text
    assert exact(refund)["extra"]["pi"] == Decimal("3.14159265358979323846264338327950288")
    inquired = await client.post("/b/pbl/v1/inquiry/X-2", headers=auth)
    assert inquired.status_code == 200
    assert exact(inquired)["extra"]["int"] == 12345678901234567890123456789012345678901234567890


@pytest.mark.parametrize(
    ("extra_json", "errors"),
    [
        ('{"n": 1e309}', [BAD_NUMBER]),
        ('{"n": -1E+400}', [BAD_NUMBER]),
        ('{"n": 1e-309}', [BAD_NUMBER]),
        ('{"n": 9.9e308}', [BAD_NUMBER]),  # within the exponent, beyond what a double holds
        ('{"n": 1' + "0" * 100 + "}", [BAD_NUMBER]),  # 101 digits
        ('{"n": [0.' + "1" * 101 + "]}", [BAD_NUMBER]),
        ('{"n": 1' + "0" * 4000 + "}", [BAD_NUMBER]),
        (nested(33), TOO_DEEP),
        (nested(300), TOO_DEEP),
        ('{"l": ' + nested(32, "list") + "}", TOO_DEEP),
        ('{"s": "' + "x" * 70_000 + '"}', TOO_LARGE),
        ('{"l": [' + ",".join(["1.5"] * 20_000) + "]}", TOO_LARGE),
    ],
)
async def test_extra_out_of_bounds_is_a_field_error(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed, extra_json: str, errors: list[str]
) -> None:
    response = await client.post(
        URL, content=body_with_extra(extra_json), headers={**auth, **JSON_CT}
    )
    assert (response.status_code, response.json()) == (400, {"extra": errors})
    assert (await seed.snapshot())["transactions"] == []


async def test_extra_at_the_limits_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for extra_json in (
        nested(32),
        '{"s": "' + "x" * 60_000 + '"}',
        '{"n": 1' + "0" * 99 + "}",
        '{"n": 1e308, "m": -1e-308}',
    ):
        response = await client.post(
            URL, content=body_with_extra(extra_json), headers={**auth, **JSON_CT}
        )
        assert response.status_code == 201, (extra_json[:40], response.text[:200])
        assert exact(response)["extra"] == json.loads(extra_json, parse_float=Decimal)


async def test_extra_refused_on_patch_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    sid = (await client.post(URL, json=VALID, headers=auth)).json()["session_id"]
    before = await seed.snapshot()
    response = await client.patch(
        f"{URL}{sid}", content=b'{"extra": {"n": 1e999}}', headers={**auth, **JSON_CT}
    )
    assert (response.status_code, response.json()) == (400, {"extra": [BAD_NUMBER]})
    assert await seed.snapshot() == before


async def test_numbers_beyond_decimal_range_and_lone_surrogates_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    """Valid JSON that once answered 500: an exponent beyond Decimal's range (InvalidOperation
    while parsing) and a lone UTF-16 surrogate echoed back in an error message."""
    huge = "1e99999999999999999999"
    response = await client.post(
        URL, content=body_with_extra('{"n": ' + huge + "}"), headers={**auth, **JSON_CT}
    )
    assert (response.status_code, response.json()) == (400, {"extra": [BAD_NUMBER]})
    form = {**VALID, "pg_codes": "sandbox-kwd", "extra": '{"n": -' + huge + "}"}
    response = await client.post(URL, data=form, headers=auth)
    assert (response.status_code, response.json()) == (400, {"extra": [BAD_NUMBER]})
    for field in ("type", "currency_code", "language", "order_no"):
        raw = json.dumps(VALID)[:-1] + f', "{field}": "x\\ud800"}}'
        response = await client.post(URL, content=raw.encode(), headers={**auth, **JSON_CT})
        assert response.status_code == 400, (field, response.text[:200])
    raw = json.dumps(VALID)[:-1] + ', "pg_codes": ["\\udfff"]}'
    response = await client.post(URL, content=raw.encode(), headers={**auth, **JSON_CT})
    assert response.status_code == 400, response.text[:200]
    assert (await seed.snapshot())["transactions"] == []

    sid = (await client.post(URL, json=VALID, headers=auth)).json()["session_id"]
    before = await seed.snapshot()
    for raw in ('{"extra": {"n": ' + huge + "}}", '{"language": "\\ud800"}'):
        response = await client.patch(
            f"{URL}{sid}", content=raw.encode(), headers={**auth, **JSON_CT}
        )
        assert response.status_code == 400, (raw, response.text[:200])
    assert await seed.snapshot() == before


@pytest.mark.parametrize(
    "value",
    [
        "9999999999 00:00:00",
        "9" * 5000 + " 00:00:00",
        "366 00:00:00",
        "1000000000 00:00:00",
    ],
)
async def test_absurd_expiration_time_is_a_field_error(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed, value: str
) -> None:
    response = await client.post(URL, json={**VALID, "expiration_time": value}, headers=auth)
    assert (response.status_code, response.json()) == (400, {"expiration_time": [TOO_LONG]})
    assert (await seed.snapshot())["transactions"] == []


async def test_expiration_time_as_huge_numbers(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    for raw in (b"9" * 5000, b"9" * 4000, b"1e999"):
        body = json.dumps(VALID)[:-1].encode() + b', "expiration_time": ' + raw + b"}"
        response = await client.post(URL, content=body, headers={**auth, **JSON_CT})
        assert response.status_code == 400, (raw[:10], response.text[:200])
    longest = await client.post(
        URL, json={**VALID, "expiration_time": "365 00:00:00"}, headers=auth
    )
    assert longest.status_code == 201 and longest.json()["expiration_time"] == "365 00:00:00"
    assert len((await seed.snapshot())["transactions"]) == 1


async def test_data_stored_before_the_limits_still_reads(
    client: httpx.AsyncClient, auth: dict[str, str], seed: Seed
) -> None:
    """An extra 300 levels deep (accepted before these rules) answers reads and operations."""
    paid = await seed.transaction("10.000", order_no="OLD-1", gateway_code="sandbox-kwd")
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.id == paid.id)
            .values(extra=json.loads(nested(300)) | {"n": 10**3000})
        )
    retrieved = await client.get(f"{URL}{paid.session_id}", headers=auth)
    assert retrieved.status_code == 200, retrieved.text[:200]
    assert retrieved.json()["extra"]["n"] == 10**3000
    inquiry = await client.post("/b/pbl/v1/inquiry/OLD-1", headers=auth)
    assert inquiry.status_code == 200 and inquiry.json()["state"] == "paid"
    refund = await client.post(
        "/b/pbl/v1/operation/OLD-1", headers=auth, json={"operation": "refund", "amount": "1.000"}
    )
    assert refund.status_code == 200 and refund.json()["result"] == "success"


class _Capture(logging.Handler):
    """Records each log line with the request id in force when it was written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(
            (record.getMessage(), payops_logging.request_id.get(), record.exc_info is not None)
        )


async def test_an_unexpected_error_is_counted_logged_once_and_carries_the_request_id(
    client: httpx.AsyncClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("customer 4111111111111111 broke it")

    monkeypatch.setattr(checkout_service, "retrieve", broken)
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        response = await client.get(f"{URL}{'a' * 40}", headers={**auth, "X-Request-ID": "probe42"})
    finally:
        root.removeHandler(capture)
    assert response.status_code == 500
    assert response.json() == {"detail": messages.SERVER_ERROR}
    assert response.headers["X-Request-ID"] == "probe42"
    assert "4111111111111111" not in response.text
    tracebacks = [line for line in capture.lines if line[2]]
    assert len(tracebacks) == 1 and tracebacks[0][1] == "probe42", capture.lines
    app.state.ctx.settings.metrics_token = "metrics-reader"  # /metrics needs it
    metrics = (
        await client.get("/metrics", headers={"Authorization": "Bearer metrics-reader"})
    ).text
    assert (
        'payops_http_server_errors_total{route="/b/checkout/v1/pymt-txn/{session_id}",'
        'status="500"} 1.0'
    ) in metrics
    assert (
        'payops_http_requests_total{method="GET",route="/b/checkout/v1/pymt-txn/{session_id}",'
        'status="500"} 1.0'
    ) in metrics


async def test_database_errors_never_show_statement_parameters(seed: Seed) -> None:
    card = "4111111111111111"
    for engine in {seed.ctx.db.write_engine, seed.ctx.db.read_engine}:
        with pytest.raises(Exception) as error:  # noqa: PT011 - any driver error will do
            async with engine.connect() as conn:
                await conn.execute(
                    text("SELECT * FROM no_such_table WHERE x = :card"), {"card": card}
                )
        assert card not in str(error.value) and "hidden" in str(error.value)


# -- request headers ------------------------------------------------------------------------------


@pytest.fixture
def served(settings: Settings) -> Iterator[int]:
    """A server started the way `payops serve` starts it."""
    port = free_port()
    server = uvicorn.Server(
        server_config(
            create_app(settings), host="127.0.0.1", port=port, log_level="critical", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def raw_request(port: int, head: bytes) -> bytes:
    """Send a request head in pieces, as a client streaming a huge header would; return what the
    server answered before closing (b"" if it closed without answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for start in range(0, len(head), 65_536):
                sock.sendall(head[start : start + 65_536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-way: the server closed the connection
        return read_until_closed(sock)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_oversized_request_headers_are_refused_before_any_work(served: int) -> None:
    small = raw_request(
        served,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: "
        + b"a" * 8000
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert small.startswith(b"HTTP/1.1 200"), small[:100]
    one_big = b"Authorization: Basic " + b"a" * (8 * 1024 * 1024)
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 500) for i in range(40))  # 20 KiB in all
    for header, streamed in (
        (one_big, True),
        (many, False),
        (b"X-Pad: " + b"c" * MAX_HEADER_BYTES, False),
    ):
        answer = raw_request(
            served,
            b"POST /b/pbl/v1/operation/ORD-1 HTTP/1.1\r\nHost: t\r\n"
            + header.rstrip(b"\r\n")
            + b"\r\n\r\n",
        )
        # A client still streaming its 8 MB header may see the connection reset before it
        # reads the answer; either way the app never ran (it would have answered 401).
        assert answer.startswith(b"HTTP/1.1 431") or (streamed and answer == b""), answer[:100]
    # The server still serves afterwards.
    assert httpx.get(f"http://127.0.0.1:{served}/healthz").status_code == 200


def open_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65_536):
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_head_trickling_past_the_limit_is_refused_before_it_ends(served: int) -> None:
    """A header sent 1 KiB at a time, never finished: the server answers 431 once the open head
    passes 16 KiB, without waiting for (or holding) the rest."""
    with open_connection(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: ")
        sent = 0
        try:
            while sent < 4 * MAX_HEADER_BYTES:
                sock.sendall(b"p" * 1024)
                sent += 1024
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after its answer
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert answer.endswith(b"Request header fields too large."), answer[-100:]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_body_that_arrives_with_its_head_is_not_counted_as_head(served: int) -> None:
    """A 4 KiB head and a 60 KiB body in one write: the limit is on the head only (the app
    then refuses the body as too large for an operation, or the credentials, never with 431)."""
    body = b'{"operation": "refund", "amount": "1.000", "pad": "' + b"x" * 60_000 + b'"}'
    head = (
        b"POST /b/pbl/v1/operation/ORD-1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"X-Pad: " + b"h" * 4000 + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    with open_connection(served) as sock:
        sock.sendall(head + body)
        answer = read_until_closed(sock)
    assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 413")), answer[:100]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_pipelined_head_over_the_limit_is_refused_after_the_first_answer(served: int) -> None:
    """Two requests in one write: the first (small) is answered; the second, whose 20 KiB head
    arrived with the end of the first and so was not counted as it came, is measured once parsed
    and refused with 431. A second request just under the limit is served."""
    first = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    over = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"o" * 20_000 + b"\r\n\r\n"
    under = (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: "
        + b"u" * (MAX_HEADER_BYTES - 200)
        + b"\r\nConnection: close\r\n\r\n"
    )
    with open_connection(served) as sock:
        sock.sendall(first + over)
        refused = read_until_closed(sock)
    assert refused.startswith(b"HTTP/1.1 200"), refused[:100]
    assert refused.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 431" in refused, refused[-300:]
    with open_connection(served) as sock:
        sock.sendall(first + under)
        served_both = read_until_closed(sock)
    assert served_both.count(b"HTTP/1.1 200") == 2, served_both[-300:]
