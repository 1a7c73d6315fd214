"""Mailbox rules shared by the HTTP API, SMTP intake and delivery: labels, threading, cascades.

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
from gateway.mail.documents import BUILTIN_LABELS, split_message, thread_summary, with_message
from gateway.store import Conflict, Contains, Doc, Documents, In, Query


async def label_ids_exist(store: Documents, owner: str, label_ids: Iterable[str]) -> list[str]:
    """The ids among ``label_ids`` that are neither built in nor the owner's own labels."""
    custom = [i for i in label_ids if i not in BUILTIN_LABELS]
    if not custom:
        return []
    found = {d["id"] for d in await store.find("labels", Query({"owner": owner, "id": In(custom)}))}
    return [i for i in custom if i not in found]


async def local_account(store: Documents, address: str, domain: str) -> str | None:
    """The id of the account behind ``user@domain``, or None (another domain, no such user, or an
    account being deleted: a deletion removes the account first and its name last)."""
    local, _, at = address.rpartition("@")
    if at.lower() != domain.lower() or not local:
        return None
    entry = await store.get("usernames", local.lower())
    if entry is None or await store.get("accounts", entry["account"]) is None:
        return None
    account_id: str = entry["account"]
    return account_id


def copy_id(source: str, account_id: str) -> str:
    """The id of an account's copy of a message (``source``: the sent email's id, or the digest of
    the bytes received): the same on every attempt, so a retried delivery is stored once."""
    return hashlib.sha256(f"{source}:{account_id}".encode()).hexdigest()[:24]


def root_thread_id(owner: str, message_id: str) -> str:
    """The thread of an email of ``owner`` that refers to no other message: the same for every copy
    of the message (a message sent to oneself is filed in Sent and Inbox), whichever gateway files it."""
    return hashlib.sha256(f"thread:{owner}:{message_id}".encode()).hexdigest()[:24]


async def find_thread(store: Documents, owner: str, references: list[str]) -> str | None:
    """The thread of the newest of the owner's emails whose Message-ID is among ``references``
    (each email refers to itself too, so the copies of one message share a thread)."""
    if not references:
        return None
    # Unordered, the newest picked here: ordered by ``created`` the query is read in that order from
    # the account's whole mailbox on SQLite (its planner prefers the order to the Message-ID index).
    # A Message-ID names one message, filed a copy or two per account, so the matches are few.
    found = await store.find("emails", Query({"owner": owner, "message_id": In(references)}))
    if not found:
        return None
    # the store's order: newest first, ties by ascending id
    newest = max(sorted(found, key=lambda email: email["id"]), key=lambda email: str(email.get("created") or ""))
    thread: str = newest["thread"]
    return thread


async def add_email(store: Documents, email: Doc) -> Doc:
    """Thread, store and summarise a new email (``owner``, ``message_id`` and references already set).

    It joins the thread of the newest email of the owner it refers to (or that has its own
    Message-ID).  One that refers to no other message starts (or joins) the thread of
    :func:`root_thread_id`, without a query: so every copy of a message shares one thread (a
    message sent to oneself is filed twice, Sent and Inbox).
    """
    refs = list(email.get("references") or [])
    for same in (email.get("in_reply_to"), email.get("message_id")):
        if same and same not in refs:
            refs.append(same)
    email.setdefault("id", new_id())
    email.setdefault("created", now_iso())
    if refs == [email.get("message_id")]:
        # it refers to nothing else: its thread is the one every copy of it (Sent and Inbox) is
        # filed in, named after the owner and Message-ID, with no query to find it
        existing, email["thread"] = None, root_thread_id(email["owner"], refs[0])
    else:
        existing = await find_thread(store, email["owner"], refs)
        email["thread"] = existing or new_id()
    email, message = split_message(email)
    # the message first (a retried delivery may have stored it): an email is never without the message it names
    first = [("messages", message)] if message is not None else []
    if existing is None:
        # a new thread holds just this email: its summary needs no query, and goes in with the email
        summary = {"id": email["thread"], **thread_summary(email["owner"], [email])}
        if not await store.insert_with("emails", email, ("threads", summary), before=first):
            return with_message(email, message)
        # else the thread was there (another copy of the message, or a reply filed meanwhile)
    else:
        await store.insert_with("emails", email, before=first)
    await refresh_thread(store, email["owner"], email["thread"])
    return with_message(email, message)


async def load_message(store: Documents, email: Doc) -> Doc:
    """The email with its raw message, as clients and the delivery worker see it."""
    if "raw" in email:  # stored whole (by an earlier version)
        return email
    return with_message(email, await store.get("messages", email["id"]))


async def update_email(store: Documents, email: Doc, changes: dict[str, Any]) -> Doc:
    return (await update_emails(store, [(email, changes)]))[0]


async def update_emails(store: Documents, edits: list[tuple[Doc, dict[str, Any]]]) -> list[Doc]:
    """Apply each email's changes, then refresh every thread they touched, once."""
    updated = [await store.update("emails", email["id"], changes) or email for email, changes in edits]
    await refresh_threads(store, [email for email, _ in edits])
    return updated


async def delete_email(store: Documents, email: Doc) -> None:
    await delete_emails(store, [email])


async def delete_emails(store: Documents, emails: list[Doc]) -> None:
    """Remove the emails (and their raw messages), then refresh (or remove) every thread they were in, once."""
    for email in emails:  # one by one: each delete of an email is checked for the events it makes
        await store.delete("emails", email["id"])
    if emails:
        await store.delete_where("messages", {"id": In([email["id"] for email in emails])})
    await refresh_threads(store, emails)


async def refresh_threads(store: Documents, emails: list[Doc]) -> None:
    for owner, thread_id in dict.fromkeys((e["owner"], e["thread"]) for e in emails):
        await refresh_thread(store, owner, thread_id)


async def refresh_thread(store: Documents, owner: str, thread_id: str) -> Doc | None:
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


async def remove_label_everywhere(store: Documents, owner: str, label_id: str) -> None:
    """Take a deleted label off every email (and so every thread) of the owner."""
    emails = await store.find("emails", Query({"owner": owner, "labels": Contains(label_id)}))
    await update_emails(store, [(e, {"labels": [x for x in e["labels"] if x != label_id]}) for e in emails])
