"""What the two operator-review doors share (``/b/payops/v1/operations/…`` and
``/b/payops/v1/attempts/…``, and the CLI's matching commands): the length limit of a reason or
evidence text, how one is read, and the documented failure bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from payops.domain import messages
from payops.errors import field_error
from payops.web.responses import Detail

# The longest reason or evidence an operator may give (API and CLI: one rule for both doors).
TEXT_MAX = 2000


class ReviewFailure(BaseModel):
    detail: str
    result: str


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ReviewFailure},
    401: {"model": Detail},
    403: {"model": Detail},
    404: {"model": ReviewFailure},
}


def review_text(name: str, value: Any, *, required: bool) -> str:
    """A reason or evidence field: a string of at most ``TEXT_MAX`` characters; blank counts as
    absent (a field error when ``required``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise field_error(name, messages.FIELD_REQUIRED)
        return ""
    if not isinstance(value, str):
        raise field_error(name, messages.NOT_A_STRING)
    if len(value) > TEXT_MAX:
        raise field_error(name, messages.MAX_LENGTH.format(n=TEXT_MAX))
    return value
