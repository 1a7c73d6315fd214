"""The event model: which writes are events, and what a client receives for one.

This module is the one statement of the rule.  The storage backends record
events as they commit; each evaluates :func:`event_kind` where the write
happens (SQLite in Python, RethinkDB in a ReQL mirror of it, and the SQLite
migration that converted older logs in SQL).  ``tests/test_event_rule.py``
holds every mirror to this function over every case.

It imports nothing of the project's, so every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The kinds of event the emails table makes, as ``subscribe``'s ``events`` names them.
EVENT_KINDS: tuple[str, ...] = ("receipt", "delivery")


def event_kind(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """The event a write to the emails table makes, or None (most writes make none).

    ``receipt``: an inbound email was stored.  ``delivery``: an outbound email's
    status became ``delivered``.  A delete is never an event.
    """
    if new is None:
        return None
    if old is None and new.get("direction") == "in":
        return "receipt"
    if new.get("direction") == "out" and new.get("status") == "delivered" \
            and (old is None or old.get("status") != "delivered"):
        return "delivery"
    return None


@dataclass(frozen=True)
class Event:
    """One event for the owner of ``email``: its kind, the email as written, and its cursor."""

    kind: str
    email: dict[str, Any]
    cursor: str

    @property
    def owner(self) -> str | None:
        owner = self.email.get("owner")
        return owner if isinstance(owner, str) else None

    def age(self) -> float | None:
        """Seconds since the write that made the event (its email's ``delivered_at`` or ``created``)."""
        stamp = self.email.get("delivered_at") if self.kind == "delivery" else self.email.get("created")
        try:
            written = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return None
        return max(0.0, (datetime.now(written.tzinfo) - written).total_seconds())

    def message(self) -> dict[str, Any]:
        """The event as a client receives it on ``/ws`` (see docs/protocol.md)."""
        email = self.email
        return {"type": self.kind, "id": email["id"], "name": email.get("subject", ""), "thread": email.get("thread"),
                "labels": list(email.get("labels", [])), "cursor": self.cursor}
