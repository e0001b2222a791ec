"""N-Genius Online wire shapes (pydantic), amount conversion and status maps.

N-Genius is a HAL API: an order (``reference``) embeds ``payment[]``; each payment embeds its
``cnp:capture[]`` and ``cnp:refund[]`` children. Amounts are ``{"currencyCode", "value"}`` with
``value`` an integer in minor units. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from payops import money
from payops.connectors.base import Outcome
from payops.connectors.kit import mask_last4, redaction

# Media types of the two N-Genius APIs (identity and payment).
IDENTITY_MEDIA_TYPE = "application/vnd.ni-identity.v1+json"
PAYMENT_MEDIA_TYPE = "application/vnd.ni-payment.v2+json"

CAPTURES = "cnp:capture"
REFUNDS = "cnp:refund"
CANCEL = "cnp:cancel"
CHINA_UNION_PAY_RESULTS = "cnp:china_union_pay_results"


class AmountNotRepresentable(ValueError):
    """A PayOps amount that the gateway's unit for this currency cannot express exactly."""


# -- amounts --------------------------------------------------------------------------------------


def gateway_exponent(currency_code: str, overrides: Mapping[str, Any] | None = None) -> int:
    """Decimals N-Genius uses for a currency: ISO 4217 unless the configuration says otherwise."""
    code = currency_code.upper()
    iso = money.exponent(code)
    if overrides and code in overrides:
        return int(overrides[code])
    return iso


def to_gateway_value(
    minor: int, currency_code: str, overrides: Mapping[str, Any] | None = None
) -> int:
    """PayOps minor units → N-Genius ``amount.value`` (an integer in the gateway's minor unit)."""
    target = gateway_exponent(currency_code, overrides)
    if target == money.exponent(currency_code):
        return int(minor)
    scaled = money.to_decimal(minor, currency_code).scaleb(target)
    if scaled != scaled.to_integral_value():
        raise AmountNotRepresentable(
            f"{money.format_minor(minor, currency_code)} {currency_code.upper()} has more decimals "
            f"than N-Genius accepts ({target})"
        )
    return int(scaled)


def from_gateway_value(
    value: int, currency_code: str, overrides: Mapping[str, Any] | None = None
) -> int:
    """N-Genius ``amount.value`` → PayOps minor units (exact; refuses what cannot be represented)."""
    source = gateway_exponent(currency_code, overrides)
    iso = money.exponent(currency_code)
    if source == iso:
        return int(value)
    return money.from_decimal(Decimal(int(value)).scaleb(-source), currency_code)


# -- requests -------------------------------------------------------------------------------------


class Amount(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    currency_code: str = Field(alias="currencyCode", min_length=3, max_length=3)
    value: StrictInt = Field(ge=0)


class AmountRequest(BaseModel):
    """Body of a capture and of a refund."""

    amount: Amount

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, include={"amount": {"currency_code", "value"}})


def amount_request(
    minor: int, currency_code: str, overrides: Mapping[str, Any] | None = None
) -> AmountRequest:
    return AmountRequest(
        amount=Amount(
            currencyCode=currency_code.upper(),
            value=to_gateway_value(minor, currency_code, overrides),
        )
    )


# -- responses ------------------------------------------------------------------------------------


