"""The shapes of the webhook documents, each written once: webhooks, jobs (one event for one
webhook, until it is posted or given up) and attempts (one POST each)."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.ids import now_iso
from gateway.store import Doc, public

#: What only the server sees of a webhook: the signing secret is shown once, at create.
WEBHOOK_INTERNAL = ("secret", "cursor")
#: A job's states: waiting for an attempt, being posted, and the three ends.
PENDING, SENDING, SUCCEEDED, FAILED, SUPERSEDED = "pending", "sending", "succeeded", "failed", "superseded"


def new_webhook(webhook_id: str, owner: str, fields: dict[str, Any], secret: str, cursor: str) -> Doc:
    """A webhook (``fields``: url, events, description, detail), enabled, that posts events after ``cursor``."""
    now = now_iso()
    return {"id": webhook_id, "owner": owner, "description": "", "events": None, "detail": "message", **fields,
            "enabled": True, "disabled_reason": None, "consecutive_failures": 0, "secret": secret,
            "cursor": cursor, "created": now, "updated": now}


def public_webhook(webhook: Doc) -> Doc:
    """A webhook as its owner sees it (never its secret)."""
    return public(webhook, *WEBHOOK_INTERNAL)


def job_id(webhook_id: str, cursor: str) -> str:
    """The job of one event for one webhook: its ``webhook-id`` header, the same on every attempt and
    in every process, so a job is made once however many processes see the event."""
    return "msg_" + hashlib.sha256(f"{webhook_id}\n{cursor}".encode()).hexdigest()[:32]


def new_job(webhook: Doc, kind: str, email_id: str, cursor: str, data: dict[str, Any], timestamp: str | None) -> Doc:
    """One event for one webhook, waiting for its first attempt."""
    return {"id": job_id(webhook["id"], cursor), "owner": webhook["owner"], "webhook": webhook["id"],
            "type": kind, "email": email_id, "cursor": cursor, "data": data, "timestamp": timestamp or now_iso(),
            "status": PENDING, "attempts": 0, "next_attempt_at": None, "created": now_iso()}


def new_attempt(attempt_id: str, job: Doc, attempt: int, ok: bool, code: int | None, duration_ms: float,
                error: str | None) -> Doc:
    """The record of one POST of a job."""
    return {"id": attempt_id, "owner": job["owner"], "webhook": job["webhook"], "message_id": job["id"],
            "type": job["type"], "cursor": job.get("cursor"), "attempt": attempt,
            "status": SUCCEEDED if ok else FAILED, "response_code": code, "duration_ms": round(duration_ms, 1),
            "error": error, "at": now_iso()}
