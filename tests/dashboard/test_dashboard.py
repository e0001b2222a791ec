"""The dashboard through httpx: sign-in and sessions, CSRF, permissions on every page and action,
operations that settle exactly as the API's, the CSV export, and the pages' security headers."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from payops.auth.permissions import ADMIN_PERMISSIONS, ALL_PERMISSIONS
from payops.db.models import (
    ApiKey,
    AuditEntry,
    DashboardSession,
    GatewayConfig,
    Operation,
    OutboxEvent,
    PaymentTransaction,
    User,
)
from payops.gateways.service import secret_box
from payops.transactions.service import new_parent
from tests.conftest import basic
from tests.dashboard.conftest import PASSWORD, TRACKING, Operator, csrf_of
from tests.webhooks.receiver import Receiver, receiving

EVERYTHING = sorted(ALL_PERMISSIONS | ADMIN_PERMISSIONS)


async def confirmation(op: Operator, session_id: str, operation: str) -> tuple[str, str]:
    """Open an operation's confirmation form: (tracking key, prefilled amount)."""
    page = await op.get(f"/dashboard/transactions/{session_id}/{operation}")
    assert page.status_code == 200, page.text
    amount = re.search(r'name="amount" value="([^"]*)"', page.text)
    return TRACKING.search(page.text).group(1), amount.group(1) if amount else ""


async def refund(
    op: Operator,
    session_id: str,
    amount: str,
    reason: str = "customer asked",
    key: str | None = None,
) -> httpx.Response:
    if key is None:
        key, _ = await confirmation(op, session_id, "refund")
    return await op.post(
        f"/dashboard/transactions/{session_id}/refund",
        {"amount": amount, "reason": reason, "tracking_key": key},
    )


# -- sign-in and sessions ----------------------------------------------------------------------


async def test_pages_need_sign_in_and_remember_where_to_go(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard/transactions?state=paid")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/dashboard/login?next=%2Fdashboard%2Ftransactions%3Fstate%3Dpaid"
    )
    assert (await client.post("/dashboard/users", data={"username": "x"})).status_code == 303


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_the_session(
    client: httpx.AsyncClient,
    seed: Any,
    ctx: Any,
) -> None:
    await seed.user("alice", PASSWORD, permissions=["payment.inquiry"])
    op = Operator(client)
    wrong = await op.sign_in("alice", "not the password")
    assert wrong.status_code == 400 and "Invalid username or password" in wrong.text
    assert "payops_session" not in client.cookies
    response = await op.sign_in("alice")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    first_token = client.cookies["payops_session"]
    assert (await op.sign_in("alice")).status_code == 303
    assert client.cookies["payops_session"] != first_token, "a new session at every sign-in"
    cookie = response.headers["set-cookie"]
    assert "payops_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http here; https below
    async with ctx.db.read() as session:
        stored = list(await session.scalars(select(DashboardSession)))
    token = client.cookies["payops_session"]
    assert len(stored) == 1 and stored[0].token_hash != token, "only a hash is stored"
    assert (await op.post("/dashboard/logout")).status_code == 303
    async with ctx.db.read() as session:
        assert list(await session.scalars(select(DashboardSession))) == []
    client.cookies.set("payops_session", token, path="/dashboard")
    assert (await client.get("/dashboard")).status_code == 303


async def test_cookie_is_secure_over_https(app: Any, seed: Any) -> None:
    await seed.user("alice", PASSWORD)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await Operator(http).sign_in("alice")
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


async def test_inactive_user_cannot_sign_in(client: httpx.AsyncClient, seed: Any) -> None:
    await seed.user("gone", PASSWORD, active=False)
    response = await Operator(client).sign_in("gone")
    assert response.status_code == 400 and "payops_session" not in client.cookies


async def test_idle_session_expires(operator_for: Any, ctx: Any) -> None:
    op = await operator_for(["payment.inquiry"])
    assert (await op.get("/dashboard/transactions")).status_code == 200
    idle = timedelta(minutes=ctx.settings.dashboard_idle_minutes, seconds=1)
    async with ctx.db.write() as session:
        await session.execute(
            update(DashboardSession).values(last_seen_at=datetime.now(UTC) - idle)
        )
    response = await op.get("/dashboard/transactions")
    assert response.status_code == 303 and response.headers["location"].startswith(
        "/dashboard/login"
    )


async def test_sign_in_form_needs_its_csrf_token(client: httpx.AsyncClient, seed: Any) -> None:
    await seed.user("alice", PASSWORD)
    response = await client.post(
        "/dashboard/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403 and "payops_session" not in client.cookies


async def test_next_never_leaves_the_dashboard(client: httpx.AsyncClient, seed: Any) -> None:
    await seed.user("alice", PASSWORD)
    page = await client.get("/dashboard/login?next=//evil.example/x")
    response = await client.post(
        "/dashboard/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "alice",
            "password": PASSWORD,
            "next": "https://evil.example/",
        },
    )
    assert response.headers["location"] == "/dashboard"


# -- CSRF --------------------------------------------------------------------------------------


async def test_forms_without_the_session_csrf_token_are_refused(
    operator_for: Any,
    seed: Any,
) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-1")
    admin = await operator_for(superuser=True)
    key, _ = await confirmation(admin, parent.session_id, "refund")
    before = await seed.snapshot()
    users_before = await seed.count(User)
    for csrf in ("", "forged-token"):
        response = await admin.post(
            f"/dashboard/transactions/{parent.session_id}/refund",
            {"amount": "5.000", "reason": "x", "tracking_key": key},
            csrf=csrf,
        )
        assert response.status_code == 403, response.text
        assert "security token" in response.text
        response = await admin.post(
            "/dashboard/users", {"username": "mallory", "password": "long enough pw"}, csrf=csrf
        )
        assert response.status_code == 403
    assert await seed.snapshot() == before
    assert await seed.count(User) == users_before


