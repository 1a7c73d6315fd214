"""What the client hands its caller: errors, replies (decoded from ``response`` messages), and the
``exp`` of a token, read without checking it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any


class GatewayError(Exception):
    """A call that failed: ``code`` is the server's error code, or ``timeout`` or ``closed``;
    ``outcome_unknown`` says a write was sent and never answered (it may or may not have been done)."""

    def __init__(self, code: str, message: str, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.outcome_unknown = outcome_unknown


@dataclass
class Reply:
    """A response: the status, headers (name -> values) and the body: parsed when it is JSON, bytes
    when it is binary (sent as base64), else text."""

    status: int
    headers: dict[str, list[str]]
    body: Any


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT (seconds since the epoch), read without checking it; None when there is none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, AttributeError):
        return None




def reply_of(message: dict[str, Any]) -> Reply:
    """A ``response`` message as a :class:`Reply`: a JSON body sent as a value, or as text, parsed; a
    binary one (base64) as bytes; any other as text."""
    headers = message.get("headers") or {}
    body: Any = message.get("body", "")
    encoding = message.get("body_encoding")
    if encoding == "base64":  # a binary body (an attachment, a raw message): bytes
        body = base64.b64decode(body)
    elif encoding != "json" and (headers.get("Content-Type") or [""])[0].startswith("application/json") and body:
        body = json.loads(body)
    return Reply(message.get("status", 0), headers, body)
