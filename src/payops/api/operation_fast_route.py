"""The operation endpoints' POSTs, served before Starlette's router.

A refund reached ``run_operation`` through Starlette's router (a regex match against every route of
the app, the dashboard's included), FastAPI's dependency solving and its exit-stack and exception
middlewares: about 0.1 ms of CPU per refund (docs/performance.md). This plain ASGI middleware
matches the four operation routes itself and calls their endpoint functions with what FastAPI would
have given them: the same route objects (the OpenAPI document and the ``route`` label of the
metrics come from them), the same authentication dependency, the same ``Tracking-Key`` header, and
the app's own exception handlers. Every other request, and an operation path with another method
(405), goes on to the router as before. No route of the app takes a POST to these paths ahead of
them (tests/api/test_operation_fast_route.py compares every answer with the router's).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from payops.api.exception_handlers import handler_for
from payops.web.dependencies import authenticate

# Every operation path starts with it; ``Route.matches`` decides, this only spares the others a
# regex.
OPERATIONS_PREFIX = "/b/pbl/"
TRACKING_KEY_HEADER = "Tracking-Key"


def _declared_parameters(route: APIRoute) -> tuple[Any, ...]:
    dependant = route.dependant
    return (
        [(dependency.name, dependency.call) for dependency in dependant.dependencies],
        [(field.name, field.alias) for field in dependant.header_params],
        sorted(field.name for field in dependant.path_params),
        dependant.query_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.request_param_name,
    )


def served_directly(route: BaseRoute) -> APIRoute:
    """``route``, once checked to declare exactly what this middleware passes to its endpoint:
    an endpoint given another dependency or parameter would otherwise silently not get it."""
    if not isinstance(route, APIRoute) or route.methods != {"POST"}:
        raise TypeError(f"not a POST-only API route: {route!r}")
    expected: tuple[Any, ...] = (
        [("principal", authenticate)],
        [("tracking_key", TRACKING_KEY_HEADER)],
        sorted(route.param_convertors),
        [],
        [],
        [],
        "request",
    )
    if _declared_parameters(route) != expected:
        raise TypeError(f"{route.path} declares parameters the operation fast route does not pass")
    return route


class OperationFastRoute:
    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[BaseRoute],
        exception_handlers: Mapping[Any, Any],
    ) -> None:
        self.app = app
        self.routes = [served_directly(route) for route in routes]
        # The app's own registry (read when an error happens, so it is the complete one).
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(OPERATIONS_PREFIX)
            # FastAPI's own tracing reports the route its router selects, and dependency
            # overrides are applied by its dependency solving: both keep the ordinary path.
            and "fastapi.telemetry" not in scope
            and not scope["app"].dependency_overrides
        ):
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await self.serve(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def serve(self, route: APIRoute, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            # In FastAPI's order: the dependency (authentication) first, then the endpoint.
            principal = await authenticate(request)
            response = await route.endpoint(
                request=request,
                principal=principal,
                tracking_key=request.headers.get(TRACKING_KEY_HEADER),
                **scope["path_params"],
            )
        except Exception as exc:
            handler = handler_for(self.exception_handlers, exc)
            if handler is None:
                raise  # to ObserveRequests, which logs it and answers 500, as for any route
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)
