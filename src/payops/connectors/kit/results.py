"""Building ``GatewayResult``s, and the one check that the gateway recorded what was asked.

- ``result``: any outcome; empty gateway refs are dropped.
- ``unknown``: we cannot tell whether the gateway acted (no answer, 5xx, unreadable reply, a
  recorded amount that differs). The operation waits for reconciliation.
- ``not_sent``: the operation's own request never left (bad configuration, a failed token
  exchange or lookup): the gateway certainly did nothing. FAILED.
- ``refused``: the gateway answered and refused. FAILED.
- ``mismatch``/``check_recorded``: a result whose recorded amount or currency (``amount``,
  ``currency_code`` on ``GatewayResult``) differs from the request's becomes unknown: money may
  have moved, but not as asked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from payops.connectors.base import GatewayResult, OperationRequest, Outcome
from payops.money import format_minor


def _refs(refs: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (refs or {}).items() if v not in (None, "")}


def result(
    outcome: Outcome,
    raw: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    message: str = "",
    refs: dict[str, Any] | None = None,
    *,
    amount: int | None = None,
    currency_code: str | None = None,
) -> GatewayResult:
    return GatewayResult(
        outcome,
        dict(raw or {}),
        dict(params or {}),
        message,
        _refs(refs),
        amount=amount,
        currency_code=currency_code,
    )


def unknown(
    message: str,
    raw: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    refs: dict[str, Any] | None = None,
) -> GatewayResult:
    return result(Outcome.UNKNOWN, raw, params, message, refs)


def not_sent(
    message: str, raw: dict[str, Any] | None = None, params: dict[str, Any] | None = None
) -> GatewayResult:
    return result(Outcome.FAILED, raw if raw is not None else {"error": message}, params, message)


def refused(
    message: str,
    raw: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    refs: dict[str, Any] | None = None,
) -> GatewayResult:
    return result(Outcome.FAILED, raw, params, message, refs)


def mismatch(
    expected_amount: int,
    expected_currency: str,
    recorded_amount: int | None,
    recorded_currency: str | None = None,
    *,
    gateway: str = "The gateway",
    what: str = "this operation",
    shown: object = None,
) -> str | None:
    """Why what the gateway recorded is not what was asked, or None when it is (or when the
    gateway did not say). Amounts are minor units of ``expected_currency``. ``shown`` is the
    amount as the gateway wrote it: when given, an amount that cannot be read in the currency
    (``recorded_amount`` None) is a difference too, and the message quotes it."""
    if recorded_currency and recorded_currency.upper() != expected_currency.upper():
        return f"{gateway} recorded a different currency ({recorded_currency.upper()}) for {what}"
    unreadable = shown is not None and recorded_amount is None
    if unreadable or (recorded_amount is not None and recorded_amount != expected_amount):
        if shown is None:
            try:
                shown = format_minor(recorded_amount or 0, expected_currency)
            except Exception:  # noqa: BLE001 - only the message is at stake
                shown = recorded_amount
        return f"{gateway} recorded a different amount ({shown}) for {what}"
    return None


def check_recorded(
    found: GatewayResult, request: OperationRequest, *, gateway: str = "The gateway"
) -> GatewayResult:
    """``found`` unless it is a success whose recorded amount or currency differs from the
    request's; then the same result as UNKNOWN with the reason as its message."""
    if found.outcome != Outcome.SUCCESS:
        return found
    reason = mismatch(
        request.amount,
        request.currency_code,
        found.amount,
        found.currency_code,
        gateway=gateway,
        what=f"this {request.operation}",
    )
    if reason is None:
        return found
    return replace(found, outcome=Outcome.UNKNOWN, message=reason)
