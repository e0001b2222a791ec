"""Checkout API: ``/b/checkout/v1/pymt-txn/`` create, and retrieve / PATCH / PUT by session id.

Every path is served with and without the trailing slash: the official SDK retrieves and patches
without it and does not follow redirects.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from payops.auth.service import Principal
from payops.checkout import service
from payops.checkout.schemas import CHECKOUT_FORM, CheckoutRequest
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import identifier, read_object
from payops.web.responses import Detail, ExactJSONResponse
from payops.webhooks.targets import refuse_private_fields

router = APIRouter(tags=["checkout"])
COMMON: dict[int | str, dict[str, Any]] = {
    400: {"description": 'Field errors: {"field": ["message"]}'},
    401: {"model": Detail},
    403: {"model": Detail},
    404: {"model": Detail},
    413: {"model": Detail},
    415: {"model": Detail},
}
BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": CheckoutRequest.model_json_schema()}}
    }
}


def base_url(request: Request) -> str:
    configured = get_context(request).settings.public_url
    return configured or str(request.base_url)


def can_view(principal: Principal) -> bool:
    # Ottu: viewing is implied by the add or change permission.
    return any(
        principal.can(code) for code in ("checkout.view", "checkout.create", "checkout.change")
    )


async def create_session(
    request: Request, principal: Principal = Depends(authenticate)
) -> JSONResponse:
    require_permission(principal, "checkout.create")
    ctx = get_context(request)
    body = await read_object(request, ctx.settings.max_body_bytes, CHECKOUT_FORM)
    await refuse_private_fields(
        body, ("webhook_url",), allow_private=ctx.settings.webhook_allow_private
    )
    return ExactJSONResponse(
        await service.create(ctx, principal, body, base_url(request)), status_code=201
    )


async def retrieve_session(
    session_id: str, request: Request, principal: Principal = Depends(authenticate)
) -> Response:
    if not can_view(principal):
        require_permission(principal, "checkout.view")
    sid = identifier("session_id", session_id)
    assert sid is not None
    return ExactJSONResponse(await service.retrieve(get_context(request), sid, base_url(request)))


async def _update(
    session_id: str, request: Request, principal: Principal, partial: bool
) -> Response:
    require_permission(principal, "checkout.change")
    ctx = get_context(request)
    sid = identifier("session_id", session_id)
    assert sid is not None
    body = await read_object(request, ctx.settings.max_body_bytes, CHECKOUT_FORM)
    await refuse_private_fields(
        body, ("webhook_url",), allow_private=ctx.settings.webhook_allow_private
    )
    return ExactJSONResponse(
        await service.update(ctx, principal, sid, body, base_url(request), partial=partial)
    )


async def patch_session(
    session_id: str, request: Request, principal: Principal = Depends(authenticate)
) -> Response:
    return await _update(session_id, request, principal, partial=True)


async def put_session(
    session_id: str, request: Request, principal: Principal = Depends(authenticate)
) -> Response:
    return await _update(session_id, request, principal, partial=False)


for suffix, tag in (("/", ""), ("", "_no_slash")):
    router.add_api_route(
        f"/b/checkout/v1/pymt-txn{suffix}",
        create_session,
        methods=["POST"],
        operation_id=f"checkout_create{tag}",
        status_code=201,
        responses={201: {"description": "The new payment session"}, **COMMON},
        openapi_extra=BODY,
        summary="Create a payment session",
    )
    path = f"/b/checkout/v1/pymt-txn/{{session_id}}{suffix}"
    router.add_api_route(
        path,
        retrieve_session,
        methods=["GET"],
        operation_id=f"checkout_retrieve{tag}",
        responses=COMMON,
        summary="Retrieve a payment session",
    )
    router.add_api_route(
        path,
        patch_session,
        methods=["PATCH"],
        operation_id=f"checkout_patch{tag}",
        responses=COMMON,
        openapi_extra=BODY,
        summary="Change some fields of a payment session",
    )
    router.add_api_route(
        path,
        put_session,
        methods=["PUT"],
        operation_id=f"checkout_put{tag}",
        responses=COMMON,
        openapi_extra=BODY,
        summary="Replace a payment session's fields",
    )
