"""Request parsing for inquiry endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from payops.transactions.lookup import parse_lookup
from payops.web.requests import boolean, url


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


class V2InquiryRequest(BaseModel):
    session_id: str | None = None
    order_no: str | None = None
    notify_webhook_url: bool = False
    webhook_url: str | None = None
    disclose_to_merchant: bool = False
    disclosure_url: str | None = None


def parse_v2_inquiry(body: dict[str, Any]) -> tuple[str | None, str | None, bool, str | None]:
    """(session_id, order_no, disclose, target URL). Both generations of options are accepted:
    ``notify_webhook_url``/``webhook_url`` (current) and ``disclose_to_merchant``/``disclosure_url``
    (2023); either flag asks for a disclosure, and an explicit URL wins over the stored one."""
    session_id, order_no = parse_lookup(body)
    notify = boolean("notify_webhook_url", body.get("notify_webhook_url"))
    disclose = boolean("disclose_to_merchant", body.get("disclose_to_merchant"))
    target = url("webhook_url", body.get("webhook_url")) or url(
        "disclosure_url", body.get("disclosure_url")
    )
    return session_id, order_no, notify or disclose, target