async def test_a_form_posted_from_another_site_is_refused(operator_for: Any, seed: Any) -> None:
    admin = await operator_for(superuser=True)
    response = await admin.http.post(
        "/dashboard/users",
        data={"csrf_token": admin.csrf, "username": "mallory", "password": "long enough pw"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    async with seed.ctx.db.read() as session:
        assert await session.scalar(select(User).where(User.username == "mallory")) is None


# -- permissions -------------------------------------------------------------------------------


async def _world(seed: Any) -> dict[str, str]:
    """One of everything the pages act on."""
    parent = await seed.transaction("100.000", order_no="ORD-1", mode="authorize")
    paid = await seed.transaction("50.000", order_no="ORD-2")
    async with seed.ctx.db.write() as session:
        event = OutboxEvent(
            event_id="evt-1",
            kind="payment",
            target_url="http://127.0.0.1:9/",
            payload={"order_no": "ORD-1"},
            transaction_id=parent.id,
            state="failed",
            attempts=3,
        )
        session.add(event)
        await session.flush()
        event_id = event.id
    await seed.user("victim", PASSWORD, permissions=["payment.inquiry"])
    await seed.api_key()
    async with seed.ctx.db.read() as session:
        prefix = (await session.scalar(select(ApiKey))).prefix
    return {
        "sid": parent.session_id,
        "paid": paid.session_id,
        "event": str(event_id),
        "prefix": prefix,
    }


# (method, path template, form, the permission it needs)
CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/dashboard/transactions", {}, "payment.inquiry"),
    ("GET", "/dashboard/transactions.csv", {}, "payment.inquiry"),
    ("GET", "/dashboard/transactions/{sid}", {}, "payment.inquiry"),
    ("GET", "/dashboard/transactions/{sid}/capture", {}, "payment.capture"),
    ("GET", "/dashboard/transactions/{paid}/refund", {}, "payment.refund"),
    ("GET", "/dashboard/transactions/{sid}/void", {}, "payment.void"),
    (
        "POST",
        "/dashboard/transactions/{sid}/capture",
        {"amount": "1.000", "reason": "r", "tracking_key": "dash-" + "a" * 32},
        "payment.capture",
    ),
    (
        "POST",
        "/dashboard/transactions/{paid}/refund",
        {"amount": "1.000", "reason": "r", "tracking_key": "dash-" + "b" * 32},
        "payment.refund",
    ),
    (
        "POST",
        "/dashboard/transactions/{sid}/void",
        {"reason": "r", "tracking_key": "dash-" + "c" * 32},
        "payment.void",
    ),
    (
        "POST",
        "/dashboard/transactions/{sid}/cancel",
        {"reason": "r", "tracking_key": "dash-" + "d" * 32},
        "payment.cancel",
    ),
    ("GET", "/dashboard/review", {}, "payment.resolve"),
    ("POST", "/dashboard/review/NOSUCHREFERENCE1/recheck", {}, "payment.resolve"),
    (
        "POST",
        "/dashboard/review/NOSUCHREFERENCE1/resolve",
        {"outcome": "failed", "reason": "r"},
        "payment.resolve",
    ),
    ("GET", "/dashboard/webhooks", {}, "payment.inquiry"),
    ("GET", "/dashboard/webhooks/{event}", {}, "payment.inquiry"),
    ("POST", "/dashboard/webhooks/{event}/retry", {}, "payment.inquiry"),
    ("GET", "/dashboard/gateways", {}, "admin.gateways"),
    ("GET", "/dashboard/gateways/sandbox-authorize-kwd", {}, "admin.gateways"),
    ("POST", "/dashboard/gateways/sandbox-authorize-kwd", {"enabled": "on"}, "admin.gateways"),
    ("GET", "/dashboard/api-keys", {}, "admin.api_keys"),
    ("POST", "/dashboard/api-keys", {"name": "k"}, "admin.api_keys"),
    ("POST", "/dashboard/api-keys/{prefix}/revoke", {}, "admin.api_keys"),
    ("GET", "/dashboard/users", {}, "admin.users"),
    ("GET", "/dashboard/users/victim", {}, "admin.users"),
    ("POST", "/dashboard/users", {"username": "new1", "password": "long enough"}, "admin.users"),
    (
        "POST",
        "/dashboard/users/victim/permissions",
        {"permission": "payment.inquiry"},
        "admin.users",
    ),
    ("POST", "/dashboard/users/victim/active", {"active": "no"}, "admin.users"),
    ("POST", "/dashboard/users/victim/password", {"password": "a new password"}, "admin.users"),
    ("GET", "/dashboard/audit", {}, "audit.view"),
]


async def test_each_page_and_action_answers_403_without_its_permission(
    operator_for: Any,
    seed: Any,
) -> None:
    world = await _world(seed)
    before = await seed.snapshot()
    users_before = await seed.count(User)
    for method, template, form, needed in CASES:
        # Everything except the one code the page needs.
        op = await operator_for([c for c in EVERYTHING if c != needed])
        path = template.format(**world)
        if method == "GET":
            response = await op.get(path)
        else:
            response = await op.post(path, form)
        assert response.status_code == 403, (method, path, response.status_code, response.text)
        assert "Not allowed" in response.text
    assert await seed.snapshot() == before, "a refused action changed nothing"
    async with seed.ctx.db.read() as session:
        victim = await session.scalar(select(User).where(User.username == "victim"))
        assert victim.is_active and [p.code for p in victim.permissions] == ["payment.inquiry"]
        assert (await session.scalar(select(ApiKey))).revoked_at is None
        gateway = await session.scalar(
            select(GatewayConfig).where(GatewayConfig.pg_code == "sandbox-authorize-kwd")
        )
        assert gateway.is_enabled
    # The users the loop signed in are the only new users.
    assert await seed.count(User) == users_before + len(CASES)


async def test_the_same_pages_open_with_the_permission(operator_for: Any, seed: Any) -> None:
    world = await _world(seed)
    for method, template, _, needed in CASES:
        if method != "GET":
            continue
        op = await operator_for(sorted({"payment.inquiry", needed}))
        response = await op.get(template.format(**world))
        assert response.status_code == 200, (template, response.text)


async def test_buttons_and_links_follow_the_permissions(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-1")
    viewer = await operator_for(["payment.inquiry"])
    page = (await viewer.get(f"/dashboard/transactions/{parent.session_id}")).text
    assert f"/dashboard/transactions/{parent.session_id}/refund" not in page
    assert "/dashboard/users" not in page and "/dashboard/audit" not in page
    refunder = await operator_for(["payment.inquiry", "payment.refund"])
    page = (await refunder.get(f"/dashboard/transactions/{parent.session_id}")).text
    assert f"/dashboard/transactions/{parent.session_id}/refund" in page
    assert f"/dashboard/transactions/{parent.session_id}/void" not in page  # paid: no void


async def test_api_keys_hold_no_dashboard_or_operator_permission(ctx: Any, seed: Any) -> None:
    header = await seed.api_key()
    principal = await ctx.authenticator.authenticate(header["Authorization"], "127.0.0.1")
    assert not principal.permissions & ADMIN_PERMISSIONS
    assert "payment.resolve" not in principal.permissions
    assert "payment.refund" in principal.permissions


# -- operations --------------------------------------------------------------------------------


async def test_refund_form_is_prefilled_and_needs_a_reason(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-1")
    op = await operator_for(["payment.inquiry", "payment.refund"])
    key, amount = await confirmation(op, parent.session_id, "refund")
    assert amount == "100.000"
    response = await refund(op, parent.session_id, "5.000", reason="  ", key=key)
    assert response.status_code == 400 and "Give a reason" in response.text
    response = await refund(op, parent.session_id, "500.000", key=key)
    assert response.status_code == 400
    assert "Amount exceeds the refundable amount (100.000 KWD)" in response.text
    assert await seed.operations() == []


async def test_a_dashboard_refund_settles_exactly_like_the_api(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    await seed.user("api-user", PASSWORD, permissions=["payment.refund"])
    await seed.set_hmac_key("k" * 32)
    await seed.transaction("100.000", order_no="API-1", webhook_url="http://127.0.0.1:9/w")
    via_dash = await seed.transaction(
        "100.000", order_no="DASH-1", webhook_url="http://127.0.0.1:9/w"
    )
    answer = await client.post(
        "/b/pbl/v1/operation/API-1",
        headers=basic("api-user", PASSWORD),
        json={"operation": "refund", "amount": "12.500"},
    )
    assert answer.status_code == 200, answer.text
    op = await operator_for(["payment.inquiry", "payment.refund"], username="dash-user")
    response = await refund(op, via_dash.session_id, "12.500")
    assert response.status_code == 303
    page = await op.get(response.headers["location"])
    assert "Refund" in page.text and "succeeded" in page.text

    (api_op,), (dash_op,) = await seed.operations("API-1"), await seed.operations("DASH-1")
    for field in ("operation", "state", "amount", "currency_code", "source"):
        assert getattr(api_op, field) == getattr(dash_op, field), field
    assert api_op.initiator["username"] == "api-user"
    assert dash_op.initiator["username"] == "dash-user"
    assert dash_op.tracking_key and dash_op.tracking_key.startswith("dash-")
    api_parent, dash_parent = await seed.find("API-1"), await seed.find("DASH-1")
    for field in ("state", "refunded", "captured", "voided", "paid_total"):
        assert getattr(api_parent, field) == getattr(dash_parent, field), field
    events = await seed.outbox()
    api_events = [e for e in events if e.transaction_id == api_parent.id]
    dash_events = [e for e in events if e.transaction_id == dash_parent.id]
    # The payment's own webhook, then the refund's.
    assert [e.kind for e in api_events] == [e.kind for e in dash_events] == ["payment", "operation"]
    assert set(api_events[1].payload) == set(dash_events[1].payload)
    assert dash_events[1].payload["amount"] == "12.500"
    assert dash_events[1].payload["txn"]["state"] == "refunded"
    audit = await seed.audit()
    api_actions = [(a.action, a.result) for a in audit if a.transaction_id == api_parent.id]
    dash_rows = [a for a in audit if a.transaction_id == dash_parent.id]
    # The service's own rows, identical; then the dashboard's with the reason and address.
    assert [(a.action, a.result) for a in dash_rows[: len(api_actions)]] == api_actions
    extra = dash_rows[len(api_actions) :]
    assert [(a.action, a.result) for a in extra] == [("dashboard.refund", "success")]
    assert extra[0].details["reason"] == "customer asked"
    assert extra[0].details["address"] == "127.0.0.1"


async def test_a_double_submitted_refund_moves_money_once(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-1")
    op = await operator_for(["payment.inquiry", "payment.refund"])
    key, _ = await confirmation(op, parent.session_id, "refund")
    first, second = await asyncio.gather(
        refund(op, parent.session_id, "30.000", key=key),
        refund(op, parent.session_id, "30.000", key=key),
    )
    third = await refund(op, parent.session_id, "30.000", key=key)  # the browser's "resubmit"
    assert {first.status_code, second.status_code} <= {303, 409}
    assert third.status_code == 303
    operations = await seed.operations()
    assert len(operations) == 1 and operations[0].state == "succeeded"
    assert (await seed.find()).refunded == 30_000
    assert operations[0].reference_number in third.headers["location"]


@pytest.mark.parametrize("settings_overrides", [{"sandbox_latency_ms": 600}])
async def test_a_double_click_shows_the_first_submissions_operation(
    operator_for: Any, seed: Any, settings_overrides: dict[str, Any]
) -> None:
    # The gateway is slow, so the second click arrives while the first is still running: it
    # must land on the transaction page with that operation, never on an error page.
    parent = await seed.transaction("100.000", order_no="ORD-1")
    op = await operator_for(["payment.inquiry", "payment.refund"])
    key, _ = await confirmation(op, parent.session_id, "refund")
    first, second = await asyncio.gather(
        refund(op, parent.session_id, "30.000", key=key),
        refund(op, parent.session_id, "30.000", key=key),
    )
    [operation] = await seed.operations()
    assert operation.state == "succeeded" and (await seed.find()).refunded == 30_000
    for response in (first, second):
        assert response.status_code == 303, response.text
        assert f"done={operation.reference_number}" in response.headers["location"]


async def test_capture_and_void_through_their_confirmations(operator_for: Any, seed: Any) -> None:
    first = await seed.transaction("100.000", order_no="AUTH-1", mode="authorize")
    second = await seed.transaction("40.000", order_no="AUTH-2", mode="authorize")
    op = await operator_for(["payment.inquiry", "payment.capture", "payment.void"])
    key, amount = await confirmation(op, first.session_id, "capture")
    assert amount == "100.000"
    response = await op.post(
        f"/dashboard/transactions/{first.session_id}/capture",
        {"amount": "60.000", "reason": "shipped", "tracking_key": key},
    )
    assert response.status_code == 303
    assert (await seed.find("AUTH-1")).captured == 60_000
    key, _ = await confirmation(op, second.session_id, "void")
    response = await op.post(
        f"/dashboard/transactions/{second.session_id}/void",
        {"reason": "out of stock", "tracking_key": key},
    )
    assert response.status_code == 303
    assert (await seed.find("AUTH-2")).voided == 40_000
    # Nothing to void any more: no button, and the form is not drawn.
    page = await op.get(f"/dashboard/transactions/{second.session_id}")
    assert f"{second.session_id}/void" not in page.text
    assert (await op.get(f"/dashboard/transactions/{second.session_id}/void")).status_code == 409


async def test_cancel_of_an_unpaid_transaction(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("10.000", order_no="ORD-C", card=None)
    op = await operator_for(["payment.inquiry", "payment.cancel"])
    page = await op.get(f"/dashboard/transactions/{parent.session_id}/cancel")
    key = TRACKING.search(page.text).group(1)
    response = await op.post(
        f"/dashboard/transactions/{parent.session_id}/cancel",
        {"reason": "duplicate order", "tracking_key": key},
    )
    assert response.status_code == 303
    assert (await seed.find("ORD-C")).state == "canceled"
    page = await op.get(response.headers["location"])
    assert "Operation done successfully" in page.text and "canceled" in page.text
    forged = await op.get(
        f"/dashboard/transactions/{parent.session_id}",
        params={"notice": "Call 555-0100 to confirm"},
    )
    assert "555-0100" not in forged.text


async def test_detail_shows_timeline_attempts_webhooks_and_audit(
    operator_for: Any,
    seed: Any,
) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-1", webhook_url="http://127.0.0.1:9/")
    op = await operator_for(["payment.inquiry", "payment.refund"], username="carol")
    await refund(op, parent.session_id, "7.000")
    (operation,) = await seed.operations()
    page = (await op.get(f"/dashboard/transactions/{parent.session_id}")).text
    assert operation.reference_number in page and "by carol" in page
    assert "source <code>input</code>" in page
    attempt_ref = await seed_attempt_reference(seed, parent.id)
    assert attempt_ref in page
    assert "/dashboard/webhooks/" in page  # the operation webhook
    assert "dashboard.refund" in page and "reason=customer asked" in page
    assert "<dt>Refunded</dt><dd>7.000</dd>" in page
    assert "<dt>Remaining (paid less refunded)</dt><dd>93.000</dd>" in page


async def seed_attempt_reference(seed: Any, parent_id: int) -> str:
    from payops.transactions import repository

    async with seed.ctx.db.read() as session:
        return (await repository.attempts(session, parent_id))[0].reference_number


# -- transactions list and export --------------------------------------------------------------


async def _many(seed: Any, count: int, **fields: Any) -> None:
    async with seed.ctx.db.write() as session:
        for index in range(count):
            session.add(
                new_parent(
                    amount=1000 + index,
                    currency_code=fields.get("currency", "KWD"),
                    pg_codes=["x"],
                    order_no=f"{fields.get('prefix', 'BULK')}-{index:03d}",
                )
            )


async def test_list_pages_by_keyset_without_gaps_or_repeats(operator_for: Any, seed: Any) -> None:
    await _many(seed, 57)
    op = await operator_for(["payment.inquiry"])
    seen: list[str] = []
    path = "/dashboard/transactions?state=created"
    while path:
        page = (await op.get(path)).text
        seen += re.findall(r">(BULK-\d{3})</a>", page)
        following = re.search(r'rel="next" href="([^"]+)"', page)
        path = following.group(1).replace("&amp;", "&") if following else ""
    assert len(seen) == 57 and len(set(seen)) == 57
    assert seen == sorted(seen, reverse=True), "newest first"


async def test_search_finds_by_each_identifier(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("100.000", order_no="FIND-ME")
    await seed.transaction("100.000", order_no="OTHER")
    async with seed.ctx.db.write() as session:
        stored = await session.get(PaymentTransaction, parent.id)
        stored.customer = {"customer_email": "Buyer@Example.com"}
    op = await operator_for(["payment.inquiry", "payment.refund"])
    await refund(op, parent.session_id, "1.000")
    (operation,) = await seed.operations("FIND-ME")
    attempt = await seed_attempt_reference(seed, parent.id)
    for query in (
        "FIND-ME",
        parent.session_id,
        attempt,
        operation.reference_number,
        "buyer@example.com",
    ):
        page = (await op.get("/dashboard/transactions", params={"q": query})).text
        assert ">FIND-ME</a>" in page and ">OTHER</a>" not in page, query


async def test_date_filters_and_cursors_at_their_limits_answer_not_500(
    operator_for: Any,
    seed: Any,
) -> None:
    # "to=9999-12-31" asked for the day after it (OverflowError): the list answered 500 and the
    # CSV export broke off mid-stream; a keyset cursor beyond 64 bits overflowed the query.
    await seed.transaction("10.000", order_no="ORD-END")
    op = await operator_for(["payment.inquiry", "audit.view"])
    for path in ("/dashboard/transactions", "/dashboard/audit", "/dashboard/webhooks"):
        for cursor in ("99999999999999999999", "9223372036854775808"):
            page = await op.get(path, params={"before": cursor})
            assert page.status_code == 200, (path, cursor, page.status_code)
    for params in (
        {"to": "9999-12-31"},
        {"from": "0001-01-01", "to": "9999-12-31"},
        {"from": "9999-12-31"},
    ):
        listing = await op.get("/dashboard/transactions", params=params)
        assert listing.status_code == 200, (params, listing.status_code)
        export = await op.get("/dashboard/transactions.csv", params=params)
        assert export.status_code == 200, params
        assert ("ORD-END" in export.text) == ("from" not in params or params["from"] < "2000"), (
            params
        )


async def test_csv_export_matches_the_filter_and_escapes_formulas(
    operator_for: Any,
    seed: Any,
) -> None:
    await _many(seed, 5, prefix="KWD")
    await _many(seed, 3, prefix="USD", currency="USD")
    await seed.transaction("10.000", order_no='=HYPERLINK("http://x")')
    async with seed.ctx.db.write() as session:
        row = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.order_no == "KWD-001")
        )
        row.customer = {"customer_email": "@evil"}
        row = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.order_no == "KWD-002")
        )
        row.customer = {"customer_email": "  =1+1"}  # some spreadsheets trim the blanks
        row = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.order_no == "KWD-003")
        )
        row.customer = {"customer_email": "\uff1dcmd"}  # a full-width equals sign
    op = await operator_for(["payment.inquiry"])
    response = await op.get(
        "/dashboard/transactions.csv", params={"currency": "KWD", "state": "created"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["order_no"] for r in rows) == [f"KWD-{i:03d}" for i in range(5)]
    listed = re.findall(
        r">(KWD-\d{3})</a>",
        (
            await op.get("/dashboard/transactions", params={"currency": "KWD", "state": "created"})
        ).text,
    )
    assert [r["order_no"] for r in rows] == listed
    assert {r["customer_email"] for r in rows} == {"", "'@evil", "'  =1+1", "'\uff1dcmd"}
    everything = list(
        csv.DictReader(io.StringIO((await op.get("/dashboard/transactions.csv")).text))
    )
    assert len(everything) == 9
    assert '\'=HYPERLINK("http://x")' in {r["order_no"] for r in everything}
    assert {r["currency_code"] for r in everything} == {"KWD", "USD"}


async def test_date_filter(operator_for: Any, seed: Any) -> None:
    await _many(seed, 2, prefix="NEW")
    await _many(seed, 2, prefix="OLD")
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.order_no.like("OLD-%"))
            .values(created_at=datetime.now(UTC) - timedelta(days=10))
        )
    op = await operator_for(["payment.inquiry"])
    today = datetime.now(UTC).date()
    page = (await op.get("/dashboard/transactions", params={"from": today.isoformat()})).text
    assert ">NEW-000</a>" in page and ">OLD-000</a>" not in page
    page = (
        await op.get(
            "/dashboard/transactions", params={"to": (today - timedelta(days=5)).isoformat()}
        )
    ).text
    assert ">NEW-000</a>" not in page and ">OLD-000</a>" in page


