"""v1 operation endpoint: ``POST /b/pbl/v1/operation/{order_no}`` (with or without the slash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from payops.auth.permissions import OPERATION_PERMISSIONS
from payops.auth.service import Principal
from payops.domain import messages
from payops.errors import OperationFailed
from payops.operations import schemas
from payops.operations.service import run_operation
from payops.transactions.lookup import Lookup
from payops.web.dependencies import authenticate, get_context, require_permission
from payops.web.requests import identifier, read_object
from payops.web.responses import Detail, ExactJSONResponse

router = APIRouter(tags=["operations"])

OPERATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "capture/refund/void: ExternalOperation; cancel: InternalOperation",
        "model": schemas.ExternalOperationResponse | schemas.InternalOperationResponse,
    },
    400: {
        "model": schemas.OperationFailure,
        "description": "Refused by the rules or declined by the gateway, or field errors",
    },
    401: {"model": Detail},
    403: {"model": Detail},
    409: {"model": schemas.OperationFailure, "description": "Tracking-Key still in progress"},
    413: {"model": Detail},
    415: {"model": Detail},
    504: {
        "model": schemas.OperationPending,
        "description": "The gateway did not confirm; the operation will be reconciled",
    },
}


async def v1_operation(
    order_no: str,
    request: Request,
    principal: Principal = Depends(authenticate),
    tracking_key: str | None = Header(default=None, alias="Tracking-Key"),
) -> Response:
    ctx = get_context(request)
    order = identifier("order_no", order_no)
    body = await read_object(request, ctx.settings.max_body_bytes, schemas.OPERATION_FORM)
    operation, amount = schemas.parse_v1_operation(body)
    require_permission(principal, OPERATION_PERMISSIONS[operation])
    return ExactJSONResponse(
        await run_operation(
            ctx,
            principal,
            Lookup(order_no=order),
            operation,
            amount,
            schemas.tracking_key(tracking_key),
        )
    )


for path, name in (
    ("/b/pbl/v1/operation/{order_no}", "v1_operation"),
    ("/b/pbl/v1/operation/{order_no}/", "v1_operation_slash"),
):
    router.add_api_route(
        path,
        v1_operation,
        methods=["POST"],
        operation_id=name,
        responses=OPERATION_RESPONSES,
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": schemas.V1OperationRequest.model_json_schema()}
                }
            }
        },
        summary="Capture, refund, void or cancel a transaction by order number",
    )


async def v2_operation(
    request: Request,
    principal: Principal = Depends(authenticate),
    tracking_key: str | None = Header(default=None, alias="Tracking-Key"),
) -> Response:
    ctx = get_context(request)
    body = await read_object(request, ctx.settings.max_body_bytes, schemas.OPERATION_FORM)
    operation, amount, session_id, order_no = schemas.parse_v2_operation(body)
    require_permission(principal, OPERATION_PERMISSIONS[operation])
    if body.get("destination") == "wallet" and operation == "refund":
        raise OperationFailed(messages.WALLET_UNAVAILABLE, operation)
    return ExactJSONResponse(
        await run_operation(
            ctx,
            principal,
            Lookup(order_no=order_no, session_id=session_id),
            operation,
            amount,
            schemas.tracking_key(tracking_key),
        )
    )


for path, name in (
    ("/b/pbl/v2/operation/", "v2_operation"),
    ("/b/pbl/v2/operation", "v2_operation_no_slash"),
):
    router.add_api_route(
        path,
        v2_operation,
        methods=["POST"],
        operation_id=name,
        responses=OPERATION_RESPONSES,
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": schemas.V2OperationRequest.model_json_schema()}
                }
            }
        },
        summary="Run any of the six operations on a transaction named by session_id or order_no",
    )
