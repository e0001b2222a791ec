"""Tabby wire shapes (request and response models) and the maps from Tabby's states to outcomes.

Tabby's payment API (``/api/v2/payments/{id}``) speaks amounts as strings in major units (up to
2 decimals for AED/SAR, 3 for KWD). Captures and refunds carry a caller-chosen ``reference_id``
that Tabby uses as the idempotency key; PayOps sends its operation reference number there, so an
operation can be found again in the payment's ``captures[]`` / ``refunds[]``.

Nothing here does I/O. Conversions between minor units and wire strings go through
``payops.money``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.connectors.base import Outcome
from payops.money import AmountError, UnknownCurrency, format_minor, from_decimal

# -- status maps ------------------------------------------------------------------------------

# Every documented value of a payment's ``status`` (GET /api/v2/payments/{id}); webhooks carry the
# same values in lower case. Anything else falls back to PENDING (``payment_outcome``): an answer
# we do not understand is never taken as success, nor as a definite failure.
PAYMENT_STATUS_OUTCOME: dict[str, Outcome] = {
    "CREATED": Outcome.PENDING,  # checkout not finished yet
    "AUTHORIZED": Outcome.SUCCESS,  # the customer's payment is approved (capturable)
    "CLOSED": Outcome.SUCCESS,  # fully captured, or closed after a (partial) capture
    "REJECTED": Outcome.FAILED,  # Tabby declined the customer (terminal)
    "EXPIRED": Outcome.FAILED,  # cancelled by the customer or timed out (terminal)
}
PAYMENT_STATUSES = frozenset(PAYMENT_STATUS_OUTCOME)
WEBHOOK_STATUSES = frozenset(status.lower() for status in PAYMENT_STATUSES)


def payment_outcome(status: str | None, *, has_captures: bool = True) -> Outcome:
    """What a payment status says about the customer's payment (default PENDING).

    A ``CLOSED`` payment without any capture was closed instead of captured: the merchant
    cancelled it and the customer was refunded, so as a payment it did not succeed.
    """
    normalised = (status or "").upper()
    if normalised == "CLOSED" and not has_captures:
        return Outcome.FAILED
    return PAYMENT_STATUS_OUTCOME.get(normalised, Outcome.PENDING)


# HTTP status → outcome for replies that are not a 200 payment object. Tabby documents 400
# bad_data, 401 not_authorized, 403 no_permission, 404 not_found, 409 conflict and 429 throttling:
# each is a refusal, so nothing was done. 5xx, 408 and anything undocumented leave the outcome
# unknown.
ERROR_STATUS_OUTCOME: dict[int, Outcome] = {
    400: Outcome.FAILED,
    401: Outcome.FAILED,
    403: Outcome.FAILED,
    404: Outcome.FAILED,
    409: Outcome.FAILED,
    429: Outcome.FAILED,
}


def error_outcome(status_code: int) -> Outcome:
    return ERROR_STATUS_OUTCOME.get(status_code, Outcome.UNKNOWN)


# Tabby's documented ``errorType`` values, with the HTTP status each comes with.
ERROR_TYPES = {
    "bad_data": 400,
    "not_authorized": 401,
    "no_permission": 403,
    "not_found": 404,
    "conflict": 409,
}

# Messages PayOps shows when Tabby's own body has none.
FALLBACK_MESSAGES = {
    400: "Tabby refused the request",
    401: "Tabby refused the credentials",
    403: "Tabby refused access to this payment",
    404: "Tabby has no such payment",
    409: "Tabby refused the operation in the payment's current state",
    429: "Tabby is throttling requests; try again later",
}


# -- requests ---------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CaptureRequest(_Request):
    """POST /api/v2/payments/{id}/captures"""

    amount: str
    reference_id: str = Field(min_length=1)
    tax_amount: str | None = None
    shipping_amount: str | None = None
    discount_amount: str | None = None


class RefundRequest(_Request):
    """POST /api/v2/payments/{id}/refunds"""

    amount: str
    reference_id: str = Field(min_length=1)
    reason: str | None = None


def wire_amount(minor: int, currency_code: str) -> str:
    """Minor units → Tabby's amount string (major units with the currency's decimals)."""
    return format_minor(minor, currency_code)


def capture_request(minor: int, currency_code: str, reference: str) -> CaptureRequest:
    return CaptureRequest(amount=wire_amount(minor, currency_code), reference_id=reference)


def refund_request(minor: int, currency_code: str, reference: str) -> RefundRequest:
    return RefundRequest(amount=wire_amount(minor, currency_code), reference_id=reference)


# -- responses --------------------------------------------------------------------------------


class _Reply(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Movement(_Reply):
    """One entry of ``captures[]`` or ``refunds[]``."""

    id: str | None = None
    created_at: str | None = None
    amount: str | None = None
    reference_id: str | None = None
    reason: str | None = None


class OrderInfo(_Reply):
    reference_id: str | None = None


class TabbyPayment(_Reply):
    """The payment object every payment endpoint answers with (200)."""

    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    amount: str | None = None
    currency: str | None = None
    is_test: bool | None = None
    created_at: str | None = None
    order: OrderInfo | None = None
    captures: list[Movement] = Field(default_factory=list)
    refunds: list[Movement] = Field(default_factory=list)

    @property
    def normalised_status(self) -> str:
        return self.status.upper()

    def capture(self, reference: str) -> Movement | None:
        return _find(self.captures, reference)

    def refund(self, reference: str) -> Movement | None:
        return _find(self.refunds, reference)


def _find(entries: list[Movement], reference: str) -> Movement | None:
    for entry in entries:
        if entry.reference_id == reference:
            return entry
    return None


class TabbyError(_Reply):
    """``{"status": "error", "errorType": …, "error": …}``, sometimes with ``errors[]``."""

    status: str | None = None
    error_type: str | None = Field(default=None, alias="errorType")
    error: str | None = None
    errors: list[Any] | None = None

    def message(self) -> str:
        """Tabby's human text, for display only (never branched on)."""
        if self.error:
            return str(self.error)
        if self.errors:
            return "; ".join(_error_text(item) for item in self.errors if _error_text(item))
        return ""


