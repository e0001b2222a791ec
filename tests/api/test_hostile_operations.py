"""Careless and hostile input on the operation endpoints (decisions §13), on both backends:
a blank or null amount is never "everything", and a cross-site browser request never reaches
the authenticated API.

Every refused request must leave every stored row unchanged (``Expect`` checks that).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from payops.api.app import create_app
from payops.config import Settings
from tests.api.test_auth_limits import metric
from tests.api.test_bad_input import Expect, multipart
from tests.helpers import Seed, asgi_post_scope

PUBLIC_URL = "https://pay.example.com"
LISTED = "https://backoffice.example.com"
E_BLANK = {"amount": ["A valid number is required."]}
E_NULL = {"amount": ["This field may not be null."]}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_url": PUBLIC_URL, "allowed_origins": f"{LISTED}, https://other.example.com"}


@pytest.fixture
async def expect(client: httpx.AsyncClient, seed: Seed) -> Expect:
    """ORD-1 paid 100.000 KWD (refund), ORD-A authorized 100.000 KWD (capture, void); API key."""
    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    await seed.transaction("100.000", "KWD", order_no="ORD-A", mode="authorize")
    return Expect(client, seed, auth)


def targets(operation: str) -> list[tuple[str, str, dict[str, str]]]:
    """(label, path, extra body fields) for v1 and v2 on the order this operation needs."""
    order = "ORD-1" if operation == "refund" else "ORD-A"
    return [
        (f"v1 {operation}", f"/b/pbl/v1/operation/{order}", {}),
        (f"v2 {operation}", "/b/pbl/v2/operation/", {"order_no": order}),
    ]


async def test_blank_or_null_amount_is_a_field_error_never_everything(expect: Expect) -> None:
    for operation in ("refund", "capture"):
        for label, path, extra in targets(operation):
            blank = {"operation": operation, "amount": "", **extra}
            await expect(f"{label} json blank", "POST", path, 400, E_BLANK, json=blank)
            await expect(
                f"{label} json spaces", "POST", path, 400, E_BLANK, json={**blank, "amount": "  "}
            )
            await expect(
                f"{label} json null", "POST", path, 400, E_NULL, json={**blank, "amount": None}
            )
            await expect(f"{label} form blank", "POST", path, 400, E_BLANK, data=blank)
            await expect(
                f"{label} multipart blank", "POST", path, 400, E_BLANK, files=multipart(blank)
            )
            # The empty form field exactly as a browser or curl -d sends it.
            raw = "&".join(f"{k}={v}" for k, v in blank.items()).encode()
            await expect(
                f"{label} raw form `amount=`",
                "POST",
                path,
                400,
                E_BLANK,
                content=raw,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    expect.check()
    # Nothing moved anywhere.
    for order in ("ORD-1", "ORD-A"):
        parent = await expect.seed.find(order)
        assert parent is not None and (parent.captured, parent.refunded) == (0, 0)
        assert await expect.seed.operations(order) == []


async def test_absent_amount_still_means_all_that_remains(expect: Expect) -> None:
    client, auth = expect.client, expect.auth
    refund = await client.post(
        "/b/pbl/v2/operation/", data={"operation": "refund", "order_no": "ORD-1"}, headers=auth
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["amount"] == "100.000"


@pytest.mark.parametrize("amount", ["", None, "garbage", "-5"])
async def test_void_and_cancel_ignore_the_amount(
    expect: Expect,
    seed: Seed,
    amount: Any,
) -> None:
    client, auth = expect.client, expect.auth
    void = await client.post(
        "/b/pbl/v1/operation/ORD-A", json={"operation": "void", "amount": amount}, headers=auth
    )
    assert void.status_code == 200, void.text
    assert void.json()["txn"]["state"] == "voided"
    await seed.transaction("10.000", "KWD", order_no="ORD-C", card=None)
    cancel = await client.post(
        "/b/pbl/v2/operation/",
        headers=auth,
        json={"operation": "cancel", "order_no": "ORD-C", "amount": amount},
    )
    assert cancel.status_code == 200, cancel.text
    if amount is not None:
        form = await client.post(
            "/b/pbl/v2/operation/",
            headers=auth,
            data={"operation": "delete", "order_no": "ORD-C", "amount": amount},
        )
        assert form.status_code == 200, form.text


# -- cross-site requests ----------------------------------------------------------------------

REFUND = {"operation": "refund", "amount": "1.000"}


async def test_cross_site_browser_requests_are_refused(expect: Expect, seed: Seed) -> None:
    # A logged-in browser holds Basic credentials: a hostile page's form carries them along.
    user = await seed.superuser()
    path = "/b/pbl/v1/operation/ORD-1"
    refused = [
        ("cross-site form", {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}),
        ("same-site form", {"Sec-Fetch-Site": "same-site", "Origin": "https://a.pay.example.com"}),
        ("cross-site, no origin", {"Sec-Fetch-Site": "cross-site"}),
        ("cross-site, null origin", {"Sec-Fetch-Site": "cross-site", "Origin": "null"}),
        ("old browser, foreign origin", {"Origin": "https://evil.example"}),
        ("old browser, null origin", {"Origin": "null"}),
        ("old browser, other port", {"Origin": "https://pay.example.com:8443"}),
    ]
    for label, headers in refused:
        expect.auth = {**user, **headers}
        await expect(
            label,
            "POST",
            path,
            403,
            lambda body: set(body) == {"detail"} and body["detail"].startswith("CSRF Failed"),
            data=REFUND,
        )
    # The other authenticated prefixes too, before any authentication.
    expect.auth = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    for path in (
        "/b/checkout/v1/pymt-txn/",
        "/b/pbl/v2/operation/",
        "/b/pbl/v2/inquiry/",
        "/b/payops/v1/operations/review",
        "/b/payops/v1/import/",
    ):
        await expect(
            f"cross-site {path}",
            "POST",
            path,
            403,
            {
                "detail": "CSRF Failed: Origin checking failed - https://evil.example does not match "
                "any trusted origins."
            },
            json={},
        )
    expect.check()
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 0


async def test_same_origin_listed_origins_and_servers_pass(
    client: httpx.AsyncClient,
    seed: Seed,
) -> None:
    user = await seed.superuser()
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    path = "/b/pbl/v1/operation/ORD-1"
    allowed = [
        {},  # curl, SDKs: neither header
        {"Sec-Fetch-Site": "same-origin", "Origin": PUBLIC_URL},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": LISTED},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://OTHER.example.com:443"},
        {"Origin": PUBLIC_URL},
        {"Origin": f"{PUBLIC_URL}:443"},
        {"Origin": LISTED},
    ]
    for headers in allowed:
        response = await client.post(path, data=REFUND, headers={**user, **headers})
        assert response.status_code == 200, (headers, response.text)
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 1000 * len(allowed)


async def test_pages_returns_and_notifications_are_never_guarded(
    client: httpx.AsyncClient,
    seed: Seed,
) -> None:
    parent = await seed.transaction("10.000", "KWD", order_no="ORD-H", card=None)
    hostile = {"Sec-Fetch-Site": "cross-site", "Origin": "https://gateway.example"}
    page = await client.get(f"/checkout/{parent.session_id}", headers=hostile)
    assert page.status_code == 200, page.text
    notice = await client.post(
        "/b/pg/notifications/sandbox-purchase-kwd", content=b"{}", headers=hostile
    )
    assert notice.status_code != 403, notice.text
    assert (await client.get("/healthz", headers=hostile)).status_code == 200


async def test_without_public_url_the_requests_own_origin_is_same_origin(
    settings: Settings,
    seed: Seed,
) -> None:
    user = await seed.superuser()
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    application = create_app(settings.model_copy(update={"public_url": "", "allowed_origins": ""}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            own = await http.post(
                "/b/pbl/v1/operation/ORD-1",
                data=REFUND,
                headers={**user, "Origin": "http://testserver"},
            )
            assert own.status_code == 200, own.text
            foreign = await http.post(
                "/b/pbl/v1/operation/ORD-1", data=REFUND, headers={**user, "Origin": PUBLIC_URL}
            )
            assert foreign.status_code == 403, foreign.text
            listed_nowhere = await http.post(
                "/b/pbl/v1/operation/ORD-1",
                data=REFUND,
                headers={**user, "Sec-Fetch-Site": "cross-site", "Origin": LISTED},
            )
            assert listed_nowhere.status_code == 403


# -- a client that goes away mid-body ----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/b/pbl/v1/operation/ORD-1", "/b/pbl/v2/operation/", "/b/checkout/v1/pymt-txn/"],
)
async def test_a_client_gone_before_its_body_arrived_is_no_server_error(
    app: Any, seed: Seed, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """It declared 100 bytes, sent 18 and hung up: nothing is done, nothing is sent (there is
    nobody to answer), and the log says 499 at INFO, as nginx does, never an error with a
    traceback and a 500 that would page somebody."""
    caplog.set_level(logging.INFO, logger="payops.http")
    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    before = await seed.snapshot()
    incoming = [
        {"type": "http.request", "body": b'{"operation": "ref', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = asgi_post_scope(
        path, {**auth, "Content-Type": "application/json", "Content-Length": "100"}
    )
    await app(scope, receive, send)
    assert sent == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert [line.status for line in lines] == [499]  # type: ignore[attr-defined]
    assert await seed.snapshot() == before
    await metric(app, "payops_http_requests_total")  # sets the metrics token
    token = app.state.ctx.settings.metrics_token
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        exposed = (await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
    assert '",status="499"} 1.0' in exposed
    assert "payops_http_server_errors_total{" not in exposed
