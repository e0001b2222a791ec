"""QPay: SecureHash against the guide's worked examples, then the connector against the fake."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from payops.connectors.base import ConnectorConfig, OperationRequest, Outcome, PaymentRef
from payops.connectors.qpay import transformers as t
from payops.connectors.qpay.connector import QpayConnector
from payops.connectors.registry import connector_class
from tests.connectors.qpay import fake_server
from tests.connectors.qpay.fake_server import BANK_ID, MERCHANT_ID, SECRET, FakeQpay
from tests.helpers import operation_request

fake_qpay = fake_server.fake_qpay

GUIDE_SECRET = "3aJYQWELpNywSw3O"

# -- the guide's worked examples (Appendix D, as given in the protocol documents) ---------------

PAY_REQUEST = {
    "Action": "0",
    "Amount": "20000",
    "BankID": "QIB",
    "CurrencyCode": "634",
    "ExtraFields_f14": "https://merchantUrl.com/response",
    "Lang": "en",
    "MerchantID": "simulator123",
    "MerchantModuleSessionID": "f859a6e54bd54de4ad3d",
    "NationalID": "2215275104",
    "PUN": "f859a6e54bd54de4ad3d",
    "PaymentDescription": "SamplePayment",
    "Quantity": "1",
    "TransactionRequestDate": "06082023161317",
}
PAY_RESPONSE = (
    "Response.AcquirerID=030003&Response.Amount=20000&Response.BankID=QIB&"
    "Response.CardExpiryDate=3006&Response.CardHolderName=NOT_CAPTURED&"
    "Response.CardNumber=421537******3243&Response.ConfirmationID=202308060113174499433083352&"
    "Response.CurrencyCode=634&Response.EZConnectResponseDate=06082023161626&Response.Lang=en&"
    "Response.MerchantID=simulator123&Response.MerchantModuleSessionID=f859a6e54bd54de4ad3d&"
    "Response.PUN=f859a6e54bd54de4ad3d&Response.Status=0000&"
    "Response.StatusMessage=Payment+Processed+Successfully"
)


def test_guide_payment_request_vector() -> None:
    assert t.secure_hash(GUIDE_SECRET, PAY_REQUEST) == (
        "2d4cd46694e97d22e3e86d6ec054afbda99e8c1f7ade8d99f4ae07544afa2ab8"
    )


def test_guide_inquiry_request_vector() -> None:
    fields = t.inquiry_fields(
        merchant_id="simulator123", bank_id="QIB", lang="en", original_pun="f859a6e54bd54de4ad3d"
    )
    assert t.secure_hash(GUIDE_SECRET, fields) == (
        "ca49b75c35d42f09fafda9f29d560039e4ae6074fcdcf4db854f39ef107afce1"
    )


def test_guide_refund_request_vector() -> None:
    # 06/08/2023 16:19:32 in Qatar is 13:19:32 UTC
    fields = t.refund_fields(
        merchant_id="simulator123",
        bank_id="QIB",
        lang="en",
        amount_minor=1000,
        currency_code="QAR",
        original_pun="f859a6e54bd54de4ad3d",
        refund_pun="62ab9838993a43a48909",
        moment=datetime(2023, 8, 6, 13, 19, 32, tzinfo=UTC),
    )
    assert fields["TransactionRequestDate"] == "06082023161932"
    assert fields["RequestDate"] == ""
    assert t.secure_hash(GUIDE_SECRET, fields) == (
        "99d5e09f096eeba95e893e7461554b49ba3d9c9c835a28dcc9db5b045cf38cae"
    )


def test_guide_payment_response_vector_with_the_status_message_quirk() -> None:
    good = "660432ad41745cd716f8b799196e18c2cf84736f80014cc9816e0d53fd718760"
    reply = t.parse_reply(f"{PAY_RESPONSE}&Response.SecureHash={good}")
    assert reply is not None and reply.verified(GUIDE_SECRET)
    assert reply.get("StatusMessage") == "Payment Processed Successfully"
    assert reply.get("Status") == "0000"
    # hashing the message decoded (spaces) does not match: the quirk is real
    decoded = dict(reply.fields)
    assert t.secure_hash(GUIDE_SECRET, decoded) != good
    # any change to a signed field, or another secret, fails
    assert not t.parse_reply(
        f"{PAY_RESPONSE.replace('20000', '20001')}&Response.SecureHash={good}"
    ).verified(GUIDE_SECRET)  # type: ignore[union-attr]
    assert not reply.verified("another-secret00")
    assert t.parse_reply(PAY_RESPONSE).verified(GUIDE_SECRET) is False  # type: ignore[union-attr]


def test_sort_is_by_byte_order() -> None:
    # "PUN" sorts before "PaymentDescription" ("U" < "a")
    assert t.secure_hash("s", {"PaymentDescription": "b", "PUN": "a"}) == t.secure_hash(
        "s", {"X": "ab"}
    )


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("5002", Outcome.PENDING),
        ("5003", Outcome.UNKNOWN),
        ("5004", Outcome.FAILED),
        ("5008", Outcome.FAILED),
        ("5015", Outcome.FAILED),
        ("8201", Outcome.FAILED),
        ("9001", Outcome.UNKNOWN),
        ("7777", Outcome.UNKNOWN),
    ],
)
def test_refund_status_map(code: str, outcome: Outcome) -> None:
    reply = t.parse_reply(f"Response.Status_1={code}")
    assert reply is not None and t.refund_outcome(reply)[0] == outcome


def test_inquiry_status_map() -> None:
    def outcome(body: str) -> Outcome:
        reply = t.parse_reply(body)
        assert reply is not None
        return t.inquiry_outcome(reply)

    assert outcome("Response.Status=0000&Response.OriginalStatus=0000") == Outcome.SUCCESS
    assert outcome("Response.Status=0000&Response.OriginalStatus=3000") == Outcome.FAILED
    assert outcome("Response.Status=0000&Response.OriginalStatus=4444") == Outcome.PENDING
    assert outcome("Response.Status=8106") == Outcome.PENDING
    assert outcome("Response.Status=1220") == Outcome.PENDING
    assert outcome("Response.EZConnectRequestStatus=EZConnect-0008") == Outcome.UNKNOWN


# -- connector against the fake ----------------------------------------------------------------


def connector(
    fake: FakeQpay, *, secret: str = SECRET, timeout: float = 5.0, **options: Any
) -> QpayConnector:
    return QpayConnector(
        ConnectorConfig(
            pg_code="qpay-qar",
            is_sandbox=True,
            timeout_seconds=timeout,
            credentials={"merchant_id": MERCHANT_ID, "bank_id": BANK_ID, "secret_key": secret},
            options={"base_url": fake.url, **options},
        )
    )


def payment(pun: str = "PUN0000000000000001", amount: int = 20_000) -> PaymentRef:
    return PaymentRef(pun, amount, "QAR", "purchase", {"pun": pun})


def refund(
    amount: int, pay: PaymentRef, reference: str = "REFUND00000000001", **refs: Any
) -> OperationRequest:
    return operation_request("refund", amount, pay, reference=reference, currency="QAR", **refs)


def test_registry_and_capabilities() -> None:
    cls = connector_class("qpay")
    assert cls is QpayConnector
    assert cls.capabilities == {"refund", "inquiry"}
    assert cls.required_credentials == ("merchant_id", "bank_id", "secret_key")
    assert cls.reports_refund_status({}) is False


async def test_full_refund_is_pending_with_the_exact_request(
    fake_qpay: FakeQpay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    gateway = connector(fake_qpay)
    try:
        result = await gateway.refund(refund(20_000, payment()))
    finally:
        await gateway.aclose()
    assert result.outcome == Outcome.PENDING, result.message
    assert result.message.startswith("QPay 5002")
    sent = fake_qpay.requests[-1]
    assert sent.path == "/qcb-pg/api/gateway/2.0"
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(sent.body.decode(), keep_blank_values=True))
    stamp = form.pop("TransactionRequestDate")
    digest = form.pop("SecureHash")
    assert form == {
        "Action": "6",
        "Amount_1": "20000",
        "BankID": BANK_ID,
        "CurrencyCode": "634",
        "Lang": "en",
        "MerchantID": MERCHANT_ID,
        "OriginalTransactionPaymentUniqueNumber_1": "PUN0000000000000001",
        "PUN_1": "REFUND00000000001",
        "RequestDate": "",
    }
    assert len(stamp) == 14 and stamp.isdigit()
    assert digest == t.secure_hash(SECRET, {**form, "TransactionRequestDate": stamp})
    assert result.gateway_refs["refund_status"] == "5002"
    assert fake_qpay.payments["PUN0000000000000001"].refunds == {"REFUND00000000001": 20_000}
    assert SECRET not in str(result) + caplog.text


async def test_partial_refunds_only_when_configured(fake_qpay: FakeQpay) -> None:
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    fake_qpay.partial_refunds = True
    strict = connector(fake_qpay)
    lenient = connector(fake_qpay, partial_refunds="true")
    try:
        refused = await strict.refund(refund(5_000, payment()))
        assert refused.outcome == Outcome.FAILED and "whole payment" in refused.message
        assert fake_qpay.requests == []
        partial = await lenient.refund(refund(5_000, payment()))
        over = await lenient.refund(refund(16_000, payment(), "REFUND00000000002"))
    finally:
        await strict.aclose()
        await lenient.aclose()
    assert partial.outcome == Outcome.PENDING
    assert over.outcome == Outcome.FAILED and over.message.startswith("QPay 5008")


async def test_signing_mistakes_are_detected_on_both_sides(fake_qpay: FakeQpay) -> None:
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    wrong = connector(fake_qpay, secret="wrong-secret-000")
    right = connector(fake_qpay)
    try:
        # our hash is wrong: QPay refuses, and its reply does not verify with our secret either
        ours = await wrong.refund(refund(20_000, payment()))
        fake_qpay.fail_next("bad_signature")
        theirs = await right.refund(refund(20_000, payment()))
        fake_qpay.fail_next("bad_signature")
        inquiry = await right.inquire_payment(payment())
    finally:
        await wrong.aclose()
        await right.aclose()
    assert ours.outcome == Outcome.UNKNOWN and "SecureHash" in ours.message
    assert theirs.outcome == Outcome.UNKNOWN and "SecureHash" in theirs.message
    assert inquiry.outcome == Outcome.UNKNOWN
    assert fake_qpay.payments["PUN0000000000000001"].refunds == {"REFUND00000000001": 20_000}


@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "malformed"])
async def test_faults_leave_the_refund_open(fake_qpay: FakeQpay, fault: str) -> None:
    fake_qpay.hang_seconds = 2.0
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    fake_qpay.fail_next(fault, apply=True)
    gateway = connector(fake_qpay, timeout=0.5)
    try:
        lost = await gateway.refund(refund(20_000, payment()))
        asked = await gateway.inquire_operation(refund(20_000, payment()))
    finally:
        await gateway.aclose()
    assert lost.outcome == Outcome.UNKNOWN
    # Action 14 on the paid original cannot tell: still unknown, never resent
    assert asked.outcome == Outcome.UNKNOWN and "portal" in asked.message
    assert [dict(parse_qsl(r.body.decode()))["Action"] for r in fake_qpay.requests] == ["6", "14"]


async def test_refusals(fake_qpay: FakeQpay) -> None:
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    gateway = connector(fake_qpay)
    try:
        missing = await gateway.refund(refund(20_000, payment("PUN0000000000000009")))
        fake_qpay.fail_next("blocked_ip")
        blocked = await gateway.refund(refund(20_000, payment()))
        fake_qpay.fail_next("decline", message="5011")
        chargeback = await gateway.refund(refund(20_000, payment()))
        foreign = await gateway.refund(
            OperationRequest(
                "refund", "R", 20_000, "USD", PaymentRef("P", 20_000, "USD", "purchase")
            )
        )
    finally:
        await gateway.aclose()
    assert missing.outcome == Outcome.FAILED and "5004" in missing.message
    assert blocked.outcome == Outcome.FAILED and "EZConnect-0008" in blocked.message
    assert chargeback.outcome == Outcome.FAILED and "5011" in chargeback.message
    assert foreign.outcome == Outcome.FAILED
    assert fake_qpay.payments["PUN0000000000000001"].refunds == {}


async def test_inquiry(fake_qpay: FakeQpay) -> None:
    fake_qpay.add_payment("PUN0000000000000001", 20_000)
    fake_qpay.add_payment("PUN0000000000000002", 5_000, status="3000")
    gateway = connector(fake_qpay)
    try:
        paid = await gateway.inquire_payment(payment())
        failed = await gateway.inquire_payment(payment("PUN0000000000000002", 5_000))
        absent = await gateway.inquire_payment(payment("PUN0000000000000003"))
        queued = await gateway.inquire_operation(refund(20_000, payment(), refund_status="5002"))
        nothing = await gateway.inquire_operation(
            refund(5_000, payment("PUN0000000000000002", 5_000))
        )
    finally:
        await gateway.aclose()
    assert paid.outcome == Outcome.SUCCESS and paid.amount == 20_000
    assert paid.raw["CardNumber"] == "421537******3243"  # already masked by QPay
    sent = fake_qpay.sent(0)
    assert set(sent) == {"Action", "BankID", "Lang", "MerchantID", "OriginalPUN", "SecureHash"}
    assert failed.outcome == Outcome.FAILED
    assert absent.outcome == Outcome.PENDING
    assert queued.outcome == Outcome.PENDING
    assert nothing.outcome == Outcome.FAILED
