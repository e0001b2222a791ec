"""The ASGI application: routers, DRF-shaped error bodies, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from payops import background
from payops.config import Settings, get_settings
from payops.context import AppContext
from payops.api import openapi
from payops.api.metrics import exposition
from payops.api.observe import ObserveRequests
from payops.checkout.endpoints import router as checkout_router
from payops.checkout.hosted import router as hosted_router
from payops.transactions import expiry
from payops.transactions.endpoints import router as import_router
from payops.webhooks import delivery
from payops.domain import messages
from payops.gateways.endpoints import router as payment_methods_router
from payops.gateways.notifications import router as notifications_router
from payops.errors import ApiError
from payops.inquiry.endpoints import router as inquiry_router
from payops.operations import reconciler
from payops.operations.endpoints import router as operations_router

log = logging.getLogger("payops.http")


async def _summary(pass_: Any) -> dict[str, int]:
    summary = await pass_
    return dict(summary.outcomes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = AppContext.build(settings)
        ctx = app.state.ctx
        loops = [
            asyncio.create_task(background.every(interval, name, work))
            for interval, name, work in (
                (settings.reconcile_interval_seconds, "reconciliation",
                 lambda: _summary(reconciler.reconcile_once(ctx))),
                (settings.webhook_interval_seconds, "webhook delivery",
                 lambda: delivery.deliver_due(ctx)),
                (settings.expiry_interval_seconds, "expiry", lambda: expiry.expire_due(ctx)),
            )
            if interval > 0
        ]
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await app.state.ctx.aclose()

    app = FastAPI(
        title="PayOps",
        version="0.1.0",
        description="Payment operations, wire-compatible with Ottu's Operations API.",
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    requests_total = Counter(
        "payops_http_requests_total", "HTTP requests", ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram("payops_http_request_seconds", "HTTP latency", ["route"], registry=registry)
    app.state.metrics = registry

    app.add_middleware(ObserveRequests, requests_total=requests_total, latency=latency)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            detail = messages.NOT_FOUND
        elif exc.status_code == 405:
            detail = messages.METHOD_NOT_ALLOWED.format(method=request.method)
        else:
            detail = str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: dict[str, list[str]] = {}
        for error in exc.errors():
            field = str(error["loc"][-1]) if error.get("loc") else "non_field_errors"
            errors.setdefault(field, []).append(str(error.get("msg", "Invalid value.")))
        return JSONResponse(errors, status_code=400)

    @app.exception_handler(SQLAlchemyTimeout)
    async def database_busy(_: Request, exc: SQLAlchemyTimeout) -> JSONResponse:
        # Every pooled connection is in use: an overload, not a fault. Nothing was changed.
        log.warning("database pool exhausted")
        return JSONResponse({"detail": messages.BUSY}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return JSONResponse({"detail": "A server error occurred."}, status_code=500)

    @app.get("/healthz", tags=["operability"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operability"], responses={503: {"description": "database down"}})
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.ctx.db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["operability"], response_class=Response)
    async def metrics() -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    openapi.install(app)
    app.include_router(checkout_router)
    app.include_router(hosted_router)
    app.include_router(payment_methods_router)
    app.include_router(notifications_router)
    app.include_router(import_router)
    app.include_router(operations_router)
    app.include_router(inquiry_router)
    return app
