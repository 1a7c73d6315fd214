"""Emails: compose and send, list, read, relabel, delete (the rules are in :mod:`gateway.mail`)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from gateway.mail import outbox
from gateway.mail.documents import Draft, public_email
from gateway.mail.mailbox import delete_email, update_email
from gateway.store import Contains
from handlers.base import APIHandler, Field

ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
MAX_RECIPIENTS = 100
MAX_LABELS = 50


def addresses_problem(value: Any) -> str | None:
    # "=?" would read as an encoded word in a header: never part of an address
    bad = [a for a in value if not ADDRESS.fullmatch(a) or "=?" in a]
    return f"has invalid addresses: {', '.join(bad[:5])}" if bad else None


def header_text_problem(value: str) -> str | None:
    """Why text cannot become a mail header (a subject): control characters (CR, LF, VT, FF, NEL,
    ...), line or paragraph separators, or lone surrogates.  Nothing else is refused: encoded
    words and non-ASCII text are written so that they read back exactly (gateway/mail/mime.py)."""
    for char in value:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
            return f"must not contain control or line-separator characters (found U+{ord(char):04X})"
    return None


async def email_changes(handler: APIHandler) -> dict[str, Any]:
    """The ``labels`` and/or ``read`` a PUT on an email or thread sets; labels must exist."""
    body = handler.body_fields({
        "labels": Field(list, items=str, max_length=MAX_LABELS),
        "read": Field(bool),
    }, partial=True)
    return await outbox.checked_changes(handler.store, handler.account["id"], body)


class EmailsHandler(APIHandler):
    """``/emails``: ``POST`` composes and queues an email; ``GET`` lists them."""

    async def post(self) -> None:
        recipients = Field(list, items=str, max_length=MAX_RECIPIENTS, check=addresses_problem)
        body = self.body_fields({
            "to": Field(list, required=True, items=str, max_length=MAX_RECIPIENTS, check=addresses_problem),
            "cc": recipients,
            "bcc": recipients,
            "subject": Field(str, max_length=998, check=header_text_problem),
            "text": Field(str),
            "html": Field(str),
            "in_reply_to": Field(str, max_length=64),
        })
        key = self.request.headers.get("Idempotency-Key")
        stored, replayed = await outbox.send(self.store, self.account, self.state.config.mail_domain, Draft(**body),
                                             key)
        if replayed:
            self.set_header("Idempotent-Replayed", "true")
        self.reply(201, email=public_email(stored, detail=True))

    async def get(self) -> None:
        where: dict[str, Any] = {"owner": self.account["id"]}
        label = self.get_query_argument("label", None)
        if label:
            where["labels"] = Contains(label)
        thread = self.get_query_argument("thread", None)
        if thread:
            where["thread"] = thread
        query = self.page(where, {"created", "subject"}, "-created")
        emails = await self.list_page("emails", query)
        self.reply(emails=[public_email(e) for e in emails])


class EmailHandler(APIHandler):
    """``/emails/{id}``: read, relabel or mark read, delete."""

    async def get(self, email_id: str) -> None:
        self.reply(email=public_email(await self.owned("emails", email_id, "Email"), detail=True))

    async def put(self, email_id: str) -> None:
        email = await self.owned("emails", email_id, "Email")
        changes = await email_changes(self)
        self.reply(email=public_email(await update_email(self.store, email, changes), detail=True))

    async def delete(self, email_id: str) -> None:
        await delete_email(self.store, await self.owned("emails", email_id, "Email"))
        self.reply(message="Email deleted")


routes = [(r"/emails", EmailsHandler), (r"/emails/([^/]+)", EmailHandler)]
