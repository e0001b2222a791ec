"""Incoming gateway notifications: ``POST /b/pg/notifications/{pg_code}`` (the door only; the
work is in ``service.py``). Answers are deliberately uninformative.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from payops.errors import NotFound
from payops.notifications import service
from payops.web.dependencies import get_context
from payops.web.requests import read_limited

router = APIRouter(tags=["gateway notifications"])
NOTIFICATION_LIMIT = 262_144


async def receive(pg_code: str, request: Request) -> JSONResponse:
    ctx = get_context(request)
    gateway = await service.gateway_named(ctx, pg_code)
    if gateway is None:
        raise NotFound()
    body = await read_limited(request, NOTIFICATION_LIMIT)
    try:
        authentic = await service.receive(ctx, gateway, dict(request.headers), body)
    except service.NotAccepted:
        raise NotFound() from None
    if not authentic:
        return JSONResponse({"detail": "Unable to verify notification"}, status_code=401)
    return JSONResponse({"detail": "Success"})


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Accepted (and confirmed by inquiry where it named something known)"},
    401: {"description": "Not authentic"},
    404: {"description": "No such gateway configuration"},
}
router.add_api_route(
    "/b/pg/notifications/{pg_code}",
    receive,
    methods=["POST"],
    operation_id="gateway_notification",
    responses=RESPONSES,
    summary="Receive a gateway's notification (verified, then confirmed by inquiry)",
)
router.add_api_route(
    "/b/pg/notifications/{pg_code}/",
    receive,
    methods=["POST"],
    operation_id="gateway_notification_slash",
    responses=RESPONSES,
    include_in_schema=False,
)
