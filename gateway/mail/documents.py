"""The shapes of the mail documents, each written once: emails (sent, received, delivered), threads, labels.

Every other module builds these documents through the functions here, so a
field added to an email is added in one place.  ``public_*`` give the views
clients see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.ids import now_iso
from gateway.mail.mime import Attachment
from gateway.mail.parse import search_text
from gateway.store import Doc, public

BUILTIN_LABELS: dict[str, str] = {"inbox": "Inbox", "sent": "Sent", "trash": "Trash", "spam": "Spam"}

#: Delivery bookkeeping that is nobody's business but the worker's, and what ``?q=`` searches.
EMAIL_INTERNAL = ("claimed_at", "search")
#: Large fields left out of lists; ``GET /emails/{id}`` has them.
EMAIL_DETAIL = ("raw", "raw_encoding", "headers", "structure")
#: What a list of emails leaves out of each (besides the owner): the store keeps each email's
#: view without these encoded (``store_from_url``'s ``listed``), and a page joins them.
EMAIL_LISTED_OUT = (*EMAIL_INTERNAL, *EMAIL_DETAIL)
#: The stored views of lists, for the store (:meth:`gateway.store.Documents.find_listed`).
LISTED = {"emails": EMAIL_LISTED_OUT}
#: What a message's bytes tell, kept with every email (:func:`gateway.mail.parse.parse_message` gives them).
MESSAGE_CONTENT = ("raw", "raw_encoding", "size", "headers", "structure", "attachments")
#: The fields kept in the ``messages`` table beside the email rather than in it (see :func:`split_message`).
RAW_FIELDS = ("raw", "raw_encoding")

#: The fields of a message as it travels: what a recipient's copy keeps of the sent email.
MESSAGE_FIELDS = ("message_id", "from", "to", "cc", "subject", "text", "html", "in_reply_to", "references")


@dataclass
class Draft:
    """What a user composes: recipients, subject, bodies, and the email it replies to (an email id)."""

    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


def message_fields(email_id: str, sender: str, domain: str, draft: Draft, in_reply_to: str | None,
                   references: list[str]) -> Doc:
    """The header and body fields of a composed email (``sender``: the From mailbox;
    ``in_reply_to`` and ``references``: Message-IDs of the parent and its ancestors)."""
    return {
        "message_id": f"<{email_id}@{domain}>",
        "from": sender,
        "to": draft.to,
        "cc": draft.cc,
        "bcc": draft.bcc,
        "subject": draft.subject,
        "text": draft.text,
        "html": draft.html,
        "in_reply_to": in_reply_to,
        "references": references,
    }


def outbound_email(email_id: str, owner: Doc, fields: Doc, content: Doc) -> Doc:
    """A composed email, queued for delivery and filed in the sender's Sent: its ``fields``
    (:func:`message_fields`) and the ``content`` of the message built from them (:data:`MESSAGE_CONTENT`)."""
    email = {
        "id": email_id,
        "owner": owner["id"],
        "direction": "out",
        "status": "queued",
        **fields,
        **{name: content[name] for name in MESSAGE_CONTENT},
        "labels": ["sent"],
        "read": True,
        "created": now_iso(),
    }
    email["search"] = search_text(email)
    return email


def inbound_copy(fields: Doc, owner: str, id: str) -> Doc:
    """A message as filed in ``owner``'s inbox (``fields``: its headers and bodies, as
    :func:`gateway.mail.parse.parse_message` or :func:`delivered_fields` give them)."""
    return {**fields, "id": id, "owner": owner, "direction": "in", "status": "received", "bcc": [],
            "labels": ["inbox"], "read": False, "created": now_iso(), "search": search_text(fields)}


def delivered_fields(email: Doc) -> Doc:
    """The fields a local recipient's copy of a sent email keeps (Bcc is nobody's to see): what the
    sender wrote, and the message as sent (raw, structure, attachments)."""
    fields = {name: email.get(name) for name in MESSAGE_FIELDS}
    fields["cc"] = email.get("cc", [])
    fields["subject"] = email.get("subject", "")
    fields["references"] = email.get("references", [])
    fields.update({name: email[name] for name in MESSAGE_CONTENT if name in email})
    return fields


def split_message(email: Doc) -> tuple[Doc, Doc | None]:
    """An email as stored (without its raw message) and its ``messages`` record (None when it has no raw).

    The raw message can be megabytes; kept in the email document, it would be parsed by every
    query that filters or sorts emails.  Clients see it merged back (:func:`with_message`).
    """
    if "raw" not in email:
        return email, None
    record = {"id": email["id"], "owner": email["owner"], **{name: email[name] for name in RAW_FIELDS if name in email}}
    return {k: v for k, v in email.items() if k not in RAW_FIELDS}, record


def with_message(email: Doc, record: Doc | None) -> Doc:
    """The email with its raw message (its ``messages`` record) merged back in."""
    if record is None:
        return email
    return {**email, **{name: record[name] for name in RAW_FIELDS if name in record}}


def thread_summary(owner: str, emails: list[Doc]) -> Doc:
    """A thread's fields from its emails, oldest first."""
    labels: list[str] = []
    for email in emails:
        labels.extend(label for label in email.get("labels", []) if label not in labels)
    return {
        "owner": owner,
        "subject": emails[0].get("subject", ""),
        "labels": labels,
        "email_count": len(emails),
        "unread_count": sum(1 for e in emails if not e.get("read")),
        "created": emails[0]["created"],
        "updated": emails[-1]["created"],
    }


def public_email(email: Doc, detail: bool = False) -> Doc:
    """An email as clients see it: in full with ``detail``, else without the raw message and headers."""
    return public(email, *(EMAIL_INTERNAL if detail else EMAIL_LISTED_OUT))


def builtin_label(label_id: str) -> Doc:
    return {"id": label_id, "name": BUILTIN_LABELS[label_id], "builtin": True}


def public_label(label: Doc) -> Doc:
    """One of the account's own labels as clients see it."""
    return {**public(label), "builtin": False}


def new_label(label_id: str, owner: str, name: str) -> Doc:
    return {"id": label_id, "owner": owner, "name": name, "created": now_iso()}


def new_contact(contact_id: str, owner: str, fields: dict[str, Any]) -> Doc:
    now = now_iso()
    return {"id": contact_id, "owner": owner, "notes": "", **fields, "created": now, "updated": now}
