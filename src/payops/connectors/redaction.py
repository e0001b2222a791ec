"""Moved to ``payops.connectors.kit.redaction``; kept so existing imports keep working."""

from payops.connectors.kit.redaction import (  # noqa: F401
    REDACTED,
    field_set,
    normalise,
    redact,
    redact_result,
)