# -- home ----------------------------------------------------------------------------------------


async def test_home_counts_and_links_to_the_lists(operator_for: Any, seed: Any) -> None:
    await seed.transaction("100.000", order_no="P1")
    await seed.transaction("100.000", order_no="P2")
    op = await operator_for(["payment.inquiry", "payment.refund"])
    await refund(op, (await seed.find("P1")).session_id, "1.000")
    page = (await op.get("/dashboard")).text
    today = datetime.now(UTC).date().isoformat()
    assert (
        f'href="/dashboard/transactions?state=paid&amp;from={today}"><span class="n">2</span> paid'
        in page
    )
    link = (
        f"/dashboard/transactions?operation=refund&amp;operation_state=succeeded&amp;from={today}"
    )
    assert f'href="{link}">1</a>' in page
    listed = (await op.get(link.replace("&amp;", "&"))).text
    assert ">P1</a>" in listed and ">P2</a>" not in listed
    assert "<svg" in page and 'class="bar"' in page
    assert 'href="/dashboard/webhooks?state=failed"' in page
    assert 'href="/dashboard/review"' not in page  # no payment.resolve: counts without links
    bare = await operator_for([])
    page = (await bare.get("/dashboard")).text
    assert "/dashboard/transactions" not in page and "/dashboard/webhooks" not in page
    assert 'class="n">2</span> paid' in page


