"""Moved to ``payops.connectors.kit.transport``; kept so existing imports keep working."""

from payops.connectors.kit.transport import shared_tls_context  # noqa: F401
