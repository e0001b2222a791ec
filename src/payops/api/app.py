"""The ASGI application: routers, DRF-shaped error bodies, health and metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from payops import background, dashboard, stored_secrets
from payops.api import exception_handlers, openapi
from payops.api.metrics import exposition
from payops.api.observe import ObserveRequests
from payops.api.operation_fast_route import OperationFastRoute
from payops.auth.metrics import AuthMetrics
from payops.checkout.endpoints import router as checkout_router
from payops.checkout.hosted import router as hosted_router
from payops.checkout.payment_methods import router as payment_methods_router
from payops.checkout.returns import router as returns_router
from payops.config import Settings, get_settings
from payops.context import AppContext
from payops.domain import messages
from payops.gateways.crypto import SecretKeyMismatch
from payops.inquiry.endpoints import router as inquiry_router
from payops.notifications.endpoints import router as notifications_router
from payops.operations import alerts, reconciler
from payops.operations.endpoints import router as operations_router
from payops.operations.review_endpoints import router as review_router
from payops.transactions import attempt_inquiry, expiry
from payops.transactions.attempt_review_endpoints import router as attempt_review_router
from payops.transactions.endpoints import router as import_router
from payops.web.cross_site import CrossSiteGuard
from payops.webhooks import delivery

log = logging.getLogger("payops.http")


async def _summary(pass_: Any) -> dict[str, int]:
    summary = await pass_
    return dict(summary.outcomes)


def metrics_access(request: Request) -> None:
    """/metrics shows business volumes: served only to ``Authorization: Bearer
    <PAYOPS_METRICS_TOKEN>``, and not at all (404) while no token is configured."""
    expected = request.app.state.ctx.settings.metrics_token
    if not expected:
        raise StarletteHTTPException(404)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise StarletteHTTPException(
            401, messages.AUTH_MISSING, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise StarletteHTTPException(
            401,
            messages.METRICS_TOKEN_INVALID,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ctx = AppContext.build(settings, auth_metrics=auth_metrics)
        ctx = app.state.ctx
        try:
            # A wrong PAYOPS_SECRET_KEY stops the start with one line, not later as timeouts.
            await stored_secrets.startup(ctx)
        except SecretKeyMismatch:
            await ctx.aclose()
            raise
        except Exception as exc:
            # The database is not reachable (or not migrated) yet: start anyway, as before;
            # /readyz reports it, and `payops serve` has checked the key before starting.
            log.warning("stored secrets not checked at start-up: %s", type(exc).__name__)
        loops = [
            asyncio.create_task(background.every(interval, name, work))
            for interval, name, work in (
                (
                    settings.reconcile_interval_seconds,
                    "reconciliation",
                    lambda: _summary(reconciler.reconcile_once(ctx)),
                ),
                (
                    settings.webhook_interval_seconds,
                    "webhook delivery",
                    lambda: delivery.deliver_due(ctx),
                ),
                (settings.expiry_interval_seconds, "expiry", lambda: expiry.expire_due(ctx)),
                (
                    settings.attempt_inquiry_interval_seconds,
                    "attempt inquiry",
                    lambda: attempt_inquiry.inquire_due_attempts(ctx),
                ),
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
        "payops_http_requests_total",
        "HTTP requests",
        ["route", "method", "status"],
        registry=registry,
    )
    latency = Histogram("payops_http_request_seconds", "HTTP latency", ["route"], registry=registry)
    server_errors = Counter(
        "payops_http_server_errors_total",
        "HTTP 5xx answers (unexpected errors included)",
        ["route", "status"],
        registry=registry,
    )
    registry.register(alerts.CONTRADICTED_RESOLUTIONS)
    app.state.metrics = registry
    auth_metrics = AuthMetrics(registry)

    # The operation endpoints' POSTs (refunds above all) skip the router, FastAPI's dependency
    # solving and its middlewares; inside the cross-site guard and `observe`, like the router.
    app.add_middleware(
        OperationFastRoute,
        routes=operations_router.routes,
        exception_handlers=app.exception_handlers,
    )

    # Inside `observe` (counted and logged with a request id), before routing and
    # authentication: a cross-site request is refused before any work (decisions §13).
    app.add_middleware(CrossSiteGuard, settings=settings)

    app.add_middleware(
        ObserveRequests, requests_total=requests_total, latency=latency, server_errors=server_errors
    )

    if settings.trusted_proxy_list:
        # The client address (failed-login counters) and scheme come from X-Forwarded-For and
        # X-Forwarded-Proto only when the peer is a listed proxy; added last, so it runs first.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)

    exception_handlers.install(app)

    @app.get("/healthz", tags=["operability"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operability"], responses={503: {"description": "database down"}})
    async def readyz(request: Request) -> JSONResponse:
        try:
            # Ready means able to record an operation: a reachable database that refuses
            # writes (a read-only SQLite file, a standby) is not ready.
            await request.app.state.ctx.db.can_write()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        tags=["operability"],
        response_class=Response,
        dependencies=[Depends(metrics_access)],
        responses={
            401: {"description": "missing or wrong Bearer token"},
            404: {"description": "PAYOPS_METRICS_TOKEN is not set"},
        },
    )
    async def metrics() -> Response:
        return Response(exposition(registry), media_type=CONTENT_TYPE_LATEST)

    openapi.install(app)
    app.include_router(checkout_router)
    app.include_router(hosted_router)
    app.include_router(returns_router)
    app.include_router(payment_methods_router)
    app.include_router(notifications_router)
    app.include_router(import_router)
    app.include_router(operations_router)
    app.include_router(review_router)
    app.include_router(attempt_review_router)
    app.include_router(inquiry_router)
    dashboard.install(app)
    return app
