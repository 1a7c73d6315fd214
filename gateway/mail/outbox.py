"""Composing: a user's draft becomes a queued email in their Sent, threaded with what it replies to.

The delivery worker (:mod:`gateway.mail.delivery`) picks it up from the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from typing import Any

from gateway.errors import Invalid, Taken, TooLarge
from gateway.ids import is_id, new_id, now_iso
from gateway.mail.addresses import control_problem, mailbox
from gateway.mail.documents import Draft, message_fields, outbound_email
from gateway.mail.mailbox import add_email, label_ids_exist
from gateway.mail.mime import build_message
from gateway.mail.parse import TooComplex, parse_message
from gateway.store import Conflict, Doc, Documents

#: The most characters an Idempotency-Key may have.
MAX_KEY = 255


def sender_mailbox(account: Doc) -> str:
    """The From of an account's mail: its address, with its display name when it chose one
    (the default display name, the username, is left out)."""
    name = account.get("display_name") or ""
    if name == account.get("username") or control_problem(name):
        name = ""
    return mailbox(name, account["address"])


async def send(store: Documents, sender: Doc, domain: str, draft: Draft, idempotency_key: str | None = None,
               max_size: int | None = None) -> tuple[Doc, bool]:
    """Queue ``draft`` from ``sender`` (an account): the stored email, and whether it was stored
    before under the same ``idempotency_key`` (then it is not stored or sent again).

    :class:`Invalid` when the draft has no recipient or no body, or replies to an email that
    is not the sender's, or the key is malformed, or the message would have too many parts;
    :class:`TooLarge` when the message would be over ``max_size`` bytes; :class:`Taken` when the
    key was used for a different draft.
    """
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
    email_id = new_id()
    if idempotency_key is not None:
        email_id, earlier = await _claim_key(store, sender["id"], idempotency_key, draft, email_id)
        if earlier is not None:
            return earlier, True
    # building and reading back a large message takes a while: off the loop
    email = await asyncio.to_thread(compose, email_id, sender, domain, draft, in_reply_to, references, max_size)
    try:
        return await add_email(store, email), False
    except Conflict:  # the same key, sent twice at once: the other one stored it
        stored = await store.get("emails", email_id)
        if stored is None:
            raise
        return stored, True


async def _claim_key(store: Documents, owner: str, key: str, draft: Draft, email_id: str) -> tuple[str, Doc | None]:
    """The email id a send under ``key`` uses, and the email if one is stored under it already.

    The key's record is written before the email, so a retry after an outcome the client
    never heard (a dropped connection, a crash in between) finds it, and stores or returns
    that one email.
    """
    if not key or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
        raise Invalid("invalid_header", f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters")
    record_id = hashlib.sha256(f"{owner}:{key}".encode()).hexdigest()[:24]
    fingerprint = hashlib.sha256(json.dumps(dataclasses.asdict(draft), sort_keys=True, default=_digest).encode()
                                 ).hexdigest()
    try:
        await store.insert("idempotency", {"id": record_id, "owner": owner, "email": email_id,
                                           "fingerprint": fingerprint, "created": now_iso()})
        return email_id, None
    except Conflict:
        record = await store.get("idempotency", record_id)
    if record is None:  # deleted in between (the account is going away): nothing to repeat
        raise Invalid("invalid_header", "Idempotency-Key cannot be used right now; retry")
    if record["fingerprint"] != fingerprint:
        raise Taken("idempotency_key_reused", "This Idempotency-Key was used for a different email")
    return record["email"], await store.get("emails", record["email"])


def compose(email_id: str, sender: Doc, domain: str, draft: Draft, in_reply_to: str | None = None,
            references: list[str] | None = None, max_size: int | None = None) -> Doc:
    """The outbound email ``sender`` (an account) composed: its fields and the message built from them,
    read back (raw, structure, attachments).  :class:`TooLarge` when the message is over ``max_size``
    bytes, :class:`Invalid` when it has too many parts."""
    fields = message_fields(email_id, sender_mailbox(sender), domain, draft, in_reply_to, references or [])
    raw = build_message(fields, draft.attachments)
    if max_size is not None and len(raw) > max_size:
        raise TooLarge("too_large", f"The message would be {len(raw)} bytes, over the limit of {max_size}")
    try:
        content = parse_message(raw)
    except TooComplex as exc:
        raise Invalid(exc.code, str(exc)) from None
    return outbound_email(email_id, sender, fields, content)


def _digest(value: Any) -> str:
    """An attachment's bytes in a draft's fingerprint."""
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    raise TypeError(f"{type(value).__name__} in a draft")


async def checked_changes(store: Documents, owner: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The ``labels`` and/or ``read`` to set on emails, with labels deduplicated;
    :class:`Invalid` when a label is not one of the owner's."""
    if "labels" in changes:
        changes = {**changes, "labels": list(dict.fromkeys(changes["labels"]))}
        unknown = await label_ids_exist(store, owner, changes["labels"])
        if unknown:
            raise Invalid("unknown_label", f"Unknown label: {', '.join(unknown)}")
    return changes
