"""What every HTTP connector shares."""

from __future__ import annotations

import ssl
from functools import lru_cache

import httpx


@lru_cache(maxsize=1)
def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every gateway client. Building one loads the CA bundle
    (tens of milliseconds to 0.3 s), and PayOps builds a connector per call."""
    return httpx.create_ssl_context(trust_env=False)
