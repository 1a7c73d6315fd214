"""Composing: a user's draft becomes a queued email in their Sent, threaded with what it replies to.

The delivery worker (:mod:`gateway.mail.delivery`) picks it up from the queue.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import Invalid
from gateway.ids import is_id, new_id
from gateway.mail.documents import Draft, outbound_email
from gateway.mail.mailbox import add_email, label_ids_exist
from gateway.store import Doc, Documents


async def send(store: Documents, sender: Doc, domain: str, draft: Draft) -> Doc:
    """Queue ``draft`` from ``sender`` (an account); the stored email.  :class:`Invalid` when the
    draft has no recipient or no body, or replies to an email that is not the sender's."""
    if not draft.to and not draft.cc and not draft.bcc:
        raise Invalid("invalid_field", "Field 'to' must name at least one recipient")
    if draft.text is None and draft.html is None:
        raise Invalid("missing_field", "Missing field: text or html")
    references: list[str] = []
    in_reply_to = None
    if draft.in_reply_to is not None:
        parent = await store.get("emails", draft.in_reply_to) if is_id(draft.in_reply_to) else None
        if parent is None or parent["owner"] != sender["id"]:
            raise Invalid("invalid_field", "Field 'in_reply_to' must be the id of one of your emails")
        in_reply_to = parent["message_id"]
        references = [*parent.get("references", []), in_reply_to]
    return await add_email(store, outbound_email(new_id(), sender, domain, draft, in_reply_to, references))


async def checked_changes(store: Documents, owner: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The ``labels`` and/or ``read`` to set on emails, with labels deduplicated;
    :class:`Invalid` when a label is not one of the owner's."""
    if "labels" in changes:
        changes = {**changes, "labels": list(dict.fromkeys(changes["labels"]))}
        unknown = await label_ids_exist(store, owner, changes["labels"])
        if unknown:
            raise Invalid("unknown_label", f"Unknown label: {', '.join(unknown)}")
    return changes
