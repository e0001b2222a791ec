"""Errors that carry their HTTP status and the exact body the Ottu contract documents."""

from __future__ import annotations

from typing import Any

from payops.domain import messages


class ApiError(Exception):
    status_code = 400

    def __init__(
        self, body: dict[str, Any] | list[Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(body))
        self.body = body
        self.headers = headers or {}


class FieldErrors(ApiError):
    """DRF-shaped ``{"field": ["message"]}``."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)


def field_error(field: str, message: str) -> FieldErrors:
    return FieldErrors({field: [message]})


class OperationFailed(ApiError):
    def __init__(self, detail: str, operation: str, **extra: Any) -> None:
        super().__init__({"detail": detail, "operation": operation, "result": "failed", **extra})


class InquiryFailed(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "result": "failed"})


class DetailError(ApiError):
    def __init__(
        self, detail: str, status_code: int, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__({"detail": detail}, headers)
        self.status_code = status_code


class NotFound(DetailError):
    def __init__(self, detail: str = messages.NOT_FOUND) -> None:
        super().__init__(detail, 404)


class AuthenticationFailed(DetailError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 401, {"WWW-Authenticate": 'Basic realm="api"'})


class PermissionDenied(DetailError):
    def __init__(self, detail: str = messages.PERMISSION_DENIED) -> None:
        super().__init__(detail, 403)


class Throttled(DetailError):
    def __init__(self, retry_after: int) -> None:
        retry_after = max(int(retry_after), 1)
        super().__init__(
            messages.THROTTLED.format(seconds=retry_after), 429, {"Retry-After": str(retry_after)}
        )


class TrackingKeyInProgress(ApiError):
    status_code = 409

    def __init__(self) -> None:
        super().__init__(
            {
                "detail": messages.TRACKING_IN_PROGRESS,
                "operation": "operation_tracking",
                "result": "failed",
            }
        )


class TrackingKeyMismatch(ApiError):
    """The Tracking-Key is bound to a different operation or amount (decisions §13)."""

    status_code = 409

    def __init__(self) -> None:
        super().__init__(
            {
                "detail": messages.TRACKING_KEY_MISMATCH,
                "operation": "operation_tracking",
                "result": "failed",
            }
        )


class DatabaseUnavailable(DetailError):
    def __init__(self, retry_after: int = 5) -> None:
        super().__init__(messages.DATABASE_UNAVAILABLE, 503, {"Retry-After": str(retry_after)})


class GatewayUnconfirmed(ApiError):
    status_code = 504

    def __init__(self, operation: str, reference_number: str) -> None:
        super().__init__(
            {
                "detail": messages.GATEWAY_UNCONFIRMED,
                "operation": operation,
                "result": "pending",
                "reference_number": reference_number,
            }
        )
