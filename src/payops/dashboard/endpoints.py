"""The dashboard's pages: thin handlers that check the session, the CSRF token and the permission,
call the service and render a template."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from payops.auth.permissions import OPERATION_PERMISSIONS
from payops.dashboard import repository, review, service, sessions
from payops.dashboard.rendering import PAGE_HEADERS, render
from payops.dashboard.service import DashboardError, PageNotFound, require
from payops.dashboard.web import posted, read_form, redirect, safe_next, signed_in
from payops.domain.messages import DONE as DONE_MESSAGE
from payops.domain.states import OPERATION_STATES, PARENT_STATES
from payops.web.dependencies import get_context

router = APIRouter(prefix="/dashboard", include_in_schema=False)
VIEW_PAYMENTS = OPERATION_PERMISSIONS["inquiry"]


def _int(value: str | None) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    # A keyset cursor past the database's 64-bit ids reached the query (overflow: a 500).
    return number if 0 < number < 2**63 else None


def _date(value: str | None, *, until: bool = False) -> date | None:
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        return None
    # "to 9999-12-31" bounds nothing; the day after it does not exist (OverflowError: a 500,
    # and a CSV export cut off mid-stream).
    return None if until and day == date.max else day


# -- sign in / out ---------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, next: str = "/dashboard") -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, None, "login.html", login_csrf=token, next=safe_next(next))
    sessions.set_login_csrf_cookie(response, request, token)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = get_context(request)
    form = await read_form(request)
    next_path = safe_next(form.get("next", "/dashboard"))
    if not sessions.tokens_match(
        request.cookies.get(sessions.LOGIN_CSRF_COOKIE, ""), form.get("csrf_token")
    ):
        raise DashboardError("The sign-in form has expired. Reload the page and try again.", 403)
    username = form.get("username").strip()
    address = sessions.client_address(request)
    try:
        token, user = await sessions.sign_in(ctx, username, form.get("password"), address)
    except sessions.SignInRefused as refusal:
        if refusal.status_code == 400:  # a wrong password; throttled tries cost no write
            await service.audit_sign_in(ctx, username, address, "refused")
        fresh = secrets.token_urlsafe(32)
        response: Response = render(
            request,
            None,
            "login.html",
            status_code=refusal.status_code,
            error=refusal.message,
            login_csrf=fresh,
            next=next_path,
            username=username,
        )
        sessions.set_login_csrf_cookie(response, request, fresh)
        return response
    await service.audit_sign_in(ctx, user.username, address, "success")
    earlier = request.cookies.get(sessions.SESSION_COOKIE)
    if earlier:  # a fresh session at every sign-in; the one this browser had ends
        await sessions.end_session(ctx, sessions.token_hash(earlier))
    response = redirect(next_path)
    sessions.set_session_cookie(response, request, token)
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/dashboard")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    visitor, _ = await posted(request)
    await sessions.end_session(get_context(request), visitor.session_key)
    response = redirect("/dashboard/login")
    sessions.clear_session_cookie(response, request)
    return response


# -- home ------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    visitor = await signed_in(request)
    data = await service.home(get_context(request))
    return render(
        request,
        visitor,
        "home.html",
        home=data,
        chart=service.bar_chart(data.chart_days, data.chart_counts),
    )


# -- transactions ----------------------------------------------------------------------------


def transaction_filter(request: Request) -> repository.TransactionFilter:
    q = request.query_params
    state = q.get("state", "")
    operation = q.get("operation", "")
    op_state = q.get("operation_state", "")
    return repository.TransactionFilter(
        query=q.get("q", "").strip()[:254],
        state=state if state in PARENT_STATES else "",
        gateway=q.get("gateway", "")[:64],
        currency=q.get("currency", "").upper()[:3],
        date_from=_date(q.get("from")),
        date_to=_date(q.get("to"), until=True),
        operation=operation if operation in ("capture", "refund", "void") else "",
        operation_state=op_state if op_state in OPERATION_STATES else "",
    )


@router.get("/transactions")
async def transactions(request: Request) -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    ctx = get_context(request)
    flt = transaction_filter(request)
    rows, cursor, configured = await service.transactions_page(
        ctx, flt, _int(request.query_params.get("before"))
    )
    codes = {g.id: g.pg_code for g in configured}
    gateways = sorted(codes.values())
    currencies = sorted(
        {code for g in configured for code in (*g.accepted_currencies, g.default_currency)}
    )
    params = flt.as_params()
    return render(
        request,
        visitor,
        "transactions.html",
        rows=rows,
        flt=flt,
        states=PARENT_STATES,
        gateways=gateways,
        currencies=currencies,
        codes=codes,
        next_page=urlencode({**params, "before": cursor}) if cursor else "",
        export=urlencode(params),
        first_page=bool(request.query_params.get("before")),
        reset=urlencode(params),
    )


@router.get("/transactions.csv")
async def transactions_csv(request: Request) -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    flt = transaction_filter(request)
    return StreamingResponse(
        service.export_csv(get_context(request), flt),
        media_type="text/csv; charset=utf-8",
        headers={**PAGE_HEADERS, "Content-Disposition": 'attachment; filename="transactions.csv"'},
    )


@router.get("/transactions/{session_id}")
async def transaction(
    request: Request, session_id: str, done: str = "", notice: str = ""
) -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    ctx = get_context(request)
    view = await service.transaction_view(ctx, visitor, session_id)
    just_done = await service.operation_on(ctx, done, view.parent.id) if done else None
    # Only the service's own fixed messages come back here (cancel's "Operation done
    # successfully"); anything else in the link is not shown.
    shown = notice if notice in (DONE_MESSAGE,) else ""
    return render(
        request, visitor, "transaction.html", view=view, just_done=just_done, notice=shown
    )


@router.get("/transactions/{session_id}/{operation}")
async def confirm_operation(request: Request, session_id: str, operation: str) -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    if operation not in service.DASHBOARD_OPERATIONS:
        raise PageNotFound()
    require(visitor, OPERATION_PERMISSIONS[operation])
    view = await service.transaction_view(get_context(request), visitor, session_id)
    allowed = next((a for a in view.allowed if a.operation == operation), None)
    if allowed is None:
        raise DashboardError(f"A {operation} is not possible on this transaction now.", 409)
    return render(
        request,
        visitor,
        "confirm.html",
        view=view,
        allowed=allowed,
        tracking_key=service.new_tracking_key(),
        amount=allowed.amount,
        reason="",
    )


@router.post("/transactions/{session_id}/{operation}")
async def run_operation(request: Request, session_id: str, operation: str) -> Response:
    visitor, form = await posted(request)
    if operation not in service.DASHBOARD_OPERATIONS:
        raise PageNotFound()
    require(visitor, OPERATION_PERMISSIONS[operation])
    ctx = get_context(request)
    tracking_key = form.get("tracking_key")
    try:
        outcome = await service.operate(
            ctx,
            visitor,
            session_id,
            operation,
            amount=form.get("amount"),
            reason=form.get("reason"),
            tracking_key=tracking_key,
        )
    except DashboardError as error:
        if error.status_code != 400:
            raise
        outcome = service.OperationOutcome(False, error.message, status_code=400)
    if outcome.ok or outcome.status_code == 504 or outcome.in_progress:
        return redirect(
            f"/dashboard/transactions/{session_id}",
            done=outcome.reference_number,
            notice="" if outcome.reference_number else outcome.message,
        )
    view = await service.transaction_view(ctx, visitor, session_id)
    allowed = next((a for a in view.allowed if a.operation == operation), None)
    if allowed is None:
        return render(
            request,
            visitor,
            "transaction.html",
            view=view,
            just_done=None,
            error=outcome.message,
            status_code=outcome.status_code,
        )
    return render(
        request,
        visitor,
        "confirm.html",
        view=view,
        allowed=allowed,
        tracking_key=tracking_key
        if service.TRACKING_KEY.match(tracking_key)
        else service.new_tracking_key(),
        amount=form.get("amount"),
        reason=form.get("reason"),
        error=outcome.message,
        status_code=outcome.status_code,
    )


# -- webhooks --------------------------------------------------------------------------------

EVENT_STATES = ("pending", "delivered", "failed")


@router.get("/webhooks")
async def webhooks(request: Request, state: str = "") -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    ctx = get_context(request)
    state = state if state in EVENT_STATES else ""
    rows, cursor, parents = await service.events_page(
        ctx, state, _int(request.query_params.get("before"))
    )
    return render(
        request,
        visitor,
        "webhooks.html",
        rows=rows,
        state=state,
        states=EVENT_STATES,
        parents=parents,
        next_page=urlencode({"state": state, "before": cursor}) if cursor else "",
    )


# An id past the database's 64-bit integers once reached the query and answered 500.
EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/webhooks/{event_id}")
async def webhook(request: Request, event_id: EventId) -> Response:
    visitor = await signed_in(request)
    require(visitor, VIEW_PAYMENTS)
    event, attempts, parent = await service.event_detail(get_context(request), event_id)
    return render(request, visitor, "webhook.html", event=event, attempts=attempts, parent=parent)


@router.post("/webhooks/{event_id}/retry")
async def webhook_retry(request: Request, event_id: EventId) -> Response:
    visitor, _ = await posted(request)
    require(visitor, VIEW_PAYMENTS)
    state = await service.retry_event(get_context(request), visitor, event_id)
    return redirect(f"/dashboard/webhooks/{event_id}", retried=state)


# -- needs review ----------------------------------------------------------------------------

router.include_router(review.router)


# -- gateways --------------------------------------------------------------------------------


@router.get("/gateways")
async def gateways(request: Request) -> Response:
    visitor = await signed_in(request)
    require(visitor, "admin.gateways")
    rows = await service.list_gateways(get_context(request))
    return render(request, visitor, "gateways.html", rows=rows)


@router.get("/gateways/{pg_code}")
async def gateway(request: Request, pg_code: str, saved: str = "") -> Response:
    visitor = await signed_in(request)
    require(visitor, "admin.gateways")
    row = await service.get_gateway(get_context(request), pg_code)
    return render(
        request,
        visitor,
        "gateway.html",
        gateway=row,
        capabilities=service.gateway_capabilities(row),
        saved=bool(saved),
    )


@router.post("/gateways/{pg_code}")
async def gateway_update(request: Request, pg_code: str) -> Response:
    visitor, form = await posted(request)
    require(visitor, "admin.gateways")
    ctx = get_context(request)
    try:
        await service.update_gateway(
            ctx,
            visitor,
            pg_code,
            enabled=form.get("enabled") == "on",
            operations=form.all("operation"),
            credentials=form.get("credentials"),
        )
    except DashboardError as error:
        if error.status_code != 400:
            raise
        row = await service.get_gateway(ctx, pg_code)
        return render(
            request,
            visitor,
            "gateway.html",
            gateway=row,
            capabilities=service.gateway_capabilities(row),
            error=error.message,
            saved=False,
            status_code=400,
        )
    return redirect(f"/dashboard/gateways/{quote(pg_code, safe='')}", saved="1")


# -- API keys --------------------------------------------------------------------------------


@router.get("/api-keys")
async def api_keys(request: Request) -> Response:
    visitor = await signed_in(request)
    require(visitor, "admin.api_keys")
    rows = await service.list_api_keys(get_context(request))
    return render(request, visitor, "api_keys.html", rows=rows)


@router.post("/api-keys")
async def api_key_create(request: Request) -> Response:
    visitor, form = await posted(request)
    ctx = get_context(request)
    days = form.get("expires_in_days", "0").strip() or "0"
    if not days.isdigit():
        raise DashboardError("The expiry is a whole number of days (0 for never).")
    key, prefix = await service.create_api_key(ctx, visitor, form.get("name"), int(days))
    rows = await service.list_api_keys(ctx)
    # Shown on this response only; it is stored as a hash and cannot be seen again.
    return render(request, visitor, "api_keys.html", rows=rows, new_key=key, new_prefix=prefix)


@router.post("/api-keys/{prefix}/revoke")
async def api_key_revoke(request: Request, prefix: str) -> Response:
    visitor, _ = await posted(request)
    await service.revoke_api_key(get_context(request), visitor, prefix)
    return redirect("/dashboard/api-keys")


# -- users -----------------------------------------------------------------------------------


@router.get("/users")
async def users(request: Request) -> Response:
    visitor = await signed_in(request)
    require(visitor, "admin.users")
    rows = await service.list_users(get_context(request))
    return render(
        request, visitor, "users.html", rows=rows, grantable=service.grantable_by(visitor)
    )


@router.post("/users")
async def user_create(request: Request) -> Response:
    visitor, form = await posted(request)
    ctx = get_context(request)
    try:
        await service.create_user(
            ctx,
            visitor,
            username=form.get("username"),
            password=form.get("password"),
            email=form.get("email"),
            superuser=form.get("superuser") == "on",
            permissions=form.all("permission"),
        )
    except DashboardError as error:
        if error.status_code not in (400, 409):
            raise
        rows = await service.list_users(ctx)
        return render(
            request,
            visitor,
            "users.html",
            rows=rows,
            status_code=error.status_code,
            grantable=service.grantable_by(visitor),
            error=error.message,
            username=form.get("username"),
            email=form.get("email"),
        )
    return redirect(
        f"/dashboard/users/{quote(form.get('username').strip(), safe='')}", saved="created"
    )


@router.get("/users/{username}")
async def user(request: Request, username: str, saved: str = "") -> Response:
    visitor = await signed_in(request)
    require(visitor, "admin.users")
    row = await service.get_user(get_context(request), username)
    return render(
        request,
        visitor,
        "user.html",
        user=row,
        saved=saved,
        grantable=service.grantable_by(visitor),
        held={p.code for p in row.permissions},
    )


@router.post("/users/{username}/permissions")
async def user_permissions(request: Request, username: str) -> Response:
    visitor, form = await posted(request)
    await service.set_permissions(get_context(request), visitor, username, form.all("permission"))
    return redirect(f"/dashboard/users/{quote(username, safe='')}", saved="permissions")


@router.post("/users/{username}/active")
async def user_active(request: Request, username: str) -> Response:
    visitor, form = await posted(request)
    active = form.get("active") == "yes"
    await service.set_user_active(get_context(request), visitor, username, active)
    return redirect(
        f"/dashboard/users/{quote(username, safe='')}",
        saved="activated" if active else "deactivated",
    )


@router.post("/users/{username}/password")
async def user_password(request: Request, username: str) -> Response:
    visitor, form = await posted(request)
    ctx = get_context(request)
    try:
        await service.reset_password(ctx, visitor, username, form.get("password"))
    except DashboardError as error:
        if error.status_code != 400:
            raise
        row = await service.get_user(ctx, username)
        return render(
            request,
            visitor,
            "user.html",
            user=row,
            saved="",
            status_code=400,
            grantable=service.grantable_by(visitor),
            error=error.message,
            held={p.code for p in row.permissions},
        )
    return redirect(f"/dashboard/users/{quote(username, safe='')}", saved="password")


# -- audit -----------------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(request: Request, actor: str = "", action: str = "") -> Response:
    visitor = await signed_in(request)
    require(visitor, "audit.view")
    ctx = get_context(request)
    rows, cursor = await service.audit_page(
        ctx, actor, action, _int(request.query_params.get("before"))
    )
    params: dict[str, Any] = {"actor": actor, "action": action}
    return render(
        request,
        visitor,
        "audit.html",
        rows=rows,
        actor=actor,
        action=action,
        next_page=urlencode({**params, "before": cursor}) if cursor else "",
    )
