"""The event model: which writes are events, and what a client receives for one.

This module is the one statement of the rule.  The storage backends record
events as they commit; each evaluates :func:`event_kind` where the write
happens (SQLite in Python, RethinkDB in a ReQL mirror of it, and the SQLite
migration that converted older logs in SQL).  ``tests/test_event_rule.py``
holds every mirror to this function over every case.

It imports nothing of the project's, so every layer may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: The kinds of event the emails table makes, as ``subscribe``'s ``events`` names them.
EVENT_KINDS: tuple[str, ...] = ("receipt", "delivery", "deferred", "failed")
#: The kinds that report an outbound email's delivery status (a newer one supersedes an older one).
STATUS_KINDS: frozenset[str] = frozenset({"delivery", "deferred", "failed"})

#: How much of an event's email a subscriber asks for (``subscribe``'s ``detail``).
DETAIL_LEVELS: tuple[str, ...] = ("summary", "message", "full")
#: Characters of text body in a ``message`` event's ``snippet``.
SNIPPET_LENGTH = 200


def event_kind(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """The event a write to the emails table makes, or None (most writes make none).

    - ``receipt``: an inbound email was stored;
    - ``delivery``: an outbound email's status became ``delivered``;
    - ``failed``: an outbound email's status became ``failed`` (delivery gave up);
    - ``deferred``: an outbound email went back to ``queued`` with one more attempt
      counted (an attempt failed, and another will follow).

    A delete is never an event.
    """
    if new is None:
        return None
    if old is None and new.get("direction") == "in":
        return "receipt"
    if new.get("direction") != "out":
        return None
    status, old_status = new.get("status"), None if old is None else old.get("status")
    if status == "delivered" and old_status != "delivered":
        return "delivery"
    if status == "failed" and old_status != "failed":
        return "failed"
    if status == "queued" and old is not None and (new.get("attempts") or 0) > (old.get("attempts") or 0):
        return "deferred"
    return None


def parse_stamp(stamp: Any) -> datetime | None:
    """An ISO 8601 time as written in documents (``...Z``), or None."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


def iso(epoch: Any) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC, or None."""
    if not isinstance(epoch, (int, float)):
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def snippet(email: dict[str, Any]) -> str:
    """The start of an email's text (its html without tags when it has no text), on one line."""
    text = email.get("text")
    if not isinstance(text, str) or not text.strip():
        html = email.get("html")
        text = re.sub(r"<[^>]*>", " ", html) if isinstance(html, str) else ""
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_LENGTH else text[:SNIPPET_LENGTH - 1] + "\u2026"


@dataclass(frozen=True)
class Event:
    """One event for the owner of ``email``: its kind, the email as written, and its cursor."""

    kind: str
    email: dict[str, Any]
    cursor: str
    #: Messages rendered so far, by detail level: one event sent to many subscribers is rendered once each.
    _rendered: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def owner(self) -> str | None:
        owner = self.email.get("owner")
        return owner if isinstance(owner, str) else None

    def written(self) -> str | None:
        """When the write that made the event happened (ISO 8601), as the email records it."""
        email = self.email
        if self.kind == "delivery":
            return email.get("delivered_at")
        if self.kind in ("deferred", "failed"):
            return email.get("last_attempt_at") or email.get("failed_at")
        return email.get("created")

    def age(self) -> float | None:
        """Seconds since the write that made the event."""
        written = parse_stamp(self.written())
        if written is None:
            return None
        return max(0.0, (datetime.now(written.tzinfo) - written).total_seconds())

    def rendered(self, detail: str = "summary") -> dict[str, Any]:
        """:meth:`message`, rendered once per level (callers must not change it)."""
        message = self._rendered.get(detail)
        if message is None:
            message = self._rendered[detail] = self.message(detail)
        return message

    def message(self, detail: str = "summary") -> dict[str, Any]:
        """The event as a client receives it on ``/ws`` (see docs/protocol.md), at a ``detail`` level
        of :data:`DETAIL_LEVELS`: ``summary`` names the email; ``message`` adds what a UI shows in a
        row (addresses, subject, date, snippet, size, attachment count); ``full`` adds the bodies."""
        email = self.email
        message: dict[str, Any] = {
            "type": self.kind, "id": email["id"], "name": email.get("subject", ""), "thread": email.get("thread"),
            "labels": list(email.get("labels", [])), "cursor": self.cursor}
        if self.kind == "deferred":
            failures = list(email.get("failures") or [])
            first = failures[0] if failures else {}
            message.update(attempt=email.get("attempts"), reply={"code": first.get("code"), "text": first.get("text")},
                           next_attempt=iso(email.get("next_attempt_at")), recipients=failures)
        elif self.kind == "failed":
            message.update(attempt=email.get("attempts"), reason=email.get("last_error"),
                           recipients=list(email.get("failures") or []))
        if detail in ("message", "full"):
            message.update({
                "from": email.get("from"), "to": list(email.get("to") or []), "cc": list(email.get("cc") or []),
                "subject": email.get("subject", ""), "date": email.get("date") or email.get("created"),
                "snippet": snippet(email), "size": email.get("size"),
                "attachments": len(email.get("attachments") or [])})
        if detail == "full":
            message.update(text=email.get("text"), html=email.get("html"))
        return message
