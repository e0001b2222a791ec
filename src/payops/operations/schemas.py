"""Request parsing and documented response shapes for the operation endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from payops.api.requests import choice, identifier
from payops.errors import field_error

V1_OPERATIONS = ("capture", "refund", "void", "cancel")
TRACKING_KEY_MAX = 255


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


class Detail(BaseModel):
    detail: str


def parse_v1_operation(body: dict[str, Any]) -> tuple[str, Any]:
    operation = choice("operation", body.get("operation"), V1_OPERATIONS)
    amount = body.get("amount")
    if amount in (None, ""):
        amount = None
    elif isinstance(amount, (bool, list, dict)):
        raise field_error("amount", "A valid number is required.")
    return operation, amount


def tracking_key(value: str | None) -> str | None:
    return identifier("Tracking-Key", value, max_length=TRACKING_KEY_MAX, required=False)
