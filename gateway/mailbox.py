"""Mailbox rules shared by the HTTP API and mail delivery: labels, threading, cascades.

Emails carry label ids.  The built-in labels have fixed ids (``inbox``,
``sent``, ``trash``, ``spam``) in every account; an account's own labels get
generated ids.  A thread document summarises its emails (subject, count,
unread count, union of labels, last activity) and is refreshed after every
change to one of them, so threads can be listed and filtered by label.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from gateway.ids import new_id, now_iso
from gateway.store import OWNED_TABLES, Conflict, Contains, Doc, In, Query, Store

BUILTIN_LABELS: dict[str, str] = {"inbox": "Inbox", "sent": "Sent", "trash": "Trash", "spam": "Spam"}



def public(doc: Doc, *hidden: str) -> Doc:
    """A document as clients see it: without its owner and any ``hidden`` fields."""
    return {k: v for k, v in doc.items() if k != "owner" and k not in hidden}


#: Delivery bookkeeping that is nobody's business but the worker's.
EMAIL_INTERNAL = ("claimed_at",)
#: Large fields left out of lists; ``GET /emails/{id}`` has them.
EMAIL_DETAIL = ("raw", "headers")


def public_email(email: Doc, detail: bool = False) -> Doc:
    """An email as clients see it: in full with ``detail``, else without the raw message and headers."""
    return public(email, *EMAIL_INTERNAL, *(() if detail else EMAIL_DETAIL))


def public_account(account: Doc) -> Doc:
    return public(account, "password_hash")


def builtin_label(label_id: str) -> Doc:
    return {"id": label_id, "name": BUILTIN_LABELS[label_id], "builtin": True}


async def label_ids_exist(store: Store, owner: str, label_ids: Iterable[str]) -> list[str]:
    """The ids among ``label_ids`` that are neither built in nor the owner's own labels."""
    custom = [i for i in label_ids if i not in BUILTIN_LABELS]
    if not custom:
        return []
    found = {d["id"] for d in await store.find("labels", Query({"owner": owner, "id": In(custom)}))}
    return [i for i in custom if i not in found]


async def delete_account(store: Store, account: Doc) -> None:
    """Remove an account and everything it owns.

    The account record goes first: every token of it is refused from that
    moment (token checks need the account), and sessions bound to it hear
    ``account_deleted`` rather than ``revoked``.
    """
    await store.delete("accounts", account["id"])
    for table in OWNED_TABLES:
        await store.delete_where(table, {"owner": account["id"]})
    await store.delete("usernames", account["username"])


async def local_account(store: Store, address: str, domain: str) -> str | None:
    """The id of the account behind ``user@domain``, or None (another domain, no such user)."""
    local, _, at = address.rpartition("@")
    if at.lower() != domain.lower() or not local:
        return None
    entry = await store.get("usernames", local.lower())
    return entry["account"] if entry else None


def copy_id(source: str, account_id: str) -> str:
    """The id of an account's copy of a message (``source``: the sent email's id, or the digest of
    the bytes received): the same on every attempt, so a retried delivery is stored once."""
    return hashlib.sha256(f"{source}:{account_id}".encode()).hexdigest()[:24]


def inbound_copy(fields: Doc, owner: str, id: str) -> Doc:
    """A message as filed in ``owner``'s inbox (``fields``: its headers and bodies)."""
    return {**fields, "id": id, "owner": owner, "direction": "in", "status": "received", "bcc": [],
            "labels": ["inbox"], "read": False, "created": now_iso()}


async def find_thread(store: Store, owner: str, references: list[str]) -> str | None:
    """The thread of the newest of the owner's emails whose Message-ID is among ``references``."""
    if not references:
        return None
    found = await store.find(
        "emails", Query({"owner": owner, "message_id": In(references)}, [("created", True)], limit=1)
    )
    return found[0]["thread"] if found else None


async def add_email(store: Store, email: Doc) -> Doc:
    """Thread, store and summarise a new email (``owner``, ``message_id`` and references already set)."""
    refs = list(email.get("references") or [])
    if email.get("in_reply_to") and email["in_reply_to"] not in refs:
        refs.append(email["in_reply_to"])
    email.setdefault("id", new_id())
    email.setdefault("created", now_iso())
    existing = await find_thread(store, email["owner"], refs)
    email["thread"] = existing or new_id()
    stored = await store.insert("emails", email)
    if existing is None:
        # a new thread holds just this email: its summary needs no query
        try:
            await store.insert("threads", {"id": email["thread"], **thread_summary(email["owner"], [stored])})
            return stored
        except Conflict:  # a reply to it, filed meanwhile, summarised the thread first
            pass
    await refresh_thread(store, email["owner"], email["thread"])
    return stored


async def update_email(store: Store, email: Doc, changes: dict[str, Any]) -> Doc:
    return (await update_emails(store, [(email, changes)]))[0]


async def update_emails(store: Store, edits: list[tuple[Doc, dict[str, Any]]]) -> list[Doc]:
    """Apply each email's changes, then refresh every thread they touched, once."""
    updated = [await store.update("emails", email["id"], changes) or email for email, changes in edits]
    await refresh_threads(store, [email for email, _ in edits])
    return updated


async def delete_email(store: Store, email: Doc) -> None:
    await delete_emails(store, [email])


async def delete_emails(store: Store, emails: list[Doc]) -> None:
    """Remove the emails, then refresh (or remove) every thread they were in, once."""
    for email in emails:
        await store.delete("emails", email["id"])
    await refresh_threads(store, emails)


async def refresh_threads(store: Store, emails: list[Doc]) -> None:
    for owner, thread_id in dict.fromkeys((e["owner"], e["thread"]) for e in emails):
        await refresh_thread(store, owner, thread_id)


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


async def refresh_thread(store: Store, owner: str, thread_id: str) -> Doc | None:
    """Recompute a thread's summary from its emails; the thread is removed when it has none."""
    emails = await store.find("emails", Query({"owner": owner, "thread": thread_id}, [("created", False)]))
    if not emails:
        await store.delete("threads", thread_id)
        return None
    summary = thread_summary(owner, emails)
    thread = await store.update("threads", thread_id, summary)
    if thread is not None:
        return thread
    try:
        return await store.insert("threads", {"id": thread_id, **summary})
    except Conflict:  # a concurrent refresh created it first
        return await store.update("threads", thread_id, summary)


async def remove_label_everywhere(store: Store, owner: str, label_id: str) -> None:
    """Take a deleted label off every email (and so every thread) of the owner."""
    emails = await store.find("emails", Query({"owner": owner, "labels": Contains(label_id)}))
    await update_emails(store, [(e, {"labels": [x for x in e["labels"] if x != label_id]}) for e in emails])
