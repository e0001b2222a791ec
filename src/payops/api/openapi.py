"""The published OpenAPI document: PayOps's real error bodies, not FastAPI's defaults.

FastAPI documents a 422 validation error that PayOps never sends (field errors are DRF-shaped
400s). This replaces it, and documents the answers every authenticated endpoint can give.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

# Swagger UI and ReDoc, served from the installed ``fastapi-offline`` package (pinned in
# pyproject.toml) instead of a CDN: /docs and /redoc work without internet access.
DOCS_ASSETS_PATH = "/docs/assets"

DETAIL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
FIELD_ERRORS = {
    "type": "object",
    "description": 'DRF field errors: {"field": ["message"]}, nested for nested objects',
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object"},
        ]
    },
}
COMMON_ERRORS = {
    "401": "Missing or invalid credentials (with WWW-Authenticate)",
    "403": "Authenticated but lacking the permission",
    "404": "Not found",
    "413": "Request body too large",
    "415": "Unsupported media type",
    "429": "Throttled (with Retry-After)",
    "503": "Overloaded: every database connection or password-verification slot is busy "
    "(with Retry-After)",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def install(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Detail"] = DETAIL
        schemas["FieldErrors"] = FIELD_ERRORS
        components["securitySchemes"] = {
            "basicAuth": {"type": "http", "scheme": "basic"},
            "apiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Api-Key <prefix>.<secret>",
            },
        }
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if not path.startswith("/b/"):
                    continue
                if not path.startswith("/b/pg/notifications/"):  # gateways sign those instead
                    operation["security"] = [{"basicAuth": []}, {"apiKey": []}]
                existing_400 = (
                    responses.get("400", {})
                    .get("content", {})
                    .get("application/json", {})
                    .get("schema")
                )
                alternatives = [
                    {"$ref": "#/components/schemas/FieldErrors"},
                    {"$ref": "#/components/schemas/Detail"},
                ]
                if existing_400:
                    alternatives.insert(0, existing_400)
                responses["400"] = {
                    "description": responses.get("400", {}).get(
                        "description", "Field errors or a refused request"
                    ),
                    "content": _json({"anyOf": alternatives}),
                }
                for code, description in COMMON_ERRORS.items():
                    responses.setdefault(code, {"description": description})
                    responses[code].setdefault(
                        "content", _json({"$ref": "#/components/schemas/Detail"})
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
    install_docs(app)


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc with their JavaScript, CSS and icon served by PayOps."""
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if getattr(route, "path", None) not in ("/docs", "/redoc")
    ]
    app.mount(
        DOCS_ASSETS_PATH,
        StaticFiles(directory=str(files("fastapi_offline") / "static")),
        name="docs-assets",
    )

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_PATH}/{name}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
