"""The JSON response the API answers with (numbers a merchant sent come back exactly), and the
response shapes every endpoint shares."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from payops.exact_json import dumps


class ExactJSONResponse(JSONResponse):
    """Compact JSON, like Starlette's, that writes an ``extra`` decimal as it was accepted.

    Endpoints whose body carries merchant data return this directly: FastAPI's own serialization
    of a returned dict would turn those numbers into floats (and refuses very deep values)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


class Detail(BaseModel):
    """The ``{"detail": …}`` body of an error or a plain answer (DRF's shape)."""

    detail: str
