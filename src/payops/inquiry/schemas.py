"""Request parsing for inquiry endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from payops.api.requests import boolean, url


class V1InquiryRequest(BaseModel):
    disclose_to_merchant: bool = False
    disclosure_url: str | None = None


class InquiryFailure(BaseModel):
    detail: str
    result: str


def parse_v1_inquiry(body: dict[str, Any]) -> tuple[bool, str | None]:
    disclose = boolean("disclose_to_merchant", body.get("disclose_to_merchant"))
    target = url("disclosure_url", body.get("disclosure_url"))
    return disclose, target
