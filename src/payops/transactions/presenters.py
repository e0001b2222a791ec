"""Wire shapes built from stored rows: the payment body (inquiry / payment webhook, spec §4.4),
the ExternalOperation body (spec §4.3) and child transactions. Amounts leave as strings with the
currency's exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payops.db.models import GatewayConfig, Operation, PaymentAttempt, PaymentTransaction
from payops.domain.states import ACCEPTED, SETTLED
from payops.money import format_minor
from payops.webhooks.signing import sign

CUSTOMER_FIELDS = (
    "customer_id",
    "customer_email",
    "customer_first_name",
    "customer_last_name",
    "customer_phone",
    "customer_birthdate",
    "customer_address_line1",
    "customer_address_line2",
    "customer_address_city",
    "customer_address_state",
    "customer_address_country",
    "customer_address_postal_code",
)
PG_PARAM_KEYS = (
    "auth_code",
    "card_type",
    "card_holder",
    "cardholder_email",
    "card_expiry_month",
    "card_expiry_year",
    "full_card_expiry",
    "card_number",
    "card_issuer",
    "ref",
    "result",
    "track_id",
    "post_date",
    "transaction_id",
    "payment_id",
    "pg_message",
    "receipt_no",
    "transaction_no",
    "decision",
    "card_expiry",
    "card_details",
    "dcc_payer_amount",
    "dcc_payer_currency",
    "dcc_payer_exchange_rate",
    "rrn",
)
PARENT_RESULT = {
    "paid": "success",
    "authorized": "success",
    "cod": "cod",
    "created": "pending",
    "pending": "pending",
    "attempted": "failed",
    "failed": "failed",
    "expired": "failed",
    "invalided": "failed",
    "canceled": "canceled",
}
CHILD_STATE = {
    ("capture", "succeeded"): "paid",
    ("refund", "succeeded"): "refunded",
    ("refund", "queued"): "refund_queued",
    ("refund", "rejected"): "refund_rejected",
    ("void", "succeeded"): "voided",
}
OPERATION_RESULT = {"succeeded": "success", "queued": "queued", "rejected": "rejected"}


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def normalised_pg_params(params: dict[str, Any]) -> dict[str, Any]:
    return {
        key: params[key]
        for key in PG_PARAM_KEYS
        if key in params and params[key] is not None and params[key] != ""
    }


def child_state(operation: Operation) -> str | None:
    if operation.state == "needs_review" and operation.queued_at is not None:
        return "refund_queued"  # a queued refund waiting for an operator is still queued
    return CHILD_STATE.get((operation.operation, operation.state))


def child_transaction(operation: Operation, parent: PaymentTransaction) -> dict[str, Any]:
    return {
        "amount": format_minor(operation.amount, operation.currency_code),
        "currency_code": operation.currency_code,
        "order_no": parent.order_no or "",
        "session_id": operation.child_session_id,
        "state": child_state(operation),
        "operation": operation.operation,
        "reference_number": operation.reference_number,
        "created": timestamp(operation.created_at),
    }


def operation_txn(operation: Operation, parent: PaymentTransaction) -> dict[str, Any]:
    """The child transaction inside an ExternalOperation body: exactly Ottu's five keys."""
    return {
        "amount": format_minor(operation.amount, operation.currency_code),
        "currency_code": operation.currency_code,
        "order_no": parent.order_no or "",
        "session_id": operation.child_session_id,
        "state": child_state(operation),
    }


def operation_body(
    operation: Operation,
    parent: PaymentTransaction,
    hmac_key: str,
    gateway: GatewayConfig | None = None,
) -> dict[str, Any]:
    """ExternalOperation (spec §4.3, decisions §13) for a settled (succeeded / queued / rejected)
    operation: exactly Ottu's fields. The operation's state lives only in ``txn``: payment and
    operation webhooks reach the same URL, and a receiver reading a top-level ``state`` must
    only ever see the payment's. The signature covers the signed fields present here:
    amount, order_no, reference_number, result."""
    gateway = gateway or operation.gateway_config  # the operation path's cached configuration
    currency = parent.currency_code
    body: dict[str, Any] = {
        "amount": format_minor(operation.amount, currency),
        "session_id": parent.session_id,
        "order_no": parent.order_no or "",
        "initiator": operation.initiator or {},
        "is_sandbox": gateway.is_sandbox,
        "operation": operation.operation,
        "pg_code": gateway.pg_code,
        "pg_response": operation.pg_response or {},
        "pg_params": normalised_pg_params(operation.pg_params or {}),
        "reference_number": operation.reference_number,
        "source": operation.source,
        "success": operation.state in ACCEPTED,
        "result": OPERATION_RESULT.get(operation.state, "failed"),
        "timestamp_utc": timestamp(operation.settled_at),
        "txn": operation_txn(operation, parent),
        "extra": parent.extra or {},
    }
    body["signature"] = sign(body, hmac_key)
    return body


def payment_body(
    parent: PaymentTransaction,
    attempts: list[PaymentAttempt],
    operations: list[Operation],
    hmac_key: str,
) -> dict[str, Any]:
    """The inquiry response, which is also the payment webhook body (spec §4.4)."""
    currency = parent.currency_code
    latest = attempts[0] if attempts else None
    gateway = parent.gateway_config or (latest.gateway_config if latest else None)
    settled = parent.amount if parent.state in SETTLED else 0
    paid_amount = (
        (parent.paid_total if parent.state == "paid" else parent.captured)
        if parent.state in SETTLED
        else 0
    )
    customer = parent.customer or {}
    body: dict[str, Any] = {
        "agreement": {},
        "amount": format_minor(parent.amount, currency),
        "amount_details": {
            "currency_code": currency,
            "amount": format_minor(parent.amount, currency),
            "total": format_minor(parent.amount + parent.fee, currency),
            "fee": format_minor(parent.fee, currency),
        },
        "card_acceptance_criteria": {},
        "currency_code": currency,
        **{name: customer.get(name, "") for name in CUSTOMER_FIELDS},
        "extra": parent.extra or {},
        "fee": f"{format_minor(parent.fee, currency)} {currency}",
        "gateway_account": gateway.pg_code if gateway else "",
        "gateway_name": gateway.connector if gateway else "",
        "gateway_response": (latest.pg_response if latest else {}) or {},
        "initiator": {},
        "is_sandbox": gateway.is_sandbox if gateway else True,
        "message": (latest.message if latest else parent.message) or "",
        "order_no": parent.order_no,
        "paid_amount": format_minor(paid_amount, currency),
        "payment_type": parent.payment_type,
        "pg_params": normalised_pg_params((latest.pg_params if latest else {}) or {}),
        "reference_number": latest.reference_number if latest else "",
        "captured_amount": format_minor(parent.captured, currency),
        "refunded_amount": format_minor(parent.refunded, currency),
        "voided_amount": format_minor(parent.voided, currency),
        "remaining_amount": format_minor(parent.amount - settled, currency),
        "settled_amount": format_minor(settled, currency),
        "result": PARENT_RESULT.get(parent.state, "pending"),
        "session_id": parent.session_id,
        "state": parent.state,
        "timestamp_utc": timestamp(),
        "transactions": [
            child_transaction(op, parent) for op in operations if child_state(op) is not None
        ],
        "total_authorized_amount": format_minor(parent.authorized_total, currency),
        "total_paid_amount": format_minor(parent.paid_total, currency),
        "total_captured_amount": format_minor(parent.captured, currency),
        "total_refunded_amount": format_minor(parent.refunded, currency),
        "total_voided_amount": format_minor(parent.voided, currency),
    }
    body["signature"] = sign(body, hmac_key)
    return body
