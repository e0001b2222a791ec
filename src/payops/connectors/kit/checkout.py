"""Starting a hosted payment page: the pieces every form-post gateway shares.

- ``held_already``: before a retried start re-sends an attempt the gateway may already have
  taken, ask the gateway; when it holds a paid payment for the attempt, the browser goes
  nowhere and the attempt waits for its inquiry (the gateway would only refuse the duplicate).
- ``form_post``: the browser posts these fields to the gateway's page.
"""

from __future__ import annotations

from typing import Any

from payops.connectors.base import CheckoutStart, Connector, Outcome, PaymentRef


async def held_already(
    connector: Connector, payment: PaymentRef, *, gateway: str
) -> CheckoutStart | None:
    known = await connector.inquire_payment(payment)
    if known.outcome != Outcome.SUCCESS:
        return None
    return CheckoutStart(
        Outcome.UNKNOWN,
        gateway_refs=dict(known.gateway_refs),
        message=f"{gateway} already holds a payment for this attempt; its inquiry settles it",
    )


def form_post(
    url: str, fields: dict[str, str], *, gateway_refs: dict[str, Any], raw: dict[str, Any]
) -> CheckoutStart:
    return CheckoutStart(
        Outcome.SUCCESS, method="POST", url=url, fields=fields, gateway_refs=gateway_refs, raw=raw
    )
