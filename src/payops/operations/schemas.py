"""Request parsing and documented response shapes for the operation endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from payops.domain import messages
from payops.errors import field_error
from payops.transactions.lookup import parse_lookup
from payops.web.requests import FormShape, choice, identifier

V1_OPERATIONS = ("capture", "refund", "void", "cancel")
V2_OPERATIONS = ("delete", "cancel", "expire", "refund", "capture", "void")
DESTINATIONS = ("pg", "wallet")
TRACKING_KEY_MAX = 255
# Form and multipart operation bodies: ``extra`` is a JSON field (JSON text or nested keys).
OPERATION_FORM = FormShape(json=frozenset({"extra"}))


class V1OperationRequest(BaseModel):
    operation: str = Field(description="capture, refund, void or cancel")
    amount: str | None = Field(
        default=None,
        description="Decimal string with at most the currency's decimals; omitted = all that remains",
    )


class ChildTransaction(BaseModel):
    amount: str
    currency_code: str
    order_no: str | None
    session_id: str
    state: str | None


class ExternalOperationResponse(BaseModel):
    amount: str
    session_id: str
    order_no: str
    initiator: dict[str, Any]
    is_sandbox: bool
    operation: str
    pg_code: str
    pg_response: dict[str, Any]
    pg_params: dict[str, Any]
    reference_number: str
    source: str
    success: bool
    result: str
    signature: str
    timestamp_utc: str
    txn: ChildTransaction
    extra: Any = None


class InternalOperationResponse(BaseModel):
    detail: str
    message: str
    operation: str
    result: str


class OperationFailure(BaseModel):
    detail: str
    operation: str
    result: str


class OperationPending(BaseModel):
    detail: str
    operation: str
    result: str
    reference_number: str


class V2OperationRequest(BaseModel):
    operation: str = Field(description="delete, cancel, expire, refund, capture or void")
    session_id: str | None = Field(default=None, max_length=128)
    order_no: str | None = Field(default=None, max_length=128)
    amount: str | None = Field(default=None, description="Decimal string; capture/refund only")
    extra: dict[str, Any] | None = None
    destination: str | None = Field(default=None, description="pg (default) or wallet; refund only")


def parse_v2_operation(body: dict[str, Any]) -> tuple[str, Any, str | None, str | None]:
    operation, amount = parse_operation(body, V2_OPERATIONS)
    session_id, order_no = parse_lookup(body)
    destination = body.get("destination")
    if destination not in (None, ""):
        choice("destination", destination, DESTINATIONS)
    return operation, amount, session_id, order_no


def parse_v1_operation(body: dict[str, Any]) -> tuple[str, Any]:
    return parse_operation(body, V1_OPERATIONS)


# Operations that take an amount; on the others `amount` is ignored whatever it holds (§13).
AMOUNT_OPERATIONS = ("capture", "refund")


def parse_operation(body: dict[str, Any], choices: tuple[str, ...]) -> tuple[str, Any]:
    operation = choice("operation", body.get("operation"), choices)
    if operation not in AMOUNT_OPERATIONS or "amount" not in body:
        # Only an absent amount means "all that remains" (decisions §13).
        return operation, None
    amount = body["amount"]
    if amount is None:
        raise field_error("amount", messages.AMOUNT_NULL)
    if isinstance(amount, str) and not amount.strip():
        # A blank string (an empty form field `amount=`) is no number, never "everything".
        raise field_error("amount", messages.AMOUNT_BLANK)
    if not isinstance(amount, str):
        # The contract carries amounts as decimal strings (decisions §3); a JSON number is
        # refused rather than guessed at.
        raise field_error("amount", messages.AMOUNT_NOT_STRING)
    return operation, amount


def tracking_key(value: str | None) -> str | None:
    return identifier("Tracking-Key", value, max_length=TRACKING_KEY_MAX, required=False)
