"""What one attempt sends: the JSON body and the Standard Webhooks headers, signed afresh each time."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

from gateway.store import Doc

USER_AGENT = "gateway-webhooks/1"


def new_secret() -> str:
    """A signing secret in the ``whsec_<base64>`` form Standard Webhooks libraries take."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def body(job: Doc) -> str:
    """The body: the event's type, when it happened, and its data (the event, with its cursor)."""
    return json.dumps({"type": job["type"], "timestamp": job["timestamp"], "data": job["data"]},
                      separators=(",", ":"), ensure_ascii=False)


def headers(secret: str, message_id: str, payload: str, attempt: int, now: datetime | None = None) -> dict[str, str]:
    """The headers of one attempt: ``webhook-id`` (stable across attempts), ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of id, timestamp and body), and the attempt number."""
    now = now or datetime.now(timezone.utc)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, payload),
        "webhook-attempt": str(attempt),
    }
