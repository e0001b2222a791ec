"""The connector kit against a real loopback HTTP server: transport faults, body codecs,
redaction, result builders and the recorded-amount check."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from payops.connectors import kit
from payops.connectors.base import (
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)


async def _serve(answer: bytes | None, *, delay: float = 0.0):
    """A one-route raw HTTP server: ``answer`` is the whole HTTP response, None resets."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length) if length else b""
        seen.append(head + body)
        if delay:
            await asyncio.sleep(delay)
        if answer is None:
            writer.transport.abort()
            return
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def _http(status: int, body: bytes, media: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {media}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def test_json_reply_decimal_and_exact_encoding() -> None:
    server, url, seen = await _serve(_http(200, b'{"amount": 25.500, "ok": true}'))
    client = kit.GatewayClient("test", base_url=url, timeout=5)
    try:
        reply = await client.request("POST", "/pay", json={"Amount": Decimal("25.500")})
    finally:
        await client.aclose()
        server.close()
    assert reply.ok and reply.decoded and not reply.outcome_unknown
    assert reply.body["amount"] == Decimal("25.500")
    assert reply.raw() == {"amount": "25.500", "ok": True}
    assert seen[0].endswith(b'{"Amount":25.500}')
    with pytest.raises(TypeError):
        kit.encode_json({"Amount": 1.5})


async def test_form_and_xml_bodies() -> None:
    server, url, seen = await _serve(
        _http(200, b"<result>CAPTURED</result><auth>123456</auth>", "text/xml")
    )
    client = kit.GatewayClient("test", base_url=url, timeout=5)
    try:
        reply = await client.request("POST", "/x", form={"a": "1 2", "b": None}, decode="xml")
    finally:
        await client.aclose()
        server.close()
    assert b"application/x-www-form-urlencoded" in seen[0]
    assert seen[0].endswith(b"a=1+2&b=")
    assert reply.body == {"result": "CAPTURED", "auth": "123456"}
    assert kit.decode_form("a=1&b=x+y") == {"a": "1", "b": "x y"}
    with pytest.raises(ValueError):
        kit.decode_xml('<!DOCTYPE x [<!ENTITY e "boom">]><a>&e;</a>')


@pytest.mark.parametrize(
    ("answer", "status", "unknown"),
    [
        (_http(500, b"oops", "text/plain"), 500, True),
        (_http(200, b"<html>not json", "text/html"), 200, True),
        (_http(402, b'{"error": "declined"}'), 402, False),
    ],
)
async def test_reply_judgement(answer: bytes, status: int, unknown: bool) -> None:
    server, url, _ = await _serve(answer)
    client = kit.GatewayClient("test", base_url=url, timeout=5)
    try:
        reply = await client.request("GET", "/x")
    finally:
        await client.aclose()
        server.close()
    assert reply.status == status
    assert reply.outcome_unknown is unknown


async def test_faults() -> None:
    server, url, _ = await _serve(None)
    client = kit.GatewayClient("test", base_url=url, timeout=5)
    try:
        reset = await client.request("GET", "/x")
    finally:
        await client.aclose()
        server.close()
    assert reset.fault is kit.Fault.RESET and reset.outcome_unknown
    assert reset.raw() == {"error": "connection_error"}

    server, url, _ = await _serve(_http(200, b"{}"), delay=2)
    client = kit.GatewayClient("test", base_url=url, timeout=0.2)
    try:
        slow = await client.request("GET", "/x")
    finally:
        await client.aclose()
        server.close()
    assert slow.fault is kit.Fault.TIMEOUT and slow.outcome_unknown

    await server.wait_closed()
    client = kit.GatewayClient("test", base_url=url, timeout=2)
    try:
        refused = await client.request("GET", "/x")  # the port is closed now
    finally:
        await client.aclose()
    assert refused.fault is kit.Fault.NOT_SENT and not refused.outcome_unknown


def test_redaction() -> None:
    policy = kit.redaction(drop=("cvv",), card_keys=("cardNumber",), mask_pan_strings=True)
    clean = policy.scrub(
        {
            "cvv": "123",
            "cardNumber": "4111 1111 1111 1111",
            "nested": [{"pan": "4111111111111111", "rrn": "123456789012"}],
            "amount": Decimal("1.50"),
        }
    )
    assert clean == {
        "cardNumber": "411111xxxxxx1111",
        "nested": [{"pan": "411111xxxxxx1111", "rrn": "123456789012"}],
        "amount": "1.50",
    }
    last4 = kit.redaction(card_keys=("pan",), mask=kit.mask_last4)
    assert last4.scrub({"pan": "4111111111111111"}) == {"pan": "************1111"}
    fields = kit.field_set(("shipping_address",))
    assert kit.redact({"shippingAddress": {"x": 1}}, fields) == {"shippingAddress": kit.REDACTED}


def test_results_and_recorded_amount() -> None:
    payment = PaymentRef("REF", 25500, "KWD", "authorize")
    request = OperationRequest("capture", "OP1", 25500, "KWD", payment)
    ok = kit.result(
        Outcome.SUCCESS,
        {},
        {},
        "Captured",
        {"id": "1", "empty": ""},
        amount=25500,
        currency_code="KWD",
    )
    assert ok.gateway_refs == {"id": "1"}
    assert kit.check_recorded(ok, request) is ok
    other = kit.result(Outcome.SUCCESS, amount=25000, currency_code="KWD")
    judged = kit.check_recorded(other, request, gateway="Acme")
    assert judged.outcome == Outcome.UNKNOWN
    assert judged.message == "Acme recorded a different amount (25.000) for this capture"
    currency = kit.check_recorded(kit.result(Outcome.SUCCESS, currency_code="USD"), request)
    assert currency.outcome == Outcome.UNKNOWN
    assert kit.not_sent("no key").outcome == Outcome.FAILED
    assert kit.unknown("?").outcome == Outcome.UNKNOWN
    assert isinstance(kit.refused("no"), GatewayResult)


def test_options() -> None:
    config = ConnectorConfig(
        "pg", True, {"api_key": " k "}, options={"base_url": "http://h/", "flag": "yes", "n": "x"}
    )
    assert kit.base_url(config, "https://live") == "http://h"
    assert kit.flag_option(config, "flag") is True
    assert kit.float_option(config, "n", 3.0) == 3.0
    assert kit.credential(config, "api_key", strip=True) == "k"
    assert kit.ref({"a": " 1 ", "b": True}, "a") == "1" and kit.ref({"b": True}, "b") is None
