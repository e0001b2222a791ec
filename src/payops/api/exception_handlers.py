"""How an exception becomes an answer: DRF-shaped error bodies, 503 for a database outage, 500.

Registered on the app by ``install``; the operation endpoints' fast route
(``api/operation_fast_route.py``) looks its exceptions up in the same registry with
``handler_for``, so there is one mapping for both ways in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from payops.db.engine import DATABASE_UNAVAILABLE
from payops.domain import messages
from payops.errors import ApiError, DatabaseUnavailable

log = logging.getLogger("payops.http")

ExceptionHandler = Callable[[Request, Any], Awaitable[Response] | Response]


async def api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        detail = messages.NOT_FOUND
    elif exc.status_code == 405:
        detail = messages.METHOD_NOT_ALLOWED.format(method=request.method)
    else:
        detail = str(exc.detail)
    return JSONResponse(
        {"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        field = str(error["loc"][-1]) if error.get("loc") else "non_field_errors"
        errors.setdefault(field, []).append(str(error.get("msg", "Invalid value.")))
    return JSONResponse(errors, status_code=400)


async def database_busy(_: Request, exc: SQLAlchemyTimeout) -> JSONResponse:
    # Every pooled connection is in use: an overload, not a fault. Nothing was changed.
    log.warning("database pool exhausted")
    return JSONResponse({"detail": messages.BUSY}, status_code=503, headers={"Retry-After": "1"})


async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # The database is down or refuses writes. Nothing was done (a settle that fails after
    # the gateway call answers 504 pending instead, in the operation service).
    log.error("database unavailable: %s", type(exc).__name__)
    error = DatabaseUnavailable()
    return JSONResponse(error.body, status_code=error.status_code, headers=error.headers)


async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    # A connection lost mid-statement arrives as a plain DBAPIError (asyncpg's
    # ConnectionDoesNotExistError); SQLAlchemy marks it invalidated. Anything else is a bug.
    if (
        exc.connection_invalidated
        or isinstance(exc.orig, DATABASE_UNAVAILABLE)
        or isinstance(getattr(exc.orig, "__cause__", None), DATABASE_UNAVAILABLE)
    ):
        return await database_unavailable(request, exc)
    return await unexpected(request, exc)


async def unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error: %s", type(exc).__name__)
    return JSONResponse({"detail": messages.SERVER_ERROR}, status_code=500)


def install(app: FastAPI) -> None:
    app.exception_handler(ApiError)(api_error)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(validation_error)
    app.exception_handler(SQLAlchemyTimeout)(database_busy)
    for error_type in DATABASE_UNAVAILABLE:
        app.exception_handler(error_type)(database_unavailable)
    app.exception_handler(DBAPIError)(database_error)
    # Starlette gives the handler of Exception to its outermost middleware, not to the routes':
    # an error no other handler takes reaches ObserveRequests first, which answers the 500.
    app.exception_handler(Exception)(unexpected)


def handler_for(
    handlers: Mapping[Any, ExceptionHandler], exc: Exception
) -> ExceptionHandler | None:
    """The handler Starlette's exception middleware would pick for ``exc`` from the app's
    ``exception_handlers``: the nearest class in its MRO, ``Exception``'s own excluded."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = handlers.get(cls)
        if handler is not None:
            return handler
    return None
