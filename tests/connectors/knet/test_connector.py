"""KNET: the pure protocol code, then the connector against the fake tranportal over loopback."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from payops.connectors.base import ConnectorConfig, OperationRequest, Outcome, PaymentRef
from payops.connectors.knet import transformers as t
from payops.connectors.knet.connector import KnetConnector
from payops.connectors.registry import connector_class
from tests.connectors.knet import fake_server
from tests.connectors.knet.fake_server import TRANPORTAL_ID, TRANPORTAL_PASSWORD, FakeKnet
from tests.helpers import operation_request

fake_knet = fake_server.fake_knet


# -- pure protocol -----------------------------------------------------------------------------


def test_amounts_are_kwd_with_three_decimals() -> None:
    assert t.knet_amount(15_750, "KWD") == "15.750"
    assert t.knet_amount(2_000, "KWD") == "2.000"
    assert t.knet_amount(5, "kwd") == "0.005"
    for minor, currency in ((1000, "USD"), (0, "KWD"), (-5, "KWD"), (99_999_999_999, "KWD")):
        with pytest.raises(t.KnetFormatError):
            t.knet_amount(minor, currency)


def test_track_ids_within_19_characters_else_payment_id() -> None:
    assert t.payment_target("ABC123", None) == t.Target("ABC123", "ABC123", "TrackID")
    assert t.payment_target("A" * 19, "1") == t.Target("A" * 19, "A" * 19, "TrackID")
    # 20 characters, or KNET's forbidden characters: addressed by payment id instead
    assert t.payment_target("A" * 20, "100200300") == t.Target("100200300", "A" * 20, "PaymentID")
    assert t.payment_target("TRK-1", "42").udf5 == "PaymentID"
    with pytest.raises(t.KnetFormatError):
        t.payment_target("A" * 20, None)
    with pytest.raises(t.KnetFormatError):
        t.payment_target(None, "not-digits")


def test_request_body_is_bare_escaped_elements() -> None:
    body = t.request_body(
        tranportal_id="990001",
        password="p<&>w",
        action="2",
        amount="2.000",
        target=t.Target("TRK1", "TRK1", "TrackID"),
    )
    assert body == (
        b"<id>990001</id><password>p&lt;&amp;&gt;w</password><action>2</action>"
        b"<amt>2.000</amt><transid>TRK1</transid><trackid>TRK1</trackid>"
        b"<udf5>TrackID</udf5>"
    )


def test_reply_without_root_is_parsed() -> None:
    reply = t.parse_reply(
        b"<result>SUCCESS</result><auth>887766</auth><tranid>3282</tranid>"
        b"<trackid>T1</trackid><payid>123</payid><amt>9.500</amt>"
    )
    assert reply is not None and reply.status == "SUCCESS" and reply.get("payid") == "123"
    assert t.inquiry_outcome(reply) == Outcome.SUCCESS
    assert str(reply.amount) == "9.500"
    wrapped = t.parse_reply(b"<response><Result>CAPTURED</Result></response>")
    assert wrapped is not None and t.refund_outcome(wrapped) == Outcome.SUCCESS
    for junk in (
        b"",
        b"CAPTURED",
        b"<result>CAPT",
        b"<auth>1</auth>",
        b'<!DOCTYPE x [<!ENTITY a "b">]><result>&a;</result>',
    ):
        assert t.parse_reply(junk) is None


@pytest.mark.parametrize(
    ("result", "refund", "inquiry"),
    [
        ("CAPTURED", Outcome.SUCCESS, Outcome.SUCCESS),
        ("SUCCESS", Outcome.UNKNOWN, Outcome.SUCCESS),  # a refund succeeds only on CAPTURED
        ("NOT CAPTURED", Outcome.FAILED, Outcome.FAILED),
        ("FAILURE(NOT CAPTURED)", Outcome.FAILED, Outcome.FAILED),
        ("CANCELED", Outcome.FAILED, Outcome.FAILED),
        ("SUSPECTED", Outcome.UNKNOWN, Outcome.UNKNOWN),
        ("HOST TIMEOUT", Outcome.UNKNOWN, Outcome.UNKNOWN),
        ("SOMETHING NEW", Outcome.UNKNOWN, Outcome.PENDING),  # never success
        ("!ERROR!-IPAY0100263-Transaction details not available", Outcome.FAILED, Outcome.PENDING),
        ("!ERROR!-IPAY0100137-Credit amount greater", Outcome.FAILED, Outcome.UNKNOWN),
        ("!ERROR!-IPAY0100199-Previous credit check failure", Outcome.FAILED, Outcome.UNKNOWN),
        ("!ERROR!-IPAY0100033-Terminal action not enabled", Outcome.FAILED, Outcome.UNKNOWN),
        ("!ERROR!-IPAY0100114-Duplicate Record", Outcome.UNKNOWN, Outcome.UNKNOWN),
        ("!ERROR!-IPAY0100158-Host timeout", Outcome.UNKNOWN, Outcome.UNKNOWN),
        ("!ERROR!-IPAY0999999-Never heard of it", Outcome.FAILED, Outcome.UNKNOWN),
    ],
)
def test_status_and_error_maps(result: str, refund: Outcome, inquiry: Outcome) -> None:
    reply = t.parse_reply(f"<result>{result}</result>".encode())
    assert reply is not None
    assert t.refund_outcome(reply) == refund
    assert t.inquiry_outcome(reply) == inquiry


def test_error_codes_are_named_in_the_message() -> None:
    reply = t.parse_reply(
        b"<result>!ERROR!-IPAY0100137-Credit amount greater than authorised"
        b"</result><error_code_tag>IPAY0100137</error_code_tag>"
    )
    assert reply is not None and reply.error_code == "IPAY0100137"
    assert t.reply_message(reply) == "KNET IPAY0100137: Credit amount greater than authorised"
    assert t.ipay_error("IPAY0100263").meaning == "not_found"
    assert t.ipay_error("IPAY0100114").meaning == "duplicate"
    assert t.ipay_error("IPAY0100033").meaning == "action_not_enabled"


# -- connector against the fake ----------------------------------------------------------------


def connector(
    fake: FakeKnet, *, password: str = TRANPORTAL_PASSWORD, timeout: float = 5.0
) -> KnetConnector:
    return KnetConnector(
        ConnectorConfig(
            pg_code="knet-kwd",
            is_sandbox=True,
            timeout_seconds=timeout,
            credentials={"tranportal_id": TRANPORTAL_ID, "tranportal_password": password},
            options={"base_url": fake.url},
        )
    )


def payment(track_id: str = "TRK0001", amount: int = 25_000, **refs: Any) -> PaymentRef:
    return PaymentRef(
        reference_number=track_id,
        amount=amount,
        currency_code="KWD",
        operation_mode="purchase",
        gateway_refs=refs,
    )


def refund(amount: int, pay: PaymentRef, reference: str = "REF0001") -> OperationRequest:
    return operation_request("refund", amount, pay, reference=reference, currency="KWD")


def test_registry_and_capabilities() -> None:
    cls = connector_class("knet")
    assert cls is KnetConnector
    assert cls.capabilities == {"refund", "inquiry"}
    assert cls.required_credentials == ("tranportal_id", "tranportal_password")
    assert cls.reports_refund_status({}) is False


async def test_refund_sends_the_exact_request(fake_knet: FakeKnet) -> None:
    fake_knet.add_payment("TRK0001", "25.000")
    gateway = connector(fake_knet)
    try:
        result = await gateway.refund(refund(10_500, payment()))
    finally:
        await gateway.aclose()
    assert result.outcome == Outcome.SUCCESS, result.message
    sent = fake_knet.requests[-1]
    assert sent.method == "POST" and sent.path == "/kpg/tranPipe.htm"
    assert sent.query == "param=tranInit"
    assert sent.header("Content-Type") == "application/xml"
    assert sent.body == (
        b"<id>990001</id><password>knet-pass-1234</password><action>2</action>"
        b"<amt>10.500</amt><transid>TRK0001</transid><trackid>TRK0001</trackid>"
        b"<udf5>TrackID</udf5>"
    )
    assert [str(a) for a in fake_knet.payments["TRK0001"].refunds] == ["10.500"]
    assert result.pg_params["result"] == "CAPTURED"
    assert result.gateway_refs["refund_payid"] and result.gateway_refs["track_id"] == "TRK0001"
    assert TRANPORTAL_PASSWORD not in str(result)


async def test_refund_refusals(fake_knet: FakeKnet) -> None:
    fake_knet.add_payment("TRK0002", "5.000")
    gateway = connector(fake_knet)
    try:
        over = await gateway.refund(refund(6_000, payment("TRK0002", 5_000)))
        assert over.outcome == Outcome.FAILED
        assert over.message.startswith("KNET IPAY0100137")
        missing = await gateway.refund(refund(1_000, payment("NOSUCH")))
        assert missing.outcome == Outcome.FAILED and "IPAY0100263" in missing.message
        fake_knet.refunds_enabled = False
        disabled = await gateway.refund(refund(1_000, payment("TRK0002", 5_000)))
        assert disabled.outcome == Outcome.FAILED and "IPAY0100033" in disabled.message
        fake_knet.refunds_enabled = True
        fake_knet.fail_next("decline")
        declined = await gateway.refund(refund(1_000, payment("TRK0002", 5_000)))
        assert declined.outcome == Outcome.FAILED
        fake_knet.fail_next("host_timeout")
        timed = await gateway.refund(refund(1_000, payment("TRK0002", 5_000)))
        assert timed.outcome == Outcome.UNKNOWN and "IPAY0100158" in timed.message
    finally:
        await gateway.aclose()
    wrong = connector(fake_knet, password="wrong")
    try:
        refused = await wrong.refund(refund(1_000, payment("TRK0002", 5_000)))
    finally:
        await wrong.aclose()
    assert refused.outcome == Outcome.FAILED and "IPAY0100015" in refused.message
    assert fake_knet.payments["TRK0002"].refunds == []


async def test_nothing_is_sent_for_what_knet_cannot_take(fake_knet: FakeKnet) -> None:
    gateway = connector(fake_knet)
    try:
        foreign = await gateway.refund(OperationRequest("refund", "R1", 1_000, "USD", payment()))
        no_address = await gateway.refund(refund(1_000, payment("X" * 25)))
        capture = await gateway.capture(OperationRequest("capture", "R2", 1, "KWD", payment()))
    finally:
        await gateway.aclose()
    assert [r.outcome for r in (foreign, no_address, capture)] == [Outcome.FAILED] * 3
    assert fake_knet.requests == []


@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "malformed"])
async def test_a_lost_refund_reply_is_unknown_with_what_an_operator_needs(
    fake_knet: FakeKnet,
    fault: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_knet.hang_seconds = 2.0
    fake_knet.add_payment("TRK0003", "25.000")
    fake_knet.fail_next(fault, apply=True)
    gateway = connector(fake_knet, timeout=0.5)
    try:
        result = await gateway.refund(refund(3_000, payment("TRK0003", payment_id="4455")))
        again = await gateway.inquire_operation(
            refund(3_000, payment("TRK0003", payment_id="4455"))
        )
    finally:
        await gateway.aclose()
    assert result.outcome == Outcome.UNKNOWN
    for text in ("TRK0003", "4455", "3.000 KWD", "REF0001", "merchant.htm", "never resends"):
        assert text in result.message
    # no refund-status inquiry at KNET: nothing more is sent
    assert again.outcome == Outcome.UNKNOWN and len(fake_knet.requests) == 1
    assert TRANPORTAL_PASSWORD not in caplog.text


async def test_inquiry_by_track_id_and_by_payment_id(fake_knet: FakeKnet) -> None:
    paid = fake_knet.add_payment("TRK0004", "12.250")
    long_track = "T" * 20
    fake_knet.add_payment(long_track, "1.000", result="NOT CAPTURED")
    long_id = fake_knet.payments[long_track].payment_id
    gateway = connector(fake_knet)
    try:
        ok = await gateway.inquire_payment(payment("TRK0004", 12_250))
        failed = await gateway.inquire_payment(payment(long_track, 1_000, payment_id=long_id))
        absent = await gateway.inquire_payment(payment("NEVERPAID", 1_000))
    finally:
        await gateway.aclose()
    assert ok.outcome == Outcome.SUCCESS and ok.amount == 12_250 and ok.currency_code == "KWD"
    assert ok.gateway_refs["payment_id"] == paid
    first = fake_knet.sent_fields(0)
    assert first == {
        "id": TRANPORTAL_ID,
        "password": TRANPORTAL_PASSWORD,
        "action": "8",
        "amt": "12.250",
        "transid": "TRK0004",
        "trackid": "TRK0004",
        "udf5": "TrackID",
    }
    assert failed.outcome == Outcome.FAILED
    assert fake_knet.sent_fields(1)["udf5"] == "PaymentID"
    assert fake_knet.sent_fields(1)["transid"] == long_id
    assert absent.outcome == Outcome.PENDING