class _Loose(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Link(_Loose):
    href: str = ""


class TokenResponse(_Loose):
    access_token: str = Field(min_length=1)
    expires_in: int = 300
    token_type: str = "bearer"


class ErrorItem(_Loose):
    message: str | None = None
    localized_message: str | None = Field(default=None, alias="localizedMessage")
    error_code: str | None = Field(default=None, alias="errorCode")
    domain: str | None = None


class ErrorBody(_Loose):
    message: str | None = None
    code: int | None = None
    errors: list[ErrorItem] = Field(default_factory=list)

    def text(self) -> str:
        for item in self.errors:
            if item.message:
                return item.message
            if item.localized_message:
                return item.localized_message
        return self.message or ""


class Child(_Loose):
    """A capture or a refund embedded in a payment."""

    id_: str | None = Field(default=None, alias="_id")
    state: str = ""
    amount: Amount | None = None
    links: dict[str, Any] = Field(default_factory=dict, alias="_links")

    def href(self, rel: str = "self") -> str:
        link = self.links.get(rel)
        return link.get("href", "") if isinstance(link, dict) else ""

    @property
    def ref(self) -> str:
        """The child's own id: the last segment of its self link; for a China UnionPay refund
        still REQUESTED (no self link) the second-to-last segment of its
        ``cnp:china_union_pay_results`` link, as N-Genius's own plugin reads it; else the
        ``_id`` urn's last part."""
        href = self.href("self").rstrip("/")
        if href:
            return href.rsplit("/", 1)[-1]
        cup = self.href(CHINA_UNION_PAY_RESULTS).rstrip("/").split("/")
        if len(cup) >= 2 and cup[-2]:
            return cup[-2]
        return (self.id_ or "").rsplit(":", 1)[-1]


class Payment(_Loose):
    id_: str = Field(alias="_id", min_length=1)
    reference: str | None = None
    state: str = ""
    amount: Amount | None = None
    links: dict[str, Any] = Field(default_factory=dict, alias="_links")
    embedded: dict[str, Any] = Field(default_factory=dict, alias="_embedded")
    payment_method: dict[str, Any] = Field(default_factory=dict, alias="paymentMethod")
    auth_response: dict[str, Any] = Field(default_factory=dict, alias="authResponse")

    @property
    def ref(self) -> str:
        return self.reference or self.id_.rsplit(":", 1)[-1]

    def href(self, rel: str) -> str:
        link = self.links.get(rel)
        return link.get("href", "") if isinstance(link, dict) else ""

    def children(self, rel: str) -> list[Child]:
        items = self.embedded.get(rel) or []
        return [Child.model_validate(item) for item in items if isinstance(item, dict)]

    @property
    def captures(self) -> list[Child]:
        return self.children(CAPTURES)

    @property
    def refunds(self) -> list[Child]:
        return self.children(REFUNDS)


class Order(_Loose):
    id_: str = Field(alias="_id", min_length=1)
    reference: str | None = None
    action: str | None = None
    amount: Amount | None = None
    embedded: dict[str, Any] = Field(default_factory=dict, alias="_embedded")
    links: dict[str, Any] = Field(default_factory=dict, alias="_links")
    merchant_order_reference: str | None = Field(default=None, alias="merchantOrderReference")
    create_date_time: str | None = Field(default=None, alias="createDateTime")

    def href(self, rel: str) -> str:
        link = self.links.get(rel)
        return link.get("href", "") if isinstance(link, dict) else ""

    @property
    def payment_page(self) -> str:
        """The hosted payment page (``_links.payment.href``) the customer is sent to."""
        return self.href("payment")

    @property
    def payments(self) -> list[Payment]:
        items = self.embedded.get("payment") or []
        return [Payment.model_validate(item) for item in items if isinstance(item, dict)]


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate a decoded body; None when it does not have the model's shape."""
    if not isinstance(body, dict):
        return None
    try:
        return model.model_validate(body)
    except ValidationError:
        return None


def error_message(body: Any) -> str:
    parsed = parse(ErrorBody, body)
    return parsed.text() if parsed is not None else ""


# -- status maps ----------------------------------------------------------------------------------
# Every payment state the documentation lists. Anything else is treated as still in progress.

PAYMENT_STATES: dict[str, Outcome] = {
    # the customer's payment went through (later refunds do not undo that)
    "AUTHORISED": Outcome.SUCCESS,
    "CAPTURED": Outcome.SUCCESS,
    "PARTIALLY_CAPTURED": Outcome.SUCCESS,
    "PURCHASED": Outcome.SUCCESS,
    "PARTIALLY_REFUNDED": Outcome.SUCCESS,
    "REFUNDED": Outcome.SUCCESS,
    # final without money held
    "REVERSED": Outcome.FAILED,
    "FAILED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    # the customer may still finish
    "STARTED": Outcome.PENDING,
    "AWAIT_3DS": Outcome.PENDING,
    "AWAIT3DS": Outcome.PENDING,
    "PENDING": Outcome.PENDING,
}

# Capture / refund child states: SUCCESS; REQUESTED (asynchronous refund, settles overnight);
# failure states (the documentation does not enumerate them: these are the ones we map).
CHILD_STATES: dict[str, Outcome] = {
    "SUCCESS": Outcome.SUCCESS,
    "REQUESTED": Outcome.PENDING,
    "PENDING": Outcome.PENDING,
    "FAILED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    "REJECTED": Outcome.FAILED,
}

# What a payment state says about a void (authorisation reversal) sent for it.
VOID_STATES: dict[str, Outcome] = {
    "REVERSED": Outcome.SUCCESS,
    # states in which the reversal certainly did not happen
    "AUTHORISED": Outcome.FAILED,
    "CAPTURED": Outcome.FAILED,
    "PARTIALLY_CAPTURED": Outcome.FAILED,
    "PURCHASED": Outcome.FAILED,
    "PARTIALLY_REFUNDED": Outcome.FAILED,
    "REFUNDED": Outcome.FAILED,
    "FAILED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    "STARTED": Outcome.FAILED,
    "AWAIT_3DS": Outcome.FAILED,
    "AWAIT3DS": Outcome.FAILED,
    "PENDING": Outcome.FAILED,
}

# Webhook ``eventName`` values (from a secondary source; VERIFY) → what they say of the event.
EVENT_OUTCOMES: dict[str, Outcome] = {
    "AUTHORISED": Outcome.SUCCESS,
    "PURCHASED": Outcome.SUCCESS,
    "CAPTURED": Outcome.SUCCESS,
    "PARTIALLY_CAPTURED": Outcome.SUCCESS,
    "REFUNDED": Outcome.SUCCESS,
    "PARTIALLY_REFUNDED": Outcome.SUCCESS,
    "FULL_AUTH_REVERSED": Outcome.SUCCESS,
    "PURCHASE_REVERSED": Outcome.SUCCESS,
    "REFUND_REQUESTED": Outcome.PENDING,
    "DECLINED": Outcome.FAILED,
    "AUTHORISATION_FAILED": Outcome.FAILED,
    "PURCHASE_DECLINED": Outcome.FAILED,
    "PURCHASE_FAILED": Outcome.FAILED,
    "CAPTURE_FAILED": Outcome.FAILED,
    "REFUND_FAILED": Outcome.FAILED,
    "CAPTURE_VOIDED": Outcome.FAILED,
    "REFUND_VOIDED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    "ORDER_CLOSED": Outcome.PENDING,
    # reversal, void, refund and cancellation failures and requests (protocol check §3)
    "FULL_AUTH_REVERSAL_FAILED": Outcome.FAILED,
    "PURCHASE_REVERSAL_FAILED": Outcome.FAILED,
    "CAPTURE_VOID_FAILED": Outcome.FAILED,
    "REFUND_REQUEST_FAILED": Outcome.FAILED,
    "PARTIAL_REFUND_FAILED": Outcome.FAILED,
    "CANCELLATION_FAILED": Outcome.FAILED,
    "PARTIAL_REFUND_REQUESTED": Outcome.PENDING,
    "CANCELLATION_REQUESTED": Outcome.PENDING,
}


def payment_outcome(state: str | None) -> Outcome:
    return PAYMENT_STATES.get((state or "").upper(), Outcome.PENDING)


def child_outcome(state: str | None) -> Outcome:
    return CHILD_STATES.get((state or "").upper(), Outcome.PENDING)


def void_outcome(state: str | None) -> Outcome:
    return VOID_STATES.get((state or "").upper(), Outcome.PENDING)


def event_outcome(event_name: str | None) -> Outcome:
    """Listed names as listed; any other ``…_FAILED`` is a failure and ``…_REQUESTED`` pending;
    the rest pending (a notification is only a hint, confirmed by inquiry)."""
    name = (event_name or "").upper()
    if name in EVENT_OUTCOMES:
        return EVENT_OUTCOMES[name]
    return Outcome.FAILED if name.endswith("_FAILED") else Outcome.PENDING


# -- what PayOps keeps of a reply -----------------------------------------------------------------

# What is kept of a reply: no tokens, no CVV, and a card number reduced to its last four digits.
REDACTION = redaction(
    drop=(
        "access_token",
        "refresh_token",
        "cardtoken",
        "cvv",
        "csc",
        "securitycode",
        "password",
        "authorization",
    ),
    card_keys=("pan", "maskedpan", "cardnumber"),
    mask=mask_last4,
)


def payment_params(
    payment: Payment | None,
    *,
    order_reference: str = "",
    child: Child | None = None,
    message: str = "",
) -> dict[str, Any]:
    """The normalised ``pg_params`` (keys of transactions.presenters.PG_PARAM_KEYS)."""
    params: dict[str, Any] = {"ref": order_reference, "pg_message": message}
    if payment is not None:
        method = payment.payment_method or {}
        auth = payment.auth_response or {}
        params.update(
            {
                "payment_id": payment.ref,
                "card_type": method.get("name"),
                "card_holder": method.get("cardholderName"),
                "card_number": mask_last4(method["pan"]) if method.get("pan") else None,
                "auth_code": auth.get("authorizationCode"),
                "rrn": auth.get("rrn"),
                "result": payment.state.lower() if payment.state else None,
            }
        )
        expiry = method.get("expiry")
        if isinstance(expiry, str) and len(expiry) == 7 and expiry[4] == "-":
            params["card_expiry_year"] = expiry[:4]
            params["card_expiry_month"] = expiry[5:]
    if child is not None:
        params["transaction_id"] = child.ref
        params["result"] = child.state.lower() if child.state else params.get("result")
    return {key: value for key, value in params.items() if value not in (None, "")}


# -- payment acceptance: the order and its payment page -------------------------------------------
# POST /transactions/outlets/{outlet}/orders (payment acceptance spec §3.1). PayOps's attempt
# reference is ``merchantOrderReference`` (and ``merchantDefinedData.attempt``).

# The order's ``action`` for each operation mode: AUTH waits for a capture; PURCHASE captures at
# once (SALE, also captured, may be configured instead: option ``purchase_action``).
ORDER_ACTIONS = {"authorize": "AUTH", "purchase": "PURCHASE"}
PURCHASE_ACTIONS = ("PURCHASE", "SALE")
LANGUAGES = ("en", "ar", "fr")


class MerchantAttributes(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    redirect_url: str = Field(alias="redirectUrl")
    skip_confirmation_page: bool = Field(default=True, alias="skipConfirmationPage")
    cancel_url: str = Field(alias="cancelUrl")
    cancel_text: str = Field(alias="cancelText")


class BillingAddress(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")


class OrderRequest(BaseModel):
    """Body of POST …/outlets/{outlet}/orders."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    action: str
    amount: Amount
    email_address: str = Field(alias="emailAddress", min_length=3)
    merchant_order_reference: str = Field(alias="merchantOrderReference", min_length=1)
    language: str = "en"
    merchant_attributes: MerchantAttributes = Field(alias="merchantAttributes")
    billing_address: BillingAddress | None = Field(default=None, alias="billingAddress")
    phone_number: dict[str, str] | None = Field(default=None, alias="phoneNumber")
    merchant_defined_data: dict[str, str] = Field(alias="merchantDefinedData")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def order_request(
    *,
    action: str,
    minor: int,
    currency_code: str,
    reference: str,
    email: str,
    language: str,
    redirect_url: str,
    cancel_url: str,
    cancel_text: str,
    customer: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> OrderRequest:
    first = (customer.get("first_name") or "").strip() or None
    last = (customer.get("last_name") or "").strip() or None
    return OrderRequest(
        action=action,
        amount=Amount(
            currencyCode=currency_code.upper(),
            value=to_gateway_value(minor, currency_code, overrides),
        ),
        emailAddress=email,
        merchantOrderReference=reference,
        language=language if language in LANGUAGES else "en",
        merchantAttributes=MerchantAttributes(
            redirectUrl=redirect_url, cancelUrl=cancel_url, cancelText=cancel_text
        ),
        billingAddress=BillingAddress(firstName=first, lastName=last) if first or last else None,
        merchantDefinedData={"attempt": reference},
    )
