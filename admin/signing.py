"""Standard Webhooks (www.standardwebhooks.com): the secret, the body and its signature.

A secret reads ``whsec_`` + base64 of 32 random bytes; the signing key is those bytes.
Each attempt is signed anew with its own timestamp, while the id and body stay the same::

    webhook-id:        the event id (a receiver deduplicates on it)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any, Final

from gateway.core.outbox import rfc3339

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one attempt."""
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def event_body(type: str, at: datetime, data: dict[str, Any]) -> bytes:
    """``{"type", "timestamp", "data"}``: the same bytes on every attempt of an event."""
    body = {"type": type, "timestamp": rfc3339(at), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
