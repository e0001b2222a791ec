"""The back office: a server-rendered web dashboard at ``/dashboard`` (issue 15)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    """Add the dashboard's pages, its static files and its error pages to the API app.
    Every page sets its own security headers (``rendering.PAGE_HEADERS``), so the API's
    requests pay for no extra middleware."""
    from payops.dashboard.endpoints import router
    from payops.dashboard.rendering import render
    from payops.dashboard.service import DashboardError
    from payops.dashboard.sessions import current_visitor
    from payops.dashboard.web import SignInNeeded, redirect

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> Response:
        if request.method == "GET":
            return redirect("/dashboard/login", next=exc.next_path)
        return redirect("/dashboard/login")

    @app.exception_handler(DashboardError)
    async def dashboard_error(request: Request, exc: DashboardError) -> Response:
        visitor = await current_visitor(request.app.state.ctx, request)
        return render(
            request, visitor, "error.html", status_code=exc.status_code, message=exc.message
        )

    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")

    async def page_not_found(request: Request, rest: str) -> Response:
        visitor = await current_visitor(request.app.state.ctx, request)
        return render(
            request,
            visitor,
            "error.html",
            status_code=404,
            message="There is no such page in the dashboard.",
        )

    # Last, so it never shadows a page or the static files.
    app.add_api_route(
        "/dashboard/{rest:path}", page_not_found, methods=["GET"], include_in_schema=False
    )
