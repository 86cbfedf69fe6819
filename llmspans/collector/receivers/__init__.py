"""OTLP receivers: thin shells that decode requests and hand them to the processor."""

from __future__ import annotations

import hmac


def token_matches(presented: str | None, token: str) -> bool:
    """Whether an ``Authorization`` value carries the bearer ``token`` (constant time)."""
    if presented is None:
        return False
    scheme, _, credentials = presented.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
