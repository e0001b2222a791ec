"""Taking a payment through KNET: the locally built ``trandata`` request, KNET's server posting
the result to PayOps (``receive_result``, no network call) and the inquiry that confirms it
(``confirm_return``), against the fake KNET page driven like a browser. A small stand-in for
PayOps's response endpoint answers the fake's post with ``REDIRECT=``."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    ConnectorConfig,
    GatewayResult,
    NotificationRejected,
    Outcome,
    PaymentRef,
)
from payops.connectors.knet import payment as knet_payment
from payops.connectors.knet.connector import KnetConnector
from payops.connectors.registry import connector_class
from tests.checkout.journeys import BrowserStep
from tests.checkout.journeys.knet import DRIVER
from tests.connectors.knet import fake_server
from tests.connectors.knet.fake_server import (
    RESOURCE_KEY,
    TRANPORTAL_ID,
    TRANPORTAL_PASSWORD,
    FakeKnet,
)

PUBLIC = "https://payops.example"
_refs = itertools.count(1)
SPEC_KEY = "A1B2C3D4E5F6G7H8"
SPEC_PLAIN = "paymentid=100202400000000001&result=CAPTURED&trackid=T20240101A&amt=10.500"
SPEC_TRANDATA = (
    "b8f1104bf8f52c5f2490a658fcc4b7ebbb331bb61bea09a19c8010a88abc03a5d43e3af65ecc"
    "b2ae85e9113e83fde7ff64fc172d7a42bf9f993e9dae18ea2831d7179f2335ae8b8d52782f0d"
    "982eddba"
)


@dataclass
class ResponseEndpoint:
    """PayOps's response URL for one attempt: ``receive_result``, then ``REDIRECT=<receipt>``
    (after ``delay`` seconds; ``reply`` replaces the line when set)."""

    connector: KnetConnector
    payment: PaymentRef | None = None
    receipt_url: str = f"{PUBLIC}/checkout/receipt/tok"
    delay: float = 0.0
    reply: str | None = None
    results: list[GatewayResult] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    url: str = ""

    def handle(self, form: dict[str, str]) -> str:
        assert self.payment is not None
        try:
            self.results.append(self.connector.receive_result(self.payment, form))
        except NotificationRejected as exc:
            self.rejected.append(str(exc))
        time.sleep(self.delay)
        return self.reply if self.reply is not None else f"REDIRECT={self.receipt_url}"


@pytest.fixture
def fake() -> Iterator[FakeKnet]:
    with DRIVER.fake() as running:
        yield running


@pytest.fixture
def connector(fake: FakeKnet) -> KnetConnector:
    return connector_for(fake)


@pytest.fixture
def endpoint(connector: KnetConnector) -> Iterator[ResponseEndpoint]:
    state = ResponseEndpoint(connector)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            text = state.handle(dict(parse_qsl(body.decode(), keep_blank_values=True)))
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/checkout/response/tok"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def connector_for(fake: FakeKnet, **credentials: str) -> KnetConnector:
    return KnetConnector(
        ConnectorConfig(
            pg_code="knet-kwd",
            is_sandbox=True,
            credentials={
                "tranportal_id": TRANPORTAL_ID,
                "tranportal_password": TRANPORTAL_PASSWORD,
                "resource_key": RESOURCE_KEY,
                **credentials,
            },
            timeout_seconds=5.0,
            options={"base_url": fake.url},
        )
    )


def attempt(amount: int = 12_500, currency: str = "KWD") -> PaymentRef:
    return PaymentRef(
        reference_number=f"KNATT{next(_refs):06d}",
        amount=amount,
        currency_code=currency,
        operation_mode="purchase",
    )


def checkout(payment: PaymentRef, response_url: str, language: str = "en") -> CheckoutRequest:
    return CheckoutRequest(
        payment=payment,
        return_url=f"{PUBLIC}/checkout/return/tok",
        cancel_url=f"{PUBLIC}/checkout/return/tok?outcome=cancel",
        failure_url=f"{PUBLIC}/checkout/return/tok?outcome=failure",
        response_url=response_url,
        notification_url=f"{PUBLIC}/b/pg/notifications/knet-kwd",
        language=language,
    )


async def begin(
    connector: KnetConnector, endpoint: ResponseEndpoint, payment: PaymentRef | None = None
) -> tuple[PaymentRef, CheckoutStart]:
    payment = payment or attempt()
    begun = await connector.start_checkout(checkout(payment, endpoint.url))
    assert begun.outcome == Outcome.SUCCESS, begun.message
    kept = PaymentRef(
        payment.reference_number,
        payment.amount,
        payment.currency_code,
        payment.operation_mode,
        dict(begun.gateway_refs),
    )
    endpoint.payment = kept
    return kept, begun


def test_purchase_only_posting_its_result_with_ottus_inquiry_window() -> None:
    cls = connector_class("knet")
    assert cls.takes_payments and cls.posts_result
    assert cls.payment_modes == frozenset({"purchase"}) and cls.attempt_inquiry_minutes == 8


def test_the_envelope_matches_the_specs_vector_both_ways() -> None:
    assert knet_payment.encrypt(SPEC_PLAIN, SPEC_KEY) == SPEC_TRANDATA
    assert knet_payment.decrypt(SPEC_TRANDATA.upper(), SPEC_KEY) == SPEC_PLAIN
    assert fake_server.decrypt(SPEC_TRANDATA, SPEC_KEY) == SPEC_PLAIN  # the fake's own code
    for bad in ("", "zz", SPEC_TRANDATA[:-2], SPEC_TRANDATA[:32] + "00" * 16):
        with pytest.raises(knet_payment.EnvelopeError):
            knet_payment.decrypt(bad, SPEC_KEY)
    with pytest.raises(knet_payment.EnvelopeError):
        knet_payment.decrypt(SPEC_TRANDATA, "B1B2C3D4E5F6G7H8")


async def test_the_request_is_built_locally_exactly_as_k064_says(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    assert fake.requests == []  # nothing was sent to KNET
    parts = urlsplit(begun.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{fake.url}/kpg/PaymentHTTP.htm"
    query = dict(parse_qsl(parts.query))
    assert list(query) == ["param", "trandata", "tranportalId", "responseURL", "errorURL"]
    failure = f"{PUBLIC}/checkout/return/tok?outcome=failure"
    assert query["param"] == "paymentInit" and query["tranportalId"] == TRANPORTAL_ID
    assert (query["responseURL"], query["errorURL"]) == (endpoint.url, failure)
    plain = fake_server.decrypt(query["trandata"], RESOURCE_KEY)
    assert plain == (
        f"id={TRANPORTAL_ID}&password={TRANPORTAL_PASSWORD}&action=1&langid=EN&currencycode=414"
        f"&amt=12.500&responseURL={endpoint.url}&errorURL={failure}"
        f"&trackid={payment.reference_number}&udf1=&udf2=&udf3=&udf4=&udf5="
    )
    assert TRANPORTAL_PASSWORD not in begun.url and RESOURCE_KEY not in begun.url
    assert begun.method == "GET" and begun.gateway_refs == {"track_id": payment.reference_number}
    # Nothing exists at KNET before the customer pays: a retried start builds the same request.
    request = checkout(payment, endpoint.url)
    again = await connector.start_checkout(CheckoutRequest(**{**request.__dict__, "retry": True}))
    assert again.gateway_refs == begun.gateway_refs and fake.requests == []
    assert (
        fake_server.decrypt(dict(parse_qsl(urlsplit(again.url).query))["trandata"], RESOURCE_KEY)
        == plain
    )
    arabic = await connector.start_checkout(checkout(attempt(5), endpoint.url, "ar"))
    plain = fake_server.decrypt(
        dict(parse_qsl(urlsplit(arabic.url).query))["trandata"], RESOURCE_KEY
    )
    assert "&langid=AR&" in plain and "&amt=0.005&" in plain


async def test_what_cannot_be_sent_fails_the_attempt(
    fake: FakeKnet, endpoint: ResponseEndpoint
) -> None:
    no_key = connector_for(fake, resource_key="")
    assert (
        await no_key.start_checkout(checkout(attempt(), endpoint.url))
    ).outcome == Outcome.FAILED
    live = KnetConnector(
        ConnectorConfig(
            pg_code="knet-kwd",
            is_sandbox=False,
            options={"base_url": fake.url},
            credentials={
                "tranportal_id": TRANPORTAL_ID,
                "tranportal_password": TRANPORTAL_PASSWORD,
                "resource_key": RESOURCE_KEY,
            },
        )
    )
    plain_http = await live.start_checkout(checkout(attempt(), endpoint.url))  # http://
    assert plain_http.outcome == Outcome.FAILED and "HTTPS" in plain_http.message
    connector = connector_for(fake)
    for payment in (attempt(1_000, "USD"), PaymentRef("BAD-REF", 1_000, "KWD", "purchase")):
        begun = await connector.start_checkout(checkout(payment, endpoint.url))
        assert begun.outcome == Outcome.FAILED, payment


@pytest.mark.parametrize(
    ("action", "posted", "confirmed", "state"),
    [
        ("success", Outcome.PENDING, Outcome.SUCCESS, None),  # CAPTURED: a claim until inquiry
        ("decline", Outcome.FAILED, Outcome.FAILED, None),
        ("cancel", Outcome.FAILED, Outcome.FAILED, "canceled"),
    ],
)
async def test_result_posted_then_confirmed_by_inquiry(
    fake: FakeKnet,
    connector: KnetConnector,
    endpoint: ResponseEndpoint,
    action: Any,
    posted: Outcome,
    confirmed: Outcome,
    state: str | None,
) -> None:
    payment, begun = await begin(connector, endpoint)
    back = DRIVER.pay(fake, BrowserStep(begun.method, begun.url), action)
    # KNET's server posted first and got the REDIRECT= line at once; the browser follows it.
    assert back == BrowserStep("GET", endpoint.receipt_url)
    [result] = endpoint.results
    assert result.outcome == posted and result.payment_state == state
    assert result.gateway_refs["track_id"] == payment.reference_number
    assert result.raw["trandata"] == fake.posts[-1]["fields"]["trandata"]  # both forms kept
    assert fake.posts[-1]["reversed"] is False
    if action == "success":
        assert (result.amount, result.currency_code) == (12_500, "KWD")
        assert result.pg_params["result"] == "CAPTURED"
    inquiries_before = len(fake.requests_to("/kpg/tranPipe.htm"))
    assert inquiries_before == 0  # receive_result made no call
    found = await connector.confirm_return(payment, {})
    assert found.outcome == confirmed and found.payment_state == state
    [inquiry] = fake.requests_to("/kpg/tranPipe.htm")
    assert b"<action>8</action>" in inquiry.body
    if confirmed == Outcome.SUCCESS:
        assert (found.amount, found.currency_code) == (12_500, "KWD")


async def test_held_payment_is_pending_until_knet_answers(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "pending") is None
    assert endpoint.results == [] and fake.posts == []
    assert (await connector.inquire_payment(payment)).outcome == Outcome.PENDING
    fake.complete_held(payment.reference_number)
    assert (await connector.inquire_payment(payment)).outcome == Outcome.SUCCESS


async def test_host_timeout_is_pending(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    fake.host_timeout_next = True
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "success") is not None
    assert endpoint.results[-1].outcome == Outcome.PENDING


async def test_paid_but_nothing_ever_posted_is_found_by_inquiry(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    DRIVER.pay_without_return(fake, BrowserStep("GET", begun.url))
    assert endpoint.results == [] and fake.posts == []
    found = await connector.inquire_payment(payment)
    assert found.outcome == Outcome.SUCCESS and found.amount == 12_500


async def test_forged_or_foreign_results_are_rejected(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    forged = DRIVER.forge_return(fake, BrowserStep("GET", begun.url))
    forged_params = dict(parse_qsl(urlsplit(forged.url).query))
    assert forged.url.startswith(f"{PUBLIC}/checkout/return/tok?outcome=failure")
    # As a browser return it changes nothing: KNET's inquiry knows nothing of it.
    assert (await connector.confirm_return(payment, forged_params)).outcome == Outcome.PENDING
    other_key = knet_payment.encrypt(
        f"paymentid=1&result=CAPTURED&trackid={payment.reference_number}&amt=12.500",
        "B1B2C3D4E5F6G7H8",
    )
    other_track = knet_payment.encrypt(
        "paymentid=1&result=CAPTURED&trackid=SOMEONEELSE&amt=12.500", RESOURCE_KEY
    )
    for params in (
        forged_params,
        {"trandata": other_key},
        {"trandata": other_track},
        {"result": "CAPTURED", "trackid": payment.reference_number},
    ):
        with pytest.raises(NotificationRejected):
            connector.receive_result(payment, params)


async def test_a_different_amount_is_reported_not_hidden(
    connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, _ = await begin(connector, endpoint)
    claim = knet_payment.encrypt(
        f"paymentid=9&result=CAPTURED&trackid={payment.reference_number}&amt=1.000&tranid=7",
        RESOURCE_KEY,
    )
    found = connector.receive_result(payment, {"trandata": claim})
    assert (found.amount, found.currency_code) == (1_000, "KWD")


async def test_a_late_reply_makes_knet_reverse_the_payment(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    fake.reply_deadline = 0.3
    endpoint.delay = 0.8
    payment, begun = await begin(connector, endpoint)
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back == BrowserStep("GET", endpoint.receipt_url)  # the line came, too late
    assert fake.posts[-1]["reversed"] is True and fake.posts[-1]["seconds"] > 0.3
    reversed_payment = fake.payment(payment.reference_number)
    assert reversed_payment is not None and reversed_payment.reversed
    found = await connector.confirm_return(payment, {})
    assert found.outcome != Outcome.SUCCESS  # the inquiry shows it reversed


async def test_a_wrong_reply_makes_knet_reverse_and_send_the_browser_to_error_url(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    endpoint.reply = "<html><body>Thank you</body></html>"
    payment, begun = await begin(connector, endpoint)
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None and back.url.startswith(f"{PUBLIC}/checkout/return/tok?outcome=failure")
    assert fake.posts[-1]["reversed"] is True
    found = await connector.confirm_return(payment, dict(parse_qsl(urlsplit(back.url).query)))
    assert found.outcome != Outcome.SUCCESS


async def test_an_expired_page_sends_the_browser_to_error_url_and_fails_nobody(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    fake.page_lifetime = 0.0
    payment, begun = await begin(connector, endpoint)
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None and "Error=IPAY0100042" in back.url
    assert fake.posts == [] and fake.payment(payment.reference_number) is None
    # The error URL's code is only a hint: KNET's inquiry knows nothing yet, so it stays open
    # (the session's expiry and the attempt inquiry settle it).
    found = await connector.confirm_return(payment, dict(parse_qsl(urlsplit(back.url).query)))
    assert found.outcome == Outcome.PENDING


async def test_the_fake_refuses_a_bad_initialisation(
    fake: FakeKnet, connector: KnetConnector, endpoint: ResponseEndpoint
) -> None:
    payment, begun = await begin(connector, endpoint)
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "decline") is not None
    again = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")  # same track id
    assert again is not None and "Error=IPAY0100114" in again.url
    wrong_key = connector_for(fake, resource_key="ZZZZZZZZZZZZZZZZ")
    begun = await wrong_key.start_checkout(checkout(attempt(), endpoint.url))
    refused = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert refused is not None and "Error=IPAY0100176" in refused.url


async def test_credentials_never_reach_the_logs(
    fake: FakeKnet,
    connector: KnetConnector,
    endpoint: ResponseEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    payment, begun = await begin(connector, endpoint)
    DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    found = await connector.confirm_return(payment, {})
    await connector.aclose()
    assert caplog.records
    for secret in (TRANPORTAL_PASSWORD, RESOURCE_KEY):
        assert secret not in caplog.text
        assert secret not in repr(found) and secret not in repr(endpoint.results)
