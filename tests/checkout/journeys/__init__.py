"""Customer journeys through a real gateway's hosted page, one driver per gateway.

A driver (``tests/checkout/journeys/<connector>.py``, listed in ``DRIVERS``) knows one gateway's
fake and how a customer's browser moves through it. The journey tests
(``tests/checkout/test_gateway_journeys.py``) are written once against ``JourneyDriver`` and run
for every driver: PayOps runs as a live server (``tests.live.live_server``) because each fake
sends the browser, and KNET's server, back to PayOps over real HTTP.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Literal, Protocol

# What the customer does at the gateway's page: a test card that is approved, declined, or left
# pending (3-D Secure-style, no final answer yet), or the page's cancel link.
CustomerAction = Literal["success", "decline", "pending", "cancel"]


@dataclass
class BrowserStep:
    """One request a browser makes: GET ``url``, or POST ``fields`` form-encoded to ``url``."""

    method: str
    url: str
    fields: dict[str, str] = field(default_factory=dict)


class JourneyDriver(Protocol):
    connector: str  # the registry name (payops.connectors.registry)
    currency: str  # a currency the gateway takes (e.g. "KWD")
    amount: str  # a valid amount in that currency (e.g. "12.500")
    modes: tuple[str, ...]  # the operation modes it takes payments in ("purchase", "authorize")

    def fake(self) -> AbstractContextManager[Any]:
        """Start the gateway's fake, payment side included; yields the fake."""

    def gateway_config(self, fake: Any, mode: str) -> dict[str, Any]:
        """Keyword arguments for ``payops.gateways.service.add_gateway`` (beyond pg_code and
        operation_mode): ``connector``, ``default_currency``, ``credentials``, ``options`` (e.g.
        ``{"base_url": fake.url}``) and ``webhook_secret`` where the gateway signs notifications."""

    def pay(self, fake: Any, at_gateway: BrowserStep, action: CustomerAction) -> BrowserStep | None:
        """Be the customer's browser at the fake: ``at_gateway`` is where PayOps sent it (the
        redirect, or the auto-submitted form). Do ``action`` on the fake's page and return the
        browser's next request to PayOps (the return; not yet sent), or None when the gateway
        keeps the customer waiting (``pending``). For KNET the fake's server first posts the
        result to PayOps itself; the returned step is the browser following KNET's REDIRECT."""

    def forge_return(self, fake: Any, at_gateway: BrowserStep) -> BrowserStep:
        """A return to PayOps for this attempt that an attacker could forge without paying
        (a missing or random indicator, a wrong hash, a made-up payment id)."""

    def pay_without_return(self, fake: Any, at_gateway: BrowserStep) -> None:
        """The customer pays successfully and closes the browser: no return ever reaches PayOps
        (KNET: the server post is lost too)."""

    def notify(self, fake: Any, notification_url: str) -> bool:
        """Make the fake send its gateway notification about the last payment to PayOps's
        ``notification_url``; False if this gateway has no notifications (the automatic attempt
        inquiry must settle it instead)."""


# connector name -> module path of its driver (each module defines ``DRIVER``).
DRIVERS: dict[str, str] = {
    "mpgs": "tests.checkout.journeys.mpgs",
    "ngenius": "tests.checkout.journeys.ngenius",
    "tabby": "tests.checkout.journeys.tabby",
    "myfatoorah": "tests.checkout.journeys.myfatoorah",
    "knet": "tests.checkout.journeys.knet",
    "payu_india": "tests.checkout.journeys.payu_india",
    "qpay": "tests.checkout.journeys.qpay",
}


def driver(connector: str) -> JourneyDriver:
    return import_module(DRIVERS[connector]).DRIVER  # type: ignore[no-any-return]
