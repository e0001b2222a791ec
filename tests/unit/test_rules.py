"""Pure unit tests for payops.domain.rules (decisions §3–§4, ottu-api §6.1, §6.4, §9).

The expected outcomes are written out here from the spec; nothing is derived from the module's
own state sets or message constants.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payops.domain.rules import (
    DeleteKind,
    GatewayFacts,
    InquiryPath,
    RuleViolation,
    Totals,
    capturable,
    check_external,
    check_internal,
    inquiry_path,
    refundable,
    state_after_attempt,
    voidable,
)
from payops.domain.states import PARENT_STATES

FAST = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Exact client-facing texts from decisions §4.
NOT_ALLOWED = "Operation is not allowed"
NOT_SUPPORTED = "Operation is not supported by the payment gateway"
FOREIGN = "Operations are not available for payments made in a foreign currency"


def exceeds(kind: str, amount: str, currency: str) -> str:
    return f"Amount exceeds the {kind} amount ({amount} {currency})"


ALL_STATES = (
    "created",
    "pending",
    "attempted",
    "authorized",
    "paid",
    "failed",
    "canceled",
    "expired",
    "invalided",
    "cod",
)
EXTERNAL = ("capture", "refund", "void")

GW_ALL = GatewayFacts(
    supported_operations=frozenset({"capture", "refund", "void", "inquiry"}),
    default_currency="KWD",
)

AMOUNT = 10_000  # 10.000 KWD
FEE = 250  # 0.250 KWD


def fresh(state: str, **kw) -> Totals:
    """A parent just after its payment attempt (nothing captured, refunded or voided)."""
    mode = {"authorized": "authorize", "paid": "purchase"}.get(state)
    base = dict(state=state, currency_code="KWD", operation_mode=mode, amount=AMOUNT, fee=FEE)
    base.update(kw)
    return Totals(**base)


def refused(call, message: str | None = None) -> RuleViolation:
    with pytest.raises(RuleViolation) as info:
        call()
    assert info.value.message == str(info.value)
    if message is not None:
        assert info.value.message == message
    return info.value


# --------------------------------------------------------------------------- the §4 table

NA = "refused"  # 400 "Operation is not allowed"
SOFT, HARD = "soft", "hard"
STORAGE, GATEWAY = "storage", "gateway"

# Every parent state × every operation, from decisions §4 (and ottu-api §6.1 "Ops allowed").
# For capture/refund/void the value is the amount granted when no amount is requested, for a
# parent just paid/authorized for 10.000 KWD with a 0.250 KWD fee.
TABLE: dict[str, dict[str, object]] = {
    "created": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel="canceled",
        expire="expired",
        delete=HARD,
        inquiry=NA,
    ),
    "pending": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel="canceled",
        expire="expired",
        delete=HARD,
        inquiry=GATEWAY,
    ),
    "attempted": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel="canceled",
        expire="expired",
        delete=HARD,
        inquiry=GATEWAY,
    ),
    "authorized": dict(
        capture=10_250,  # amount + fee
        refund=NA,  # nothing captured yet
        void=10_250,  # amount + fee
        cancel=NA,
        expire=NA,
        delete=SOFT,
        inquiry=STORAGE,
    ),
    "paid": dict(
        capture=NA,
        refund=10_000,  # never the fee
        void=NA,
        cancel=NA,
        expire=NA,
        delete=SOFT,
        inquiry=STORAGE,
    ),
    "failed": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel=NA,
        expire=NA,
        delete=HARD,
        inquiry=GATEWAY,
    ),
    "canceled": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel=NA,
        expire=NA,
        delete=HARD,
        inquiry=NA,
    ),
    "expired": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel=NA,
        expire=NA,
        delete=HARD,
        inquiry=GATEWAY,
    ),
    "invalided": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel=NA,
        expire=NA,
        delete=HARD,
        inquiry=NA,
    ),
    "cod": dict(
        capture=NA,
        refund=NA,
        void=NA,
        cancel="canceled",
        expire=NA,
        delete=SOFT,
        inquiry=NA,
    ),
}
CASES = [(state, op, TABLE[state][op]) for state in TABLE for op in TABLE[state]]


def test_table_covers_every_parent_state_and_operation() -> None:
    assert set(PARENT_STATES) == set(ALL_STATES) == set(TABLE)
    assert len(PARENT_STATES) == len(set(PARENT_STATES))
    for row in TABLE.values():
        assert set(row) == {"capture", "refund", "void", "cancel", "expire", "delete", "inquiry"}


def _run(state: str, op: str, requested: int | None = None):
    if op in EXTERNAL:
        return check_external(op, fresh(state), GW_ALL, requested)
    if op == "inquiry":
        return inquiry_path(state)
    return check_internal(op, state)


@pytest.mark.parametrize(("state", "op", "expected"), CASES)
def test_state_operation_table(state: str, op: str, expected: object) -> None:
    if expected == NA:
        refused(lambda: _run(state, op), NOT_ALLOWED)
        return
    result = _run(state, op)
    if op == "delete":
        assert isinstance(result, DeleteKind)
        assert result == DeleteKind(expected)
        assert result.value == expected
    elif op == "inquiry":
        assert isinstance(result, InquiryPath)
        assert result == InquiryPath(expected)
        assert result.value == expected
    else:
        assert result == expected


@pytest.mark.parametrize(("state", "op", "expected"), [c for c in CASES if c[1] in EXTERNAL])
def test_state_table_external_with_explicit_amount(state: str, op: str, expected: object) -> None:
    """Same table when the client names a small amount (1 minor unit)."""
    if expected == NA:
        refused(lambda: _run(state, op, 1), NOT_ALLOWED)
    elif op == "void":
        assert _run(state, op, 1) == expected  # amount on void is ignored
    else:
        assert _run(state, op, 1) == 1


@pytest.mark.parametrize(("state", "op", "expected"), [c for c in CASES if c[1] in EXTERNAL])
def test_state_refusal_wins_whatever_the_gateway_and_currency(
    state: str, op: str, expected: object
) -> None:
    if expected != NA:
        return
    gateways = [
        GW_ALL,
        GatewayFacts(frozenset(), "KWD"),
        GatewayFacts(frozenset({"capture", "refund", "void"}), "USD"),
    ]
    for gateway in gateways:
        refused(lambda gateway=gateway: check_external(op, fresh(state), gateway, None))


# Other moments of an authorized parent (decisions §3 rules on authorize).
AUTH_MOMENTS = {
    # name: (totals overrides, capture(None), refund(None), void)
    "partly captured": (dict(captured=4_000), 6_250, 4_000, NA),
    "captured the amount": (dict(captured=10_000), 250, 10_000, NA),
    "captured amount+fee": (dict(captured=10_250), "zero", 10_000, NA),
    "captured and partly refunded": (dict(captured=6_000, refunded=1_500), 4_250, 4_500, NA),
    "captured and fully refunded": (dict(captured=6_000, refunded=6_000), 4_250, "zero", NA),
    "capture in flight": (dict(reserved_capture=3_000), 7_250, NA, NA),
    "capture in flight, one settled": (
        dict(captured=2_000, reserved_capture=3_000),
        5_250,
        2_000,
        NA,
    ),
    "refund in flight": (dict(captured=5_000, reserved_refund=2_000), 5_250, 3_000, NA),
    "void in flight": (dict(void_in_flight=True), NA, NA, NA),
    "voided": (dict(voided=10_250), NA, NA, NA),
}


@pytest.mark.parametrize("name", list(AUTH_MOMENTS))
def test_authorized_moments(name: str) -> None:
    overrides, capture, refund, void = AUTH_MOMENTS[name]
    t = fresh("authorized", **overrides)
    for op, expected in (("capture", capture), ("refund", refund), ("void", void)):
        if expected == NA:
            refused(lambda op=op: check_external(op, t, GW_ALL, None), NOT_ALLOWED)
        elif expected == "zero":
            # Nothing left: an omitted amount cannot be granted, and one unit is too much.
            kind = "capturable" if op == "capture" else "refundable"
            err = refused(lambda op=op: check_external(op, t, GW_ALL, None))
            assert err.message in {NOT_ALLOWED, exceeds(kind, "0.000", "KWD")}
            refused(lambda op=op: check_external(op, t, GW_ALL, 1), exceeds(kind, "0.000", "KWD"))
        else:
            assert check_external(op, t, GW_ALL, None) == expected
            assert check_external(op, t, GW_ALL, expected) == expected


# --------------------------------------------------------------------------- internal ops

INTERNAL_TABLE = {
    # state: (cancel, expire, delete)
    "created": ("canceled", "expired", HARD),
    "pending": ("canceled", "expired", HARD),
    "attempted": ("canceled", "expired", HARD),
    "authorized": (NA, NA, SOFT),
    "paid": (NA, NA, SOFT),
    "failed": (NA, NA, HARD),
    "canceled": (NA, NA, HARD),
    "expired": (NA, NA, HARD),
    "invalided": (NA, NA, HARD),
    "cod": ("canceled", NA, SOFT),
}


def test_internal_table_agrees_with_main_table() -> None:
    for state, (cancel, expire, delete) in INTERNAL_TABLE.items():
        assert (TABLE[state]["cancel"], TABLE[state]["expire"], TABLE[state]["delete"]) == (
            cancel,
            expire,
            delete,
        )


@pytest.mark.parametrize("state", ALL_STATES)
def test_delete_never_refused(state: str) -> None:
    result = check_internal("delete", state)
    assert result in (DeleteKind.SOFT, DeleteKind.HARD)


@pytest.mark.parametrize("op", ["capture", "refund", "void", "inquiry", "", "CANCEL"])
def test_check_internal_rejects_non_internal_operation_names(op: str) -> None:
    with pytest.raises(ValueError):
        check_internal(op, "created")


@pytest.mark.parametrize("op", ["cancel", "expire", "delete", "inquiry", ""])
def test_check_external_rejects_non_external_operation_names(op: str) -> None:
    with pytest.raises(ValueError):
        check_external(op, fresh("authorized"), GW_ALL, None)


# --------------------------------------------------------------------------- amounts


def test_refund_message_example_from_brief() -> None:
    t = fresh("paid", refunded=1_000)
    refused(
        lambda: check_external("refund", t, GW_ALL, 9_001),
        "Amount exceeds the refundable amount (9.000 KWD)",
    )
    assert check_external("refund", t, GW_ALL, 9_000) == 9_000
    assert check_external("refund", t, GW_ALL, None) == 9_000


@pytest.mark.parametrize(
    ("currency", "amount", "fee", "refunded", "limit_text"),
    [
        ("KWD", 10_000, 500, 1_000, "9.000"),
        ("BHD", 20_000, 0, 0, "20.000"),
        ("OMR", 5, 0, 0, "0.005"),
        ("USD", 1_900, 100, 0, "19.00"),
        ("SAR", 1_900, 0, 900, "10.00"),
        ("JPY", 20, 5, 0, "20"),
        ("JPY", 2_000, 0, 1_999, "1"),
    ],
)
def test_refund_limit_exact_and_one_over(
    currency: str, amount: int, fee: int, refunded: int, limit_text: str
) -> None:
    t = Totals(
        state="paid",
        currency_code=currency,
        operation_mode="purchase",
        amount=amount,
        fee=fee,
        refunded=refunded,
    )
    gw = GatewayFacts(frozenset({"refund"}), currency)
    limit = amount - refunded  # never the fee
    assert check_external("refund", t, gw, limit) == limit
    assert check_external("refund", t, gw, None) == limit
    assert check_external("refund", t, gw, 1) == 1
    refused(
        lambda: check_external("refund", t, gw, limit + 1),
        f"Amount exceeds the refundable amount ({limit_text} {currency})",
    )
    refused(lambda: check_external("refund", t, gw, limit + fee + 1))


@pytest.mark.parametrize(
    ("currency", "amount", "fee", "captured", "limit_text"),
    [
        ("KWD", 10_000, 500, 0, "10.500"),  # capture may include the fee
        ("KWD", 10_000, 500, 3_000, "7.500"),
        ("KWD", 10_000, 0, 9_999, "0.001"),
        ("USD", 1_900, 100, 0, "20.00"),
        ("JPY", 20, 5, 0, "25"),
        ("JPY", 20, 5, 24, "1"),
    ],
)
def test_capture_limit_exact_and_one_over(
    currency: str, amount: int, fee: int, captured: int, limit_text: str
) -> None:
    t = Totals(
        state="authorized",
        currency_code=currency,
        operation_mode="authorize",
        amount=amount,
        fee=fee,
        captured=captured,
    )
    gw = GatewayFacts(frozenset({"capture"}), currency)
    limit = amount + fee - captured
    assert check_external("capture", t, gw, limit) == limit
    assert check_external("capture", t, gw, None) == limit
    assert check_external("capture", t, gw, 1) == 1
    refused(
        lambda: check_external("capture", t, gw, limit + 1),
        f"Amount exceeds the capturable amount ({limit_text} {currency})",
    )


def test_refund_never_includes_fee_on_purchase() -> None:
    t = fresh("paid", fee=500)
    assert check_external("refund", t, GW_ALL, None) == 10_000
    refused(
        lambda: check_external("refund", t, GW_ALL, 10_500),
        "Amount exceeds the refundable amount (10.000 KWD)",
    )


def test_refund_never_includes_fee_on_authorize() -> None:
    t = fresh("authorized", fee=500, captured=10_500)  # captured amount + fee
    assert check_external("refund", t, GW_ALL, None) == 10_000
    refused(
        lambda: check_external("refund", t, GW_ALL, 10_001),
        "Amount exceeds the refundable amount (10.000 KWD)",
    )


def test_refund_on_authorize_is_capped_by_captured() -> None:
    t = fresh("authorized", captured=3_000, refunded=1_000)
    assert check_external("refund", t, GW_ALL, None) == 2_000
    assert check_external("refund", t, GW_ALL, 2_000) == 2_000
    refused(
        lambda: check_external("refund", t, GW_ALL, 2_001),
        "Amount exceeds the refundable amount (2.000 KWD)",
    )


@pytest.mark.parametrize("requested", [None, 0, 1, 5_000, 10_250, 10_251, 10**12, -1])
def test_void_covers_amount_plus_fee_and_ignores_amount(requested: int | None) -> None:
    assert check_external("void", fresh("authorized"), GW_ALL, requested) == 10_250
    assert check_external("void", fresh("authorized", fee=0), GW_ALL, requested) == 10_000


@pytest.mark.parametrize("op", ["capture", "refund"])
@pytest.mark.parametrize("requested", [0, -1, -10_000])
def test_non_positive_requested_amount_refused(op: str, requested: int) -> None:
    t = fresh("authorized", captured=5_000) if op == "refund" else fresh("authorized")
    refused(lambda: check_external(op, t, GW_ALL, requested))
    refused(lambda: check_external("refund", fresh("paid"), GW_ALL, requested))


def test_zero_remaining_refund_on_purchase() -> None:
    t = fresh("paid", refunded=10_000)
    err = refused(lambda: check_external("refund", t, GW_ALL, None))
    assert err.message in {NOT_ALLOWED, exceeds("refundable", "0.000", "KWD")}
    refused(
        lambda: check_external("refund", t, GW_ALL, 1),
        exceeds("refundable", "0.000", "KWD"),
    )


def test_zero_remaining_capture() -> None:
    t = fresh("authorized", captured=10_250)
    err = refused(lambda: check_external("capture", t, GW_ALL, None))
    assert err.message in {NOT_ALLOWED, exceeds("capturable", "0.000", "KWD")}
    refused(
        lambda: check_external("capture", t, GW_ALL, 1),
        exceeds("capturable", "0.000", "KWD"),
    )


# --------------------------------------------------------------------------- reservations


def test_reserved_capture_lowers_capturable() -> None:
    t = fresh("authorized", fee=500, reserved_capture=2_000)
    assert check_external("capture", t, GW_ALL, None) == 8_500
    assert check_external("capture", t, GW_ALL, 8_500) == 8_500
    refused(
        lambda: check_external("capture", t, GW_ALL, 8_501),
        "Amount exceeds the capturable amount (8.500 KWD)",
    )


def test_reserved_and_settled_captures_together() -> None:
    t = fresh("authorized", fee=500, captured=4_000, reserved_capture=6_000)
    assert check_external("capture", t, GW_ALL, 500) == 500
    refused(
        lambda: check_external("capture", t, GW_ALL, 501),
        "Amount exceeds the capturable amount (0.500 KWD)",
    )


def test_reserved_refund_lowers_refundable_on_purchase() -> None:
    t = fresh("paid", refunded=1_000, reserved_refund=2_000)
    assert check_external("refund", t, GW_ALL, None) == 7_000
    refused(
        lambda: check_external("refund", t, GW_ALL, 7_001),
        "Amount exceeds the refundable amount (7.000 KWD)",
    )


def test_reserved_refund_lowers_refundable_on_authorize() -> None:
    t = fresh("authorized", captured=6_000, refunded=1_000, reserved_refund=2_000)
    assert check_external("refund", t, GW_ALL, None) == 3_000
    refused(
        lambda: check_external("refund", t, GW_ALL, 3_001),
        "Amount exceeds the refundable amount (3.000 KWD)",
    )


def test_reserved_refund_fully_reserved_refuses() -> None:
    t = fresh("paid", reserved_refund=10_000)
    refused(lambda: check_external("refund", t, GW_ALL, 1), exceeds("refundable", "0.000", "KWD"))


def test_reserved_capture_alone_does_not_allow_refund() -> None:
    # Being captured is not captured: refunds need a settled capture.
    t = fresh("authorized", reserved_capture=5_000)
    refused(lambda: check_external("refund", t, GW_ALL, 1), NOT_ALLOWED)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(reserved_capture=1),
        dict(captured=1),
        dict(captured=10_250),
        dict(captured=5_000, reserved_refund=1_000),
        dict(captured=5_000, refunded=1_000),
        dict(void_in_flight=True),
        dict(voided=10_250),
    ],
)
def test_void_refused_when_anything_captured_in_flight_or_voided(overrides: dict) -> None:
    refused(
        lambda: check_external("void", fresh("authorized", **overrides), GW_ALL, None), NOT_ALLOWED
    )


@pytest.mark.parametrize("requested", [None, 1, 10_250])
def test_capture_refused_while_void_in_flight(requested: int | None) -> None:
    refused(
        lambda: check_external(
            "capture", fresh("authorized", void_in_flight=True), GW_ALL, requested
        ),
        NOT_ALLOWED,
    )


@pytest.mark.parametrize("op", EXTERNAL)
@pytest.mark.parametrize("requested", [None, 1, 10_000])
def test_after_void_nothing_allowed(op: str, requested: int | None) -> None:
    t = fresh("authorized", voided=10_250)
    refused(lambda: check_external(op, t, GW_ALL, requested), NOT_ALLOWED)


@pytest.mark.parametrize("op", ["capture", "refund", "void"])
def test_void_refusal_holds_for_other_sized_voids(op: str) -> None:
    # Any recorded void (whatever its size) ends the authorization.
    t = fresh("authorized", voided=1)
    refused(lambda op=op: check_external(op, t, GW_ALL, None), NOT_ALLOWED)


# --------------------------------------------------------------------------- gateway and currency

VALID_FOR = {
    "capture": fresh("authorized"),
    "refund": fresh("paid"),
    "void": fresh("authorized"),
}


@pytest.mark.parametrize("op", EXTERNAL)
@pytest.mark.parametrize(
    "supported",
    [
        frozenset(),
        frozenset({"inquiry"}),
        frozenset({"capture", "refund", "void", "inquiry"}),
    ],
)
def test_gateway_capability(op: str, supported: frozenset) -> None:
    gw = GatewayFacts(supported_operations=supported - {op}, default_currency="KWD")
    refused(lambda: check_external(op, VALID_FOR[op], gw, None), NOT_SUPPORTED)
    refused(lambda: check_external(op, VALID_FOR[op], gw, 1), NOT_SUPPORTED)
    gw_ok = GatewayFacts(supported_operations=supported | {op}, default_currency="KWD")
    assert check_external(op, VALID_FOR[op], gw_ok, None) > 0


@pytest.mark.parametrize("op", EXTERNAL)
def test_gateway_with_only_that_operation(op: str) -> None:
    gw = GatewayFacts(frozenset({op}), "KWD")
    assert check_external(op, VALID_FOR[op], gw, None) == TABLE[VALID_FOR[op].state][op]


def test_refund_on_authorized_needs_refund_support() -> None:
    t = fresh("authorized", captured=5_000)
    refused(
        lambda: check_external(
            "refund", t, GatewayFacts(frozenset({"capture", "void"}), "KWD"), None
        ),
        NOT_SUPPORTED,
    )


@pytest.mark.parametrize("op", EXTERNAL)
@pytest.mark.parametrize(
    ("payment_currency", "gateway_currency"),
    [("USD", "KWD"), ("KWD", "USD"), ("KWD", "BHD"), ("JPY", "KWD"), ("OMR", "BHD")],
)
def test_foreign_currency_refused(op: str, payment_currency: str, gateway_currency: str) -> None:
    t = replace(VALID_FOR[op], currency_code=payment_currency)
    gw = GatewayFacts(frozenset({"capture", "refund", "void"}), gateway_currency)
    refused(lambda: check_external(op, t, gw, None), FOREIGN)
    refused(lambda: check_external(op, t, gw, 1), FOREIGN)


@pytest.mark.parametrize("op", EXTERNAL)
@pytest.mark.parametrize(("payment_currency", "gateway_currency"), [("kwd", "KWD"), ("KWD", "kwd")])
def test_same_currency_any_case(op: str, payment_currency: str, gateway_currency: str) -> None:
    t = replace(VALID_FOR[op], currency_code=payment_currency)
    gw = GatewayFacts(frozenset({"capture", "refund", "void"}), gateway_currency)
    assert check_external(op, t, gw, None) > 0


@pytest.mark.parametrize("state", ALL_STATES)
def test_foreign_currency_does_not_block_internal_ops_or_inquiry(state: str) -> None:
    # ottu-api §11.12: the ban is for external operations only; internal ops take no currency.
    assert check_internal("delete", state) in (DeleteKind.SOFT, DeleteKind.HARD)
    if TABLE[state]["inquiry"] != NA:
        assert inquiry_path(state).value == TABLE[state]["inquiry"]


# --------------------------------------------------------------------------- helpers


def test_capturable_refundable_voidable_helpers() -> None:
    assert capturable(fresh("authorized")) == 10_250
    assert capturable(fresh("authorized", captured=250, reserved_capture=1_000)) == 9_000
    assert capturable(fresh("authorized", voided=10_250)) == 0
    assert capturable(fresh("authorized", void_in_flight=True)) == 0
    assert capturable(fresh("paid")) == 0
    assert refundable(fresh("paid")) == 10_000
    assert refundable(fresh("paid", refunded=3_000, reserved_refund=2_000)) == 5_000
    assert refundable(fresh("authorized")) == 0
    assert refundable(fresh("authorized", captured=10_250)) == 10_000
    assert refundable(fresh("authorized", captured=4_000, refunded=1_000)) == 3_000
    assert voidable(fresh("authorized")) is True
    assert voidable(fresh("authorized", reserved_capture=1)) is False
    assert voidable(fresh("paid")) is False
    for state in ALL_STATES:
        if state not in ("authorized", "paid"):
            assert capturable(fresh(state)) == 0
            assert refundable(fresh(state)) == 0
            assert voidable(fresh(state)) is False


# --------------------------------------------------------------------------- attempts (§6.1)

ATTEMPT_TABLE = [
    # (attempt result, operation mode, multi-attempt, parent state)
    ("success", "purchase", True, "paid"),
    ("success", "purchase", False, "paid"),
    ("success", "authorize", True, "authorized"),
    ("success", "authorize", False, "authorized"),
    ("pending", "purchase", True, "pending"),
    ("pending", "authorize", False, "pending"),
    ("failed", "purchase", True, "attempted"),
    ("failed", "purchase", False, "failed"),
    ("failed", "authorize", False, "failed"),
    ("canceled", "purchase", True, "attempted"),
    ("canceled", "purchase", False, "expired"),
    ("error", "purchase", True, "attempted"),
    ("error", "purchase", False, "failed"),
]


@pytest.mark.parametrize(("result", "mode", "multi", "state"), ATTEMPT_TABLE)
def test_state_after_attempt(result: str, mode: str, multi: bool, state: str) -> None:
    assert state_after_attempt(result, mode, multi) == state


@pytest.mark.parametrize("multi", [True, False])
def test_state_after_cod_attempt(multi: bool) -> None:
    assert state_after_attempt("cod", "purchase", multi) == "cod"


# --------------------------------------------------------------------------- properties

currencies = st.sampled_from(["KWD", "USD", "JPY", "BHD", "OMR"])
requests = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=20),
    st.integers(min_value=1, max_value=2 * 10**6),
)


def _try(op: str, t: Totals, gw: GatewayFacts, requested: int | None) -> int | None:
    try:
        granted = check_external(op, t, gw, requested)
    except RuleViolation:
        return None
    return granted


@FAST
@given(
    currency=currencies,
    amount=st.integers(min_value=1, max_value=10**6),
    fee=st.integers(min_value=0, max_value=10**4),
    reqs=st.lists(requests, max_size=25),
)
def test_property_refunds_on_purchase_never_exceed_amount(currency, amount, fee, reqs) -> None:
    gw = GatewayFacts(frozenset({"refund"}), currency)
    t = Totals(
        state="paid", currency_code=currency, operation_mode="purchase", amount=amount, fee=fee
    )
    for req in reqs:
        remaining = amount - t.refunded
        granted = _try("refund", t, gw, req)
        if req is None:
            assert granted == (remaining if remaining > 0 else None)
        else:
            assert granted == (req if 0 < req <= remaining else None)
        if granted is not None:
            t = replace(t, refunded=t.refunded + granted)
        assert t.refunded <= amount  # the fee is never refunded


@FAST
@given(
    currency=currencies,
    amount=st.integers(min_value=1, max_value=10**6),
    fee=st.integers(min_value=0, max_value=10**4),
    data=st.data(),
)
def test_property_refunds_on_authorize_never_exceed_min_captured_amount(
    currency, amount, fee, data
) -> None:
    captured = data.draw(st.integers(min_value=1, max_value=amount + fee), label="captured")
    reqs = data.draw(st.lists(requests, max_size=25), label="requests")
    gw = GatewayFacts(frozenset({"refund"}), currency)
    t = Totals(
        state="authorized",
        currency_code=currency,
        operation_mode="authorize",
        amount=amount,
        fee=fee,
        captured=captured,
    )
    base = min(captured, amount)
    for req in reqs:
        remaining = base - t.refunded
        granted = _try("refund", t, gw, req)
        if req is None:
            assert granted == (remaining if remaining > 0 else None)
        else:
            assert granted == (req if 0 < req <= remaining else None)
        if granted is not None:
            t = replace(t, refunded=t.refunded + granted)
        assert t.refunded <= base


@FAST
@given(
    currency=currencies,
    amount=st.integers(min_value=1, max_value=10**6),
    fee=st.integers(min_value=0, max_value=10**4),
    steps=st.lists(st.tuples(st.sampled_from(["capture", "refund"]), requests), max_size=30),
)
def test_property_captures_never_exceed_amount_plus_fee(currency, amount, fee, steps) -> None:
    gw = GatewayFacts(frozenset({"capture", "refund", "void"}), currency)
    t = Totals(
        state="authorized",
        currency_code=currency,
        operation_mode="authorize",
        amount=amount,
        fee=fee,
    )
    for op, req in steps:
        if op == "capture":
            remaining = amount + fee - t.captured
        else:
            remaining = min(t.captured, amount) - t.refunded if t.captured > 0 else 0
        granted = _try(op, t, gw, req)
        if req is None:
            assert granted == (remaining if remaining > 0 else None)
        else:
            assert granted == (req if 0 < req <= remaining else None)
        if granted is not None:
            field = "captured" if op == "capture" else "refunded"
            t = replace(t, **{field: getattr(t, field) + granted})
        assert t.captured <= amount + fee
        assert t.refunded <= min(t.captured, amount)


@FAST
@given(
    amount=st.integers(min_value=1, max_value=10**6),
    fee=st.integers(min_value=0, max_value=10**4),
    steps=st.lists(st.tuples(st.sampled_from(EXTERNAL), requests), max_size=30),
)
def test_property_void_and_capture_exclusive(amount, fee, steps) -> None:
    gw = GatewayFacts(frozenset({"capture", "refund", "void"}), "KWD")
    t = Totals(
        state="authorized", currency_code="KWD", operation_mode="authorize", amount=amount, fee=fee
    )
    captures = voids = 0
    for op, req in steps:
        granted = _try(op, t, gw, req)
        if granted is None:
            continue
        if op == "capture":
            assert voids == 0
            captures += 1
            t = replace(t, captured=t.captured + granted)
        elif op == "void":
            assert captures == 0 and voids == 0
            assert granted == amount + fee
            voids += 1
            t = replace(t, voided=granted)
        else:
            assert voids == 0 and captures > 0
            t = replace(t, refunded=t.refunded + granted)
    assert not (captures and voids)


@FAST
@given(
    mode=st.sampled_from(["authorize", "purchase"]),
    amount=st.integers(min_value=1, max_value=10**5),
    fee=st.integers(min_value=0, max_value=10**3),
    data=st.data(),
)
def test_property_reservations_plus_settled_never_exceed_limits(mode, amount, fee, data) -> None:
    """Operations start (reserving), then settle in any order: success, failure or still queued."""
    state = "authorized" if mode == "authorize" else "paid"
    gw = GatewayFacts(frozenset({"capture", "refund", "void"}), "KWD")
    t = Totals(state=state, currency_code="KWD", operation_mode=mode, amount=amount, fee=fee)
    in_flight: list[tuple[str, int]] = []
    capture_succeeded = void_succeeded = False
    capture_started = void_started = False
    for _ in range(data.draw(st.integers(min_value=1, max_value=30), label="steps")):
        if in_flight and data.draw(st.booleans(), label="settle?"):
            index = data.draw(st.integers(min_value=0, max_value=len(in_flight) - 1))
            op, held = in_flight.pop(index)
            success = data.draw(st.booleans(), label="success")
            if op == "capture":
                t = replace(
                    t,
                    reserved_capture=t.reserved_capture - held,
                    captured=t.captured + (held if success else 0),
                )
                capture_succeeded |= success
            elif op == "refund":
                t = replace(
                    t,
                    reserved_refund=t.reserved_refund - held,
                    refunded=t.refunded + (held if success else 0),
                )
            else:
                t = replace(t, void_in_flight=False, voided=held if success else 0)
                void_succeeded |= success
        else:
            op = data.draw(st.sampled_from(EXTERNAL), label="op")
            req = data.draw(requests, label="requested")
            granted = _try(op, t, gw, req)
            if granted is not None:
                assert granted > 0
                in_flight.append((op, granted))
                if op == "capture":
                    assert not t.void_in_flight and not t.voided
                    capture_started = True
                    t = replace(t, reserved_capture=t.reserved_capture + granted)
                elif op == "refund":
                    t = replace(t, reserved_refund=t.reserved_refund + granted)
                else:
                    assert t.captured == 0 and t.reserved_capture == 0
                    void_started = True
                    t = replace(t, void_in_flight=True)
        # Invariants (decisions §3, §5 guarantee), including what is still reserved.
        assert t.reserved_capture >= 0 and t.reserved_refund >= 0
        assert t.captured + t.reserved_capture <= (amount + fee if state == "authorized" else 0)
        refund_base = amount if state == "paid" else min(t.captured, amount)
        assert t.refunded + t.reserved_refund <= refund_base
        assert not (capture_succeeded and void_succeeded)
        assert not ((t.void_in_flight or t.voided) and (t.captured or t.reserved_capture))
        if state == "paid":
            assert not capture_started and not void_started
