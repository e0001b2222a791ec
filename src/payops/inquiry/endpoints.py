"""v1 inquiry endpoint: ``POST /b/pbl/v1/inquiry/{order_no}`` (with or without the slash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from payops.auth.permissions import OPERATION_PERMISSIONS
from payops.auth.service import Principal
from payops.inquiry import schemas
from payops.inquiry.service import inquire
from payops.transactions.lookup import Lookup
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import identifier, read_object
from payops.web.responses import Detail, ExactJSONResponse
from payops.webhooks.targets import refuse_private_fields

router = APIRouter(tags=["inquiry"])

INQUIRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The payment body (same as the payment webhook)"},
    400: {"model": schemas.InquiryFailure},
    401: {"model": Detail},
    403: {"model": Detail},
    404: {"model": schemas.InquiryFailure},
    413: {"model": Detail},
    415: {"model": Detail},
}


async def v1_inquiry(
    order_no: str, request: Request, principal: Principal = Depends(authenticate)
) -> Response:
    ctx = get_context(request)
    order = identifier("order_no", order_no)
    body = await read_object(request, ctx.settings.max_body_bytes)
    disclose, disclosure_url = schemas.parse_v1_inquiry(body)
    require_permission(principal, OPERATION_PERMISSIONS["inquiry"])
    await refuse_private_fields(
        body, ("disclosure_url",), allow_private=ctx.settings.webhook_allow_private
    )
    return ExactJSONResponse(
        await inquire(
            ctx, principal, Lookup(order_no=order), disclose=disclose, disclosure_url=disclosure_url
        )
    )


for path, name in (
    ("/b/pbl/v1/inquiry/{order_no}", "v1_inquiry"),
    ("/b/pbl/v1/inquiry/{order_no}/", "v1_inquiry_slash"),
):
    router.add_api_route(
        path,
        v1_inquiry,
        methods=["POST"],
        operation_id=name,
        responses=INQUIRY_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": schemas.V1InquiryRequest.model_json_schema()}
                },
            }
        },
        summary="Inquire a transaction's payment status by order number",
    )


async def v2_inquiry(request: Request, principal: Principal = Depends(authenticate)) -> Response:
    ctx = get_context(request)
    body = await read_object(request, ctx.settings.max_body_bytes)
    session_id, order_no, disclose, target = schemas.parse_v2_inquiry(body)
    require_permission(principal, OPERATION_PERMISSIONS["inquiry"])
    await refuse_private_fields(
        body, ("webhook_url", "disclosure_url"), allow_private=ctx.settings.webhook_allow_private
    )
    return ExactJSONResponse(
        await inquire(
            ctx,
            principal,
            Lookup(order_no=order_no, session_id=session_id),
            disclose=disclose,
            disclosure_url=target,
        )
    )


for path, name in (
    ("/b/pbl/v2/inquiry/", "v2_inquiry"),
    ("/b/pbl/v2/inquiry", "v2_inquiry_no_slash"),
):
    router.add_api_route(
        path,
        v2_inquiry,
        methods=["POST"],
        operation_id=name,
        responses=INQUIRY_RESPONSES,
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": schemas.V2InquiryRequest.model_json_schema()}
                }
            }
        },
        summary="Inquire a transaction's payment status by session_id or order_no",
    )
