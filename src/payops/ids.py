"""Identifiers (decisions §2)."""

from __future__ import annotations

import secrets
import string

_REFERENCE_ALPHABET = string.ascii_uppercase + string.digits
REFERENCE_LENGTH = 16  # fits gateways with tight merchant-reference limits (KNET track id ≤ 20)


def new_session_id() -> str:
    return secrets.token_hex(20)


def new_reference_number() -> str:
    return "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def new_event_id() -> str:
    return secrets.token_hex(16)
