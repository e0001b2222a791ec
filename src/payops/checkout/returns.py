"""Where a gateway sends the customer (and KNET's server) back to PayOps (issue 17).

- ``GET|POST /checkout/return/{token}``: the browser's return (query and form read, size-limited).
  Its parameters are only a hint for the connector's ``confirm_return``; an attempt whose outcome
  is known is answered from storage. Then Ottu's order: the payment webhook first, the redirect
  to ``redirect_url`` only on its 200 answer, else the summary page.
- ``POST /checkout/response/{token}``: a ``posts_result`` gateway's server (KNET) posts the
  result; PayOps stores it and answers at once with one ``text/plain`` line
  ``REDIRECT=<public_url>/checkout/receipt/{token}``, whatever happened (never a 5xx, never HTML).
- ``GET|POST /checkout/receipt/{token}``: where that REDIRECT takes the browser; the same as a
  return.

The token names the attempt; no query parameter does. An unknown token gets a 404 page.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from payops.checkout import gateway_flow
from payops.checkout.endpoints import base_url
from payops.checkout.hosted import FORM_LIMIT, _page, _processing_page, finish
from payops.domain.states import ATTEMPT_UNDECIDED
from payops.errors import DetailError
from payops.web.dependencies import get_context
from payops.web.requests import read_limited

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
PARAM_LIMIT = 64  # at most this many parameters are handed to the connector
UNKNOWN_RECEIPT = "unknown"


async def _params(request: Request) -> dict[str, str]:
    params = dict(list(request.query_params.multi_items())[:PARAM_LIMIT])
    if request.method == "POST":
        raw = await read_limited(request, FORM_LIMIT)
        form = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        params.update(dict(form[:PARAM_LIMIT]))
    return {str(k)[:128]: str(v)[:4096] for k, v in params.items()}


def _not_found() -> Response:
    return _page("Not found", "<h1>This payment return is not known.</h1>", 404)


async def _come_back(token: str, request: Request) -> Response:
    ctx = get_context(request)
    try:
        params = await _params(request)
    except DetailError:
        params = {}
    attempt = await gateway_flow.find_by_token(ctx, token)
    if attempt is None:
        return _not_found()
    settled = await gateway_flow.settle_return(ctx, attempt, params)
    if settled.attempt.state in ATTEMPT_UNDECIDED:
        # No final answer yet, or a confirmation an operator must look at.
        return _processing_page()
    return await finish(
        request,
        settled.parent,
        settled.attempt.reference_number,
        answered_before=not settled.asked_gateway,
        attempt_state=settled.attempt.state,
    )


async def gateway_return(token: str, request: Request) -> Response:
    return await _come_back(token, request)


async def receipt(token: str, request: Request) -> Response:
    return await _come_back(token, request)


async def response(token: str, request: Request) -> Response:
    """Answer KNET's server at once: one line, no HTML, no HTTP redirect, never a 5xx."""
    ctx = get_context(request)
    target = gateway_flow.receipt_url(
        base_url(request), token if gateway_flow.token_ok(token) else UNKNOWN_RECEIPT
    )
    try:
        raw = await read_limited(request, FORM_LIMIT)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)[:PARAM_LIMIT])
        await gateway_flow.receive_posted_result(ctx, token, form)
    except Exception as exc:  # noqa: BLE001 - the gateway gets its answer regardless
        log.warning("posted gateway result not read: %s", type(exc).__name__)
    return PlainTextResponse(f"REDIRECT={target}", headers={"Cache-Control": "no-store"})


for path, handler, methods in (
    ("/checkout/return/{token}", gateway_return, ["GET", "POST"]),
    ("/checkout/receipt/{token}", receipt, ["GET", "POST"]),
    ("/checkout/response/{token}", response, ["POST"]),
):
    router.add_api_route(path, handler, methods=methods)
    router.add_api_route(path + "/", handler, methods=methods)
