"""The hosted sandbox checkout page at a session's ``checkout_url`` (decisions §8).

One HTML form, posted back to its own URL. It accepts only the sandbox's test cards; any other
number is refused as invalid without recording an attempt. Card data is never stored or logged:
only the last four digits reach the sandbox's ledger.
"""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from payops.checkout import gateway_flow
from payops.checkout.endpoints import base_url
from payops.checkout.service import enabled_gateways
from payops.connectors.sandbox.connector import TEST_CARDS
from payops.domain.states import (
    ATTEMPT_ENDED,
    ATTEMPT_UNDECIDED,
    CLOSED_UNPAID,
    PAYABLE,
    SETTLED,
)
from payops.gateways.service import takes_payments
from payops.money import format_minor
from payops.transactions import repository
from payops.transactions.expiry import expire_if_due
from payops.transactions.service import NoNewAttempt, TransactionError, pay_with_sandbox
from payops.web.dependencies import get_context
from payops.web.requests import read_limited
from payops.webhooks.before_redirect import last_payment_answer, try_payment_webhook

router = APIRouter(include_in_schema=False)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
FORM_LIMIT = 16_384


def luhn_ok(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_errors(form: dict[str, str], now: datetime) -> dict[str, str]:
    errors: dict[str, str] = {}
    number = form.get("card_number", "").replace(" ", "").replace("-", "")
    if not (
        number.isascii()
        and number.isdigit()
        and 12 <= len(number) <= 19
        and luhn_ok(number)
        and number in TEST_CARDS
    ):
        errors["card_number"] = "Enter a valid card number (use one of the sandbox test cards)."
    expiry = form.get("expiry", "").strip()
    try:
        month, year = expiry.split("/")
        month_i, year_i = int(month), 2000 + int(year)
        if not (len(month) == 2 and len(year) == 2 and 1 <= month_i <= 12):
            raise ValueError
        if (year_i, month_i) < (now.year, now.month):
            errors["expiry"] = "The card has expired."
    except ValueError:
        errors["expiry"] = "Enter the expiry as MM/YY."
    cvv = form.get("cvv", "")
    if not (cvv.isascii() and cvv.isdigit() and len(cvv) == 3):
        errors["cvv"] = "Enter the 3-digit security code."
    if not form.get("cardholder_name", "").strip():
        errors["cardholder_name"] = "Enter the name on the card."
    return errors


def _page(
    title: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · PayOps sandbox checkout</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}
label{{display:block;margin-top:1rem;font-weight:600}}input,select{{font-size:1rem;padding:.4rem;width:100%}}
.error{{color:#a00}}button{{margin-top:1.5rem;font-size:1rem;padding:.6rem 1.2rem}}</style>
</head><body><main>{body}</main></body></html>"""
    return HTMLResponse(document, status_code=status, headers=headers or HEADERS)


def _field(
    name: str, label: str, errors: dict[str, str], value: str = "", note: str = "", **attrs: str
) -> str:
    error = errors.get(name)
    if error and note:
        error = f"{error} {note}"
    extra = " ".join(f'{k.replace("_", "-")}="{html.escape(v)}"' for k, v in attrs.items())
    described = f' aria-describedby="{name}-error" aria-invalid="true"' if error else ""
    message = f'<p class="error" id="{name}-error">{html.escape(error)}</p>' if error else ""
    return (
        f'<label for="{name}">{label}</label>'
        f'<input id="{name}" name="{name}" value="{html.escape(value)}" required {extra}{described}>'
        f"{message}"
    )


def _form(
    parent,
    gateways: list[str],
    errors: dict[str, str],
    form: dict[str, str],
    notice: str = "",
    methods: list[str] | None = None,
) -> HTMLResponse:
    if not gateways:
        return _methods_page(parent, methods or [], notice)
    amount = format_minor(parent.amount + parent.fee, parent.currency_code)
    choose = ""
    if len(gateways) > 1:
        options = "".join(
            f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in gateways
        )
        choose = f'<label for="pg_code">Payment method</label><select id="pg_code" name="pg_code">{options}</select>'
    elif gateways:
        choose = f'<input type="hidden" name="pg_code" value="{html.escape(gateways[0])}">'
    summary = f'<p role="alert" class="error">{html.escape(notice)}</p>' if notice else ""
    body = f"""<h1>Pay {amount} {parent.currency_code}</h1>
<p>Order {html.escape(parent.order_no or parent.session_id)}. This is a sandbox: use a test card.</p>
{summary}
<form method="post" novalidate>
{choose}
{_field("card_number", "Card number", errors, "", _card_note(form), inputmode="numeric", autocomplete="cc-number")}
{_field("expiry", "Expiry (MM/YY)", errors, form.get("expiry", ""), autocomplete="cc-exp", placeholder="MM/YY")}
{_field("cvv", "Security code (CVV)", errors, "", inputmode="numeric", autocomplete="cc-csc")}
{_field("cardholder_name", "Name on card", errors, form.get("cardholder_name", ""), autocomplete="cc-name")}
<button type="submit">Pay {amount} {parent.currency_code}</button>
</form>{_method_buttons(methods or [], "Or pay with")}"""
    return _page("Pay", body, 400 if errors else 200)


def _method_buttons(methods: list[str], heading: str) -> str:
    """One small form per gateway that takes the customer to its own payment page."""
    if not methods:
        return ""
    buttons = "".join(
        f'<form method="post"><input type="hidden" name="pg_code" value="{html.escape(code)}">'
        f'<button type="submit">Pay with {html.escape(code)}</button></form>'
        for code in methods
    )
    return f"<h2>{html.escape(heading)}</h2>{buttons}"


def _methods_page(parent, methods: list[str], notice: str = "", status: int = 200) -> HTMLResponse:
    amount = format_minor(parent.amount + parent.fee, parent.currency_code)
    summary = f'<p role="alert" class="error">{html.escape(notice)}</p>' if notice else ""
    body = (
        f"<h1>Pay {amount} {parent.currency_code}</h1>"
        f"<p>Order {html.escape(parent.order_no or parent.session_id)}.</p>{summary}"
        f"{_method_buttons(methods, 'Choose how to pay')}"
    )
    return _page("Pay", body, status)


def _card_note(form: dict[str, str]) -> str:
    # A card number is never sent back into the page (it would sit in the browser's history and
    # any proxy's cache): at most its last four digits, to help the customer.
    digits = "".join(ch for ch in form.get("card_number", "") if ch.isascii() and ch.isdigit())
    return f"(You entered a number ending in {digits[-4:]}.)" if len(digits) >= 8 else ""


# -- the session's current state, and where the customer goes next --------------------------------


def _processing_page() -> HTMLResponse:
    return _page(
        "Processing",
        "<h1>Your payment is being processed.</h1>"
        "<p>You will be told the result once the bank confirms it.</p>",
        202,
    )


def _redirect_target(redirect_url: str, params: dict[str, str]) -> str:
    parts = urlsplit(redirect_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def send_to_start(start: dict[str, Any], *, after_form: bool = False) -> Response:
    """Send the browser where the gateway said: a redirect, or a page whose form posts itself
    to the gateway (the only page whose CSP lets a form go to another origin, that one).

    ``after_form``: the answer to the customer's own form post. Browsers apply the posting
    page's ``form-action`` to the redirects that follow a form submission, so a 303 to the
    gateway would be blocked by the hosted page's strict policy; the answer is instead a small
    page that moves the browser on (meta refresh, and a link for anyone it does not move)."""
    url = str(start.get("url") or "")
    if str(start.get("method") or "GET").upper() != "POST":
        if not after_form:
            return RedirectResponse(url, status_code=303, headers=HEADERS)
        target = html.escape(url)
        body = (
            f'<meta http-equiv="refresh" content="0;url={target}">'
            "<h1>Taking you to the payment page…</h1>"
            f'<p><a id="go" href="{target}">Continue to the payment page</a></p>'
        )
        return _page("Continue", body)
    nonce = secrets.token_urlsafe(16)
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in (start.get("fields") or {}).items()
    )
    body = (
        f"<h1>Taking you to the payment page…</h1>"
        f'<form id="go" method="post" action="{html.escape(url)}">{fields}'
        f'<button type="submit">Continue to the payment page</button></form>'
        f'<script nonce="{nonce}">document.getElementById("go").submit();</script>'
    )
    origin = html.escape(str(start.get("origin") or gateway_flow.origin_of(url)))
    headers = {
        **HEADERS,
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; form-action 'self' {origin}",
    }
    return _page("Continue", body, 200, headers)


def _retry_page(message: str) -> HTMLResponse:
    return _page(
        "Not confirmed",
        "<h1>The payment gateway did not answer.</h1>"
        f"<p>{html.escape(message)}</p>"
        '<form method="post"><input type="hidden" name="action" value="retry">'
        '<button type="submit">Try again</button></form>',
        200,
    )


async def _open_gateway_attempt(request: Request, parent, *, wait: bool) -> Response | None:
    """A session with an open attempt at a real gateway: where its customer goes now."""
    ctx = get_context(request)
    attempt = await gateway_flow.open_attempt(ctx, parent.id)
    if attempt is None or attempt.token is None or attempt.state != "pending":
        return None
    if wait and gateway_flow.in_flight(attempt, ctx):
        attempt = await gateway_flow.wait_for_start(ctx, attempt.id) or attempt
    start = attempt.start or {}
    if start.get("returned") or start.get("posted"):
        return _processing_page()
    outcome = start.get("outcome")
    if outcome == gateway_flow.STARTED:
        return send_to_start(start, after_form=wait)
    if outcome == gateway_flow.STARTING and gateway_flow.in_flight(attempt, ctx):
        return _processing_page()
    return _retry_page(str(start.get("message") or "Your payment was not started."))


async def _settled_page(request: Request, parent, *, wait: bool = False) -> Response | None:
    """The session's current result when it takes no new payment: paid, or an attempt whose
    outcome is still open. A repeated submission gets this page and starts no charge."""
    ctx = get_context(request)
    async with ctx.db.read() as session:
        current = await repository.find_parent(session, session_id=parent.session_id)
        attempts = await repository.attempts(session, parent.id)
    if current is None:
        return None
    if current.state in SETTLED:
        reference = next((a.reference_number for a in attempts if a.state == "success"), "")
        outcome = "Payment successful" if current.state == "paid" else "Payment authorized"
        return _page(outcome, f"<h1>{outcome}</h1><p>Reference {html.escape(reference)}.</p>")
    if current.state in PAYABLE and any(a.state in ATTEMPT_UNDECIDED for a in attempts):
        gateway_page = await _open_gateway_attempt(request, current, wait=wait)
        return gateway_page or _processing_page()
    return None


async def _load(request: Request, session_id: str):
    """The session and its payment methods: the sandbox's (its card form) and the real
    gateways' (their hosted pages) that take payments in the session's currency."""
    ctx = get_context(request)
    if not (len(session_id) == 40 and all(c in "0123456789abcdef" for c in session_id)):
        return None, [], []
    await expire_if_due(ctx, session_id)
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, session_id=session_id)
        if parent is None:
            return None, [], []
        gateways = await enabled_gateways(session)
        usable = [
            gw
            for code in parent.pg_codes
            if (gw := gateways.get(code)) is not None
            and parent.currency_code in gw.accepted_currencies
        ]
        sandbox = [gw for gw in usable if gw.connector == "sandbox"]
        real = [gw for gw in usable if gw.connector != "sandbox" and takes_payments(gw)]
        return parent, sandbox, real


async def finish(
    request: Request,
    parent,
    reference: str,
    *,
    answered_before: bool = False,
    attempt_state: str = "",
) -> Response:
    """After a decided attempt: the payment webhook first; only its 200 sends the customer on
    to ``redirect_url`` (Ottu's order, decisions §10), else the summary page.
    ``answered_before``: a repeated return, decided by the answer the webhook already got."""
    ctx = get_context(request)
    redirect = bool(parent.redirect_url)
    if parent.webhook_url:
        answer = await try_payment_webhook(ctx, parent.id, parent.webhook_url)
        if answer is None and answered_before:
            answer = await last_payment_answer(ctx, parent.id, parent.webhook_url)
        redirect = redirect and answer == 200
    if redirect:
        target = _redirect_target(
            parent.redirect_url,
            {
                "session_id": parent.session_id,
                "order_no": parent.order_no or "",
                "reference_number": reference,
            },
        )
        return RedirectResponse(target, status_code=303, headers=HEADERS)
    return _summary(parent, reference, attempt_state)


def _summary(parent, reference: str, attempt_state: str = "") -> HTMLResponse:
    outcome = {
        "paid": "Payment successful",
        "authorized": "Payment authorized",
        "expired": "Payment expired",
        "canceled": "Payment canceled",
    }.get(parent.state, "Payment declined")
    if parent.state not in SETTLED and attempt_state in ATTEMPT_ENDED:
        outcome = f"Payment {attempt_state}"  # the customer left, or the gateway's time ran out
    again = ""
    if parent.state in PAYABLE:
        again = (
            f'<p><a href="/checkout/{html.escape(parent.session_id)}">'
            "Choose a way to pay again</a></p>"
        )
    return _page(outcome, f"<h1>{outcome}</h1><p>Reference {html.escape(reference)}.</p>{again}")


def _closed(parent, status: int) -> HTMLResponse:
    return _page("Closed", f"<h1>This payment is {html.escape(parent.state)}.</h1>", status)


@router.get("/checkout/{session_id}")
async def show(session_id: str, request: Request) -> Response:
    parent, sandbox, real = await _load(request, session_id)
    if parent is None:
        return _page("Not found", "<h1>This payment link does not exist.</h1>", 404)
    if (settled := await _settled_page(request, parent)) is not None:
        return settled
    if parent.state not in PAYABLE:
        return _closed(parent, 410 if parent.state in CLOSED_UNPAID else 200)
    return _form(parent, [g.pg_code for g in sandbox], {}, {}, methods=[g.pg_code for g in real])


@router.post("/checkout/{session_id}")
async def pay(session_id: str, request: Request) -> Response:
    ctx = get_context(request)
    parent, sandbox, real = await _load(request, session_id)
    if parent is None:
        return _page("Not found", "<h1>This payment link does not exist.</h1>", 404)
    raw = await read_limited(request, FORM_LIMIT)
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if form.get("action") == "retry":
        return await _retry(request, parent)
    if (settled := await _settled_page(request, parent, wait=True)) is not None:
        return settled
    if parent.state not in PAYABLE:
        return _closed(parent, 409)
    chosen = {g.pg_code: g for g in real}.get(form.get("pg_code", ""))
    if chosen is not None:
        return await _pay_at_gateway(request, parent, chosen, [g.pg_code for g in real])
    if not sandbox:
        return _methods_page(parent, [g.pg_code for g in real], "Choose a payment method.", 400)
    errors = card_errors(form, datetime.now(UTC))
    by_code = {g.pg_code: g for g in sandbox}
    gateway = by_code.get(form.get("pg_code", "")) or (sandbox[0] if len(sandbox) == 1 else None)
    if gateway is None:
        errors["pg_code"] = "Choose a payment method."
    if errors:
        return _form(
            parent,
            list(by_code),
            errors,
            form,
            "Please correct the highlighted fields.",
            methods=[g.pg_code for g in real],
        )
    card = form["card_number"].replace(" ", "").replace("-", "")
    try:
        assert gateway is not None
        parent = await pay_with_sandbox(ctx.db, ctx.settings, parent.id, gateway, card)
    except NoNewAttempt:
        # Another submission got there first (a double click, a second tab): show its result.
        settled = await _settled_page(request, parent, wait=True)
        return settled or _page("Closed", "<h1>This payment can no longer be made.</h1>", 409)
    except TransactionError as exc:
        return _page("Not possible", f"<h1>{html.escape(str(exc))}</h1>", 409)
    async with ctx.db.read() as session:
        attempts = await repository.attempts(session, parent.id)
    reference = attempts[0].reference_number if attempts else ""
    if parent.state == "pending":
        return _processing_page()
    return await finish(request, parent, reference)


async def _pay_at_gateway(request: Request, parent, gateway, methods: list[str]) -> Response:
    ctx = get_context(request)
    try:
        begun = await gateway_flow.begin(ctx, base_url(request), parent.id, gateway)
    except NoNewAttempt:
        settled = await _settled_page(request, parent, wait=True)
        return settled or _page("Closed", "<h1>This payment can no longer be made.</h1>", 409)
    except TransactionError as exc:
        return _page("Not possible", f"<h1>{html.escape(str(exc))}</h1>", 409)
    return _after_start(begun, methods)


def _after_start(begun: gateway_flow.Begun, methods: list[str]) -> Response:
    start = begun.attempt.start or {}
    outcome = start.get("outcome")
    if outcome == gateway_flow.STARTED:
        return send_to_start(start, after_form=True)
    if outcome == gateway_flow.START_FAILED:
        notice = (
            "The payment could not be started: "
            f"{start.get('message') or 'the gateway refused it'}. Please choose again."
        )
        if begun.parent.state in PAYABLE:
            return _methods_page(begun.parent, methods, notice)
        return _summary(begun.parent, begun.attempt.reference_number)
    return _retry_page(str(start.get("message") or "Your payment was not started."))


async def _retry(request: Request, parent) -> Response:
    """ "Try again" after a start whose reply was lost: the same attempt, started again."""
    ctx = get_context(request)
    attempt = await gateway_flow.open_attempt(ctx, parent.id)
    if attempt is not None and attempt.token is not None and attempt.state == "pending":
        begun = await gateway_flow.retry(ctx, base_url(request), attempt.id)
        if begun is not None:
            _, _, real = await _load(request, parent.session_id)
            return _after_start(begun, [g.pg_code for g in real])
    settled = await _settled_page(request, parent, wait=True)
    if settled is not None:
        return settled
    return RedirectResponse(f"/checkout/{parent.session_id}", status_code=303, headers=HEADERS)