# -- needs review --------------------------------------------------------------------------------


async def _stuck_refund(seed: Any, client: httpx.AsyncClient, order_no: str) -> Operation:
    """A refund the sandbox times out on (…994: nothing done), then left for a human."""
    await seed.transaction("100.000", order_no=order_no)
    await seed.user(f"api-{order_no}", PASSWORD, permissions=["payment.refund"])
    answer = await client.post(
        f"/b/pbl/v1/operation/{order_no}",
        headers=basic(f"api-{order_no}", PASSWORD),
        json={"operation": "refund", "amount": "0.994"},
    )
    assert answer.status_code == 504, answer.text
    async with seed.ctx.db.write() as session:
        await session.execute(update(Operation).values(state="needs_review", claimed_until=None))
    (operation,) = await seed.operations(order_no)
    return operation


async def test_review_resolve_as_failed_releases_the_reservation(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    stuck = await _stuck_refund(seed, client, "ORD-R")
    op = await operator_for(["payment.resolve", "payment.inquiry"], username="reviewer")
    page = (await op.get("/dashboard/review")).text
    assert stuck.reference_number in page and "Resolve" in page
    response = await op.post(
        f"/dashboard/review/{stuck.reference_number}/resolve", {"outcome": "failed", "reason": " "}
    )
    assert response.status_code == 400
    response = await op.post(
        f"/dashboard/review/{stuck.reference_number}/resolve",
        {"outcome": "failed", "reason": "gateway report shows nothing", "evidence": "ticket 42"},
    )
    assert response.status_code == 303, response.text
    (after,) = await seed.operations("ORD-R")
    assert after.state == "rejected"  # a refund decided as failed: rejected, as the gateway says
    assert after.resolution["actor"] == "reviewer"
    assert (await seed.find("ORD-R")).refunded == 0
    assert stuck.reference_number not in (await op.get("/dashboard/review")).text
    # Resolving twice is refused, and changes nothing.
    again = await op.post(
        f"/dashboard/review/{stuck.reference_number}/resolve",
        {"outcome": "succeeded", "reason": "changed my mind"},
    )
    assert again.status_code == 400
    assert (await seed.operations("ORD-R"))[0].state == "rejected"


async def test_review_ask_the_gateway_now(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    stuck = await _stuck_refund(seed, client, "ORD-Q")
    op = await operator_for(["payment.resolve"])
    response = await op.post(f"/dashboard/review/{stuck.reference_number}/recheck")
    assert response.status_code == 303, response.text
    page = (await op.get(response.headers["location"])).text
    assert stuck.reference_number in page
    audit = await seed.audit()
    assert any(
        a.action == "dashboard.recheck" and a.details.get("address") == "127.0.0.1" for a in audit
    )


# -- webhooks ------------------------------------------------------------------------------------


async def test_retry_now_sends_a_failed_event_again(operator_for: Any, seed: Any) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-W")
    op = await operator_for(["payment.inquiry"])
    with receiving(Receiver(script=[410])) as receiver:
        async with seed.ctx.db.write() as session:
            event = OutboxEvent(
                event_id="evt-retry",
                kind="payment",
                target_url=receiver.url,
                payload={"order_no": "ORD-W", "amount": "100.000"},
                transaction_id=parent.id,
            )
            session.add(event)
            await session.flush()
            event_id = event.id
        # A pending event may be in a worker's hands: it is not retried by hand.
        assert (await op.post(f"/dashboard/webhooks/{event_id}/retry")).status_code == 409
        assert "Retry now" not in (await op.get(f"/dashboard/webhooks/{event_id}")).text
        async with seed.ctx.db.write() as session:
            await session.execute(update(OutboxEvent).values(state="failed", attempts=10))
        response = await op.post(f"/dashboard/webhooks/{event_id}/retry")
        assert response.status_code == 303
        page = (await op.get(f"/dashboard/webhooks/{event_id}")).text
        assert "failed" in page and "410" in page and "Retry now" in page
        response = await op.post(f"/dashboard/webhooks/{event_id}/retry")
        assert response.status_code == 303
    page = (await op.get(f"/dashboard/webhooks/{event_id}")).text
    assert 'class="state s-delivered">delivered' in page and '"amount": "100.000"' in page
    assert len(receiver.received) == 2 and len(receiver.delivered) == 1
    assert "Retry now" not in page
    assert (await op.post(f"/dashboard/webhooks/{event_id}/retry")).status_code == 409
    listed = (await op.get("/dashboard/webhooks?state=delivered")).text
    assert f"/dashboard/webhooks/{event_id}" in listed


# -- administration ------------------------------------------------------------------------------


async def test_users_create_grant_revoke_deactivate_and_reset_password(
    operator_for: Any,
    seed: Any,
    app: Any,
) -> None:
    admin = await operator_for(superuser=True, username="root")
    response = await admin.post(
        "/dashboard/users",
        {"username": "dave", "password": "first password", "permission": "payment.inquiry"},
    )
    assert response.status_code == 303
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 41000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        dave = Operator(http)
        assert (await dave.sign_in("dave", "first password")).status_code == 303
        assert (await dave.get("/dashboard/users")).status_code == 403
        response = await admin.post(
            "/dashboard/users/dave/permissions", {"permission": ["admin.users", "audit.view"]}
        )
        assert response.status_code == 303
        # A permission change ends the user's sessions: they sign in again with the new rights.
        assert (await dave.get("/dashboard/users")).status_code == 303
        assert (await dave.sign_in("dave", "first password")).status_code == 303
        assert (await dave.get("/dashboard/users")).status_code == 200
        assert (await dave.get("/dashboard/transactions")).status_code == 403  # revoked
        # Dave manages users but cannot hand out what he does not hold, nor make superusers.
        refused = await dave.post(
            "/dashboard/users",
            {"username": "eve", "password": "long enough", "permission": "payment.refund"},
        )
        assert refused.status_code == 403
        refused = await dave.post(
            "/dashboard/users", {"username": "eve", "password": "long enough", "superuser": "on"}
        )
        assert refused.status_code == 403
        assert (
            await dave.post("/dashboard/users/root/password", {"password": "taken over!"})
        ).status_code == 403
        response = await admin.post(
            "/dashboard/users/dave/password", {"password": "second password"}
        )
        assert response.status_code == 303
        assert (await dave.get("/dashboard/users")).status_code == 303, "session ended"
        assert (await dave.sign_in("dave", "first password")).status_code == 400
        assert (await dave.sign_in("dave", "second password")).status_code == 303
        response = await admin.post("/dashboard/users/dave/active", {"active": "no"})
        assert response.status_code == 303
        assert (await dave.get("/dashboard/users")).status_code == 303
        assert (await dave.sign_in("dave", "second password")).status_code == 400
    short = await admin.post("/dashboard/users/dave/password", {"password": "short"})
    assert short.status_code == 400
    actions = [
        (a.action, a.actor, a.details.get("address"))
        for a in await seed.audit()
        if a.details.get("username") == "dave"
    ]
    for action in (
        "user.create",
        "user.grant",
        "user.revoke",
        "dashboard.user.set_password",
        "dashboard.user.deactivate",
    ):
        assert (action, "root", "127.0.0.1") in actions, action


async def test_a_user_admin_cannot_take_over_a_user_holding_more(
    operator_for: Any,
    seed: Any,
    app: Any,
) -> None:
    # admin.users alone once reset the password of a colleague holding payment.resolve and
    # admin.api_keys; signing in as them was a grant of what the admin does not hold.
    admin = await operator_for(["admin.users", "payment.refund"], username="dave")
    await seed.user(
        "bigger",
        "their own password",
        permissions=["payment.refund", "payment.resolve", "admin.api_keys"],
    )
    await seed.user("smaller", "their own password", permissions=["payment.refund"])
    page = (await admin.get("/dashboard/users/bigger")).text
    assert "/dashboard/users/bigger/password" not in page and "/active" not in page
    assert "/dashboard/users/smaller/password" in (await admin.get("/dashboard/users/smaller")).text
    before = {a.id for a in await seed.audit()}
    for path, form in (
        ("/dashboard/users/bigger/password", {"password": "taken over!"}),
        ("/dashboard/users/bigger/active", {"active": "no"}),
        ("/dashboard/users/bigger/permissions", {"permission": ["payment.refund", "admin.users"]}),
    ):
        response = await admin.post(path, form)
        assert response.status_code == 403, (path, response.status_code)
    assert [a for a in await seed.audit() if a.id not in before] == []
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 41001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        bigger = Operator(http)
        assert (await bigger.sign_in("bigger", "taken over!")).status_code == 400
        assert (await bigger.sign_in("bigger", "their own password")).status_code == 303
    # Users whose permissions the admin holds are still managed as before.
    response = await admin.post("/dashboard/users/smaller/password", {"password": "a new one!"})
    assert response.status_code == 303


async def test_api_keys_are_shown_once_and_revoked(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    await seed.transaction("100.000", order_no="ORD-K")
    admin = await operator_for(superuser=True)
    response = await admin.post("/dashboard/api-keys", {"name": "shop", "expires_in_days": "30"})
    assert response.status_code == 200
    key = re.search(r'id="new-key" class="secret" readonly value="([^"]+)"', response.text).group(1)
    prefix = key.split(".")[0]
    inquiry = await client.post(
        "/b/pbl/v1/inquiry/ORD-K", headers={"Authorization": f"Api-Key {key}"}
    )
    assert inquiry.status_code == 200
    listing = (await admin.get("/dashboard/api-keys")).text
    assert prefix in listing and key not in listing
    assert (await admin.post(f"/dashboard/api-keys/{prefix}/revoke")).status_code == 303
    inquiry = await client.post(
        "/b/pbl/v1/inquiry/ORD-K", headers={"Authorization": f"Api-Key {key}"}
    )
    assert inquiry.status_code == 401
    keeper = await operator_for(["admin.api_keys"])
    assert (await keeper.get("/dashboard/api-keys")).status_code == 200
    refused = await keeper.post("/dashboard/api-keys", {"name": "mine"})
    assert refused.status_code == 403 and "Only a superuser" in refused.text
    actions = {(a.action, a.details.get("prefix")) for a in await seed.audit()}
    assert {("api_key.create", prefix), ("api_key.revoke", prefix)} <= actions
    assert all(key.split(".")[1] not in str(a.details) for a in await seed.audit())


async def test_hostile_ids_and_credentials_are_refused_not_500(
    operator_for: Any,
    seed: Any,
    ctx: Any,
) -> None:
    # An event id beyond 64 bits reached the query, and deeply nested credentials JSON raised
    # RecursionError: both answered 500.
    await seed.gateway("sandbox-kwd")
    admin = await operator_for(superuser=True)
    for event_id in ("99999999999999999999999", "9223372036854775808", "0"):
        for response in (
            await admin.get(f"/dashboard/webhooks/{event_id}"),
            await admin.post(f"/dashboard/webhooks/{event_id}/retry"),
        ):
            assert 400 <= response.status_code < 500, (event_id, response.status_code)
    async with ctx.db.read() as session:
        before = (
            await session.scalar(
                select(GatewayConfig).where(GatewayConfig.pg_code == "sandbox-kwd")
            )
        ).credentials_encrypted
    response = await admin.post(
        "/dashboard/gateways/sandbox-kwd",
        {
            "enabled": "on",
            "operation": ["refund"],
            "credentials": '{"a":' * 2000 + "1" + "}" * 2000,
        },
    )
    assert response.status_code == 400 and "Credentials must be a JSON object." in response.text
    async with ctx.db.read() as session:
        after = (
            await session.scalar(
                select(GatewayConfig).where(GatewayConfig.pg_code == "sandbox-kwd")
            )
        ).credentials_encrypted
    assert after == before


async def test_gateways_enable_operations_and_credentials_never_shown(
    operator_for: Any,
    seed: Any,
    ctx: Any,
) -> None:
    await seed.gateway("sandbox-kwd")
    admin = await operator_for(["admin.gateways"])
    page = (await admin.get("/dashboard/gateways/sandbox-kwd")).text
    assert "stored, encrypted (never shown)" in page
    response = await admin.post(
        "/dashboard/gateways/sandbox-kwd",
        {"operation": ["refund"], "credentials": '{"api_secret": "s3cret-value"}'},
    )
    assert response.status_code == 303
    async with ctx.db.read() as session:
        gateway = await session.scalar(
            select(GatewayConfig).where(GatewayConfig.pg_code == "sandbox-kwd")
        )
    assert not gateway.is_enabled and gateway.enabled_operations == ["refund"]
    assert secret_box(ctx.settings).open(gateway.credentials_encrypted) == {
        "api_secret": "s3cret-value"
    }
    page = (await admin.get("/dashboard/gateways/sandbox-kwd")).text
    assert "s3cret-value" not in page
    bad = await admin.post(
        "/dashboard/gateways/sandbox-kwd", {"enabled": "on", "operation": ["teleport"]}
    )
    assert bad.status_code == 400
    (row,) = [a for a in await seed.audit() if a.action == "gateway.update"]
    assert row.details["credentials_replaced"] == ["api_secret"]
    assert "s3cret-value" not in str(row.details)
    assert row.details["address"] == "127.0.0.1"


async def test_audit_log_lists_admin_actions_with_address(operator_for: Any, seed: Any) -> None:
    admin = await operator_for(superuser=True, username="root")
    await admin.post("/dashboard/users", {"username": "zed", "password": "long enough"})
    auditor = await operator_for(["audit.view"])
    page = (await auditor.get("/dashboard/audit", params={"action": "user.create"})).text
    assert "user.create" in page and "root" in page and "127.0.0.1" in page
    page = (await auditor.get("/dashboard/audit", params={"action": "dashboard.sign_in"})).text
    assert "dashboard.sign_in" in page


# -- page hygiene --------------------------------------------------------------------------------

OUTSIDE = re.compile(
    r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)""", re.I
)


async def test_no_page_references_an_outside_url_and_each_is_locked_down(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    world = await _world(seed)
    admin = await operator_for(superuser=True)
    paths = ["/dashboard/login"] + [
        template.format(**world)
        for method, template, _, _ in CASES
        if method == "GET" and not template.endswith(".csv")
    ]
    paths += ["/dashboard", f"/dashboard/transactions/{world['paid']}"]
    missing = await admin.get("/dashboard/no-such-page")
    assert missing.status_code == 404 and "no such page" in missing.text
    assert missing.headers["x-frame-options"] == "DENY"
    stylesheet = await client.get("/dashboard/static/dashboard.css")
    assert stylesheet.status_code == 200 and "url(" not in stylesheet.text
    for path in paths:
        response = await (client.get(path) if path.endswith("/login") else admin.get(path))
        assert response.status_code == 200, path
        html = response.text
        assert not OUTSIDE.search(html), (path, OUTSIDE.search(html).group(0))
        assert "<script" not in html.lower() and " style=" not in html.lower(), path
        assert not re.search(r"<[^>]+\son[a-z]+=", html), path  # no inline event handlers
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        # Every input has a label.
        for input_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
            assert f'for="{input_id}"' in html, (path, input_id)
        for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if 'type="hidden"' in tag or 'type="checkbox"' in tag or 'type="radio"' in tag:
                continue
            assert 'id="' in tag, (path, tag)


def test_the_cli_grants_the_dashboard_codes(database_url: str, tmp_path: Any) -> None:
    from cryptography.fernet import Fernet

    from tests.test_cli import Cli

    cli = Cli(tmp_path / "data", database_url, Fernet.generate_key().decode())
    created = cli(
        "user",
        "create",
        "alice",
        "-p",
        "admin.users",
        "-p",
        "audit.view",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert created.exit_code == 0, created.output
    granted = cli("user", "grant", "alice", "admin.gateways")
    assert granted.exit_code == 0, granted.output
    assert "admin.gateways, admin.users, audit.view" in granted.output
    assert cli("user", "grant", "alice", "admin.everything").exit_code == 2
    # Administration from the command line is audited too, with the OS account as the actor.
    assert cli("apikey", "create", "shop").exit_code == 0
    added = cli(
        "gateway",
        "add",
        "sandbox",
        "--code",
        "gw-1",
        "--currency",
        "KWD",
        "--credentials",
        '{"secret": "do-not-log"}',
    )
    assert added.exit_code == 0, added.output

    async def rows() -> list[tuple[str, str, str]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(
                    select(AuditEntry.action, AuditEntry.actor_type, AuditEntry.details)
                )
                return [(a, t, str(d)) for a, t, d in result]
        finally:
            await engine.dispose()

    audited = asyncio.run(rows())
    assert [(a, t) for a, t, _ in audited] == [
        ("user.create", "cli"),
        ("user.grant", "cli"),
        ("api_key.create", "cli"),
        ("gateway.add", "cli"),
    ]
    assert "do-not-log" not in audited[-1][2] and "secret" in audited[-1][2]


async def test_a_declined_or_unconfirmed_refund_is_told_as_such(
    operator_for: Any,
    seed: Any,
) -> None:
    parent = await seed.transaction("100.000", order_no="ORD-D")
    op = await operator_for(["payment.inquiry", "payment.refund"])
    declined = await refund(op, parent.session_id, "0.991")  # the sandbox declines …991
    assert declined.status_code == 400
    assert 'role="alert"' in declined.text and "Confirm refund" in declined.text
    unconfirmed = await refund(op, parent.session_id, "0.994")  # …994: no answer
    assert unconfirmed.status_code == 303
    page = (await op.get(unconfirmed.headers["location"])).text
    assert "processing" in page and "it will be reconciled" in page
    states = sorted(o.state for o in await seed.operations("ORD-D"))
    assert states == ["failed", "processing"]
    assert (await seed.find("ORD-D")).refunded == 0
    results = [(a.action, a.result) for a in await seed.audit() if a.action == "dashboard.refund"]
    assert results == [("dashboard.refund", "refused"), ("dashboard.refund", "pending")]


async def test_repeated_wrong_passwords_are_throttled_like_the_api(
    client: httpx.AsyncClient,
    seed: Any,
    ctx: Any,
) -> None:
    await seed.user("alice", PASSWORD)
    op = Operator(client)
    statuses = [
        (await op.sign_in("alice", f"guess {n}")).status_code
        for n in range(ctx.settings.auth_failure_limit + 2)
    ]
    assert statuses[0] == 400 and statuses[-1] == 429, statuses
    refused = await op.sign_in("alice")  # even the right password waits now
    assert refused.status_code == 429 and "Try again in" in refused.text
    assert "payops_session" not in client.cookies
    audited = [a.result for a in await seed.audit() if a.action == "dashboard.sign_in"]
    assert audited == ["refused"] * statuses.count(400), "throttled tries are not written"


async def test_review_lists_old_processing_operations_with_only_ask_now(
    operator_for: Any,
    seed: Any,
    client: httpx.AsyncClient,
) -> None:
    await seed.transaction("100.000", order_no="ORD-P")
    await seed.user("api-p", PASSWORD, permissions=["payment.refund"])
    answer = await client.post(
        "/b/pbl/v1/operation/ORD-P",
        headers=basic("api-p", PASSWORD),
        json={"operation": "refund", "amount": "0.994"},
    )
    assert answer.status_code == 504
    (processing,) = await seed.operations("ORD-P")
    op = await operator_for(["payment.resolve"])
    page = (await op.get("/dashboard/review")).text
    reference = processing.reference_number
    assert f"/dashboard/review/{reference}/recheck" in page
    assert f"/dashboard/review/{reference}/resolve" not in page
    refused = await op.post(
        f"/dashboard/review/{reference}/resolve", {"outcome": "succeeded", "reason": "looks fine"}
    )
    assert refused.status_code == 400  # only needs_review operations are resolved
    assert (await seed.operations("ORD-P"))[0].state == "processing"