def _error_text(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("message", "error", "detail"):
            if item.get(key):
                return str(item[key])
        return ", ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def parse_payment(body: Any) -> TabbyPayment | None:
    if not isinstance(body, dict):
        return None
    try:
        return TabbyPayment.model_validate(body)
    except ValidationError:
        return None


def parse_error(body: Any) -> TabbyError:
    if isinstance(body, dict):
        try:
            return TabbyError.model_validate(body)
        except ValidationError:
            pass
    if isinstance(body, str) and body.strip():
        return TabbyError(error=body.strip()[:200])
    return TabbyError()


def amount_minor(value: str | None, currency_code: str) -> int | None:
    """A Tabby amount string → minor units, or None when it is not an exact amount."""
    if value is None:
        return None
    try:
        number = Decimal(str(value).strip())
        if not number.is_finite():
            return None
        return from_decimal(number, currency_code)
    except (InvalidOperation, AmountError, UnknownCurrency, ValueError, OverflowError):
        return None


# -- payment acceptance: the checkout session ---------------------------------------------------
# POST /api/v2/checkout (payment acceptance spec §2.1). Amounts are major-unit strings, like the
# payment API's. PayOps's attempt reference is the order's ``reference_id`` (and ``meta``), so a
# payment can be recognised as this attempt's (and found again after a lost reply).

# Tabby's merchant code follows the currency of its country (the code issued by Tabby may be
# configured instead, ``options["merchant_code"]``).
MERCHANT_CODE_BY_CURRENCY = {"AED": "AE", "SAR": "SA", "KWD": "KW"}
LANGUAGES = ("en", "ar")


class Buyer(_Request):
    name: str | None = None
    email: str | None = None
    phone: str | None = None


class ShippingAddress(_Request):
    city: str = ""
    address: str = ""
    zip: str = ""


class OrderItem(_Request):
    title: str
    quantity: int = 1
    unit_price: str
    category: str
    reference_id: str


class CheckoutOrder(_Request):
    reference_id: str = Field(min_length=1)
    items: list[OrderItem]
    tax_amount: str
    shipping_amount: str
    discount_amount: str


class BuyerHistory(_Request):
    registered_since: str
    loyalty_level: int = 0


class CheckoutPayment(_Request):
    amount: str
    currency: str
    description: str
    buyer: Buyer
    shipping_address: ShippingAddress
    order: CheckoutOrder
    buyer_history: BuyerHistory
    order_history: list[Any] = Field(default_factory=list)
    meta: dict[str, str]


class MerchantUrls(_Request):
    success: str
    cancel: str
    failure: str


class CheckoutSessionRequest(_Request):
    """POST /api/v2/checkout"""

    payment: CheckoutPayment
    lang: str
    merchant_code: str = Field(min_length=1)
    merchant_urls: MerchantUrls

    def body(self) -> dict[str, Any]:
        # Empty buyer fields are left out; the (required) lists and objects are always sent.
        return self.model_dump(exclude_none=True)


def checkout_request(
    *,
    minor: int,
    currency_code: str,
    reference: str,
    description: str,
    customer: dict[str, str],
    merchant_code: str,
    language: str,
    urls: MerchantUrls,
    now: str,
) -> CheckoutSessionRequest:
    amount = wire_amount(minor, currency_code)
    zero = wire_amount(0, currency_code)
    name = " ".join(
        part
        for part in (customer.get("first_name", "").strip(), customer.get("last_name", "").strip())
        if part
    )
    title = description or f"Order {reference}"
    return CheckoutSessionRequest(
        payment=CheckoutPayment(
            amount=amount,
            currency=currency_code.upper(),
            description=title,
            buyer=Buyer(
                name=name or None,
                email=customer.get("email", "").strip() or None,
                phone=customer.get("phone", "").strip() or None,
            ),
            shipping_address=ShippingAddress(
                city=customer.get("city", ""),
                address=customer.get("address", ""),
                zip=customer.get("zip", ""),
            ),
            order=CheckoutOrder(
                reference_id=reference,
                items=[
                    OrderItem(
                        title=title[:200],
                        unit_price=amount,
                        category="General",
                        reference_id=reference,
                    )
                ],
                tax_amount=zero,
                shipping_amount=zero,
                discount_amount=zero,
            ),
            buyer_history=BuyerHistory(registered_since=now),
            meta={"order_id": reference},
        ),
        lang=language if language in LANGUAGES else "en",
        merchant_code=merchant_code,
        merchant_urls=urls,
    )


class WebProduct(_Reply):
    web_url: str | None = None


class AvailableProducts(_Reply):
    installments: list[WebProduct] = Field(default_factory=list)


class SessionConfiguration(_Reply):
    available_products: AvailableProducts | None = None


class SessionPayment(_Reply):
    id: str | None = None
    status: str | None = None


class CheckoutSession(_Reply):
    """The 200 answer to POST /api/v2/checkout (and GET /api/v2/checkout/{id})."""

    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    payment: SessionPayment | None = None
    configuration: SessionConfiguration | None = None

    @property
    def web_url(self) -> str | None:
        products = self.configuration.available_products if self.configuration else None
        for product in products.installments if products else []:
            if product.web_url:
                return product.web_url
        return None

    @property
    def payment_id(self) -> str | None:
        return self.payment.id if self.payment and self.payment.id else None


def parse_session(body: Any) -> CheckoutSession | None:
    if not isinstance(body, dict):
        return None
    try:
        return CheckoutSession.model_validate(body)
    except ValidationError:
        return None


def parse_payment_list(body: Any) -> list[TabbyPayment] | None:
    """GET /api/v2/payments: ``{"payments": [...]}`` (a bare list is accepted too)."""
    items = body.get("payments") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return None
    found = [parse_payment(item) for item in items]
    return [payment for payment in found if payment is not None]
