"""Identifiers (decisions §2)."""

from __future__ import annotations

import secrets
import string

_REFERENCE_ALPHABET = string.ascii_uppercase + string.digits
REFERENCE_LENGTH = 16  # fits gateways with tight merchant-reference limits (KNET track id ≤ 20)


def new_session_id() -> str:
    return secrets.token_hex(20)


# Random bytes below this multiple of the alphabet's size map onto it uniformly (byte % 36).
_UNIFORM_BELOW = 256 - 256 % len(_REFERENCE_ALPHABET)


def new_reference_number() -> str:
    # One read of the system's randomness for all characters: secrets.choice per character cost
    # a system call each, on every operation (docs/performance.md).
    chars: list[str] = []
    while len(chars) < REFERENCE_LENGTH:
        for byte in secrets.token_bytes(REFERENCE_LENGTH + 8):
            if byte < _UNIFORM_BELOW:
                chars.append(_REFERENCE_ALPHABET[byte % len(_REFERENCE_ALPHABET)])
                if len(chars) == REFERENCE_LENGTH:
                    break
    return "".join(chars)


def new_event_id() -> str:
    return secrets.token_hex(16)
