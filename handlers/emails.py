"""Emails: compose and send (JSON or multipart/form-data, with attachments), list and search, read,
relabel, delete (the rules are in :mod:`gateway.mail`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from gateway.mail import outbox
from gateway.mail.addresses import control_problem, normalized
from gateway.mail.documents import Draft, public_email
from gateway.mail.mailbox import delete_email, load_message, update_email
from gateway.mail.mime import Attachment, attachment
from gateway.store import Contains, Substring
from handlers.base import APIError, APIHandler, Field, checked_fields

__all__ = ["EmailHandler", "EmailsHandler", "email_changes", "search_filter"]

MAX_RECIPIENTS = 100
MAX_LABELS = 50
MAX_ATTACHMENTS = 100
MAX_QUERY = 200
#: The form fields of a multipart send whose files are attached, and shown inline.
FILE_FIELDS = {"attachment": False, "inline": True}

ATTACHMENT_FIELDS = {
    "filename": Field(str, required=True, max_length=1000),
    "content_type": Field(str, max_length=200),
    "content_base64": Field(str, required=True),
    "content_id": Field(str, max_length=252, nullable=True),
    "inline": Field(bool),
}


def addresses_problem(value: list[str]) -> str | None:
    """Why a list of ``address`` / ``Name <address>`` entries cannot be sent to."""
    bad = []
    for entry in value:
        try:
            normalized(entry)
        except ValueError:
            bad.append(entry)
    return f"has invalid addresses: {', '.join(repr(b[:100]) for b in bad[:5])}" if bad else None


def search_filter(handler: APIHandler) -> Substring | None:
    """The ``q`` of a list, as the condition on the documents' case-folded ``search`` text."""
    query = handler.get_query_argument("q", "").strip()
    if len(query) > MAX_QUERY:
        raise APIError(400, "invalid_parameter", f"'q' must be at most {MAX_QUERY} characters")
    return Substring(query.casefold()) if query else None


async def email_changes(handler: APIHandler) -> dict[str, Any]:
    """The ``labels`` and/or ``read`` a PUT on an email or thread sets; labels must exist."""
    body = handler.body_fields({
        "labels": Field(list, items=str, max_length=MAX_LABELS),
        "read": Field(bool),
    }, partial=True)
    return await outbox.checked_changes(handler.store, handler.account["id"], body)


def _json_attachment(index: int, given: dict[str, Any]) -> Attachment:
    where = f"attachments[{index}]"
    checked_fields(given, ATTACHMENT_FIELDS, where=f"{where}.")
    try:
        data = base64.b64decode(given["content_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "invalid_field", f"Field '{where}.content_base64' must be base64") from None
    return attachment(given["filename"], given.get("content_type") or "application/octet-stream", data,
                      given.get("content_id"), bool(given.get("inline", False)), where)


class EmailsHandler(APIHandler):
    """``/emails``: ``POST`` composes and queues an email; ``GET`` lists and searches them."""

    multipart_methods = frozenset({"POST"})
    direct_methods = frozenset({"GET"})

    def body_limit(self) -> int:
        # a message may be as large as SMTP takes one (attachments ride in the body)
        config = self.state.config
        return config.max_body + config.smtp_max_size if self.request.method == "POST" else config.max_body

    def draft_fields(self) -> dict[str, Any]:
        """The fields of the draft: the JSON body, or a multipart body's ``request`` field."""
        recipients = Field(list, items=str, max_length=MAX_RECIPIENTS, check=addresses_problem)
        fields = {
            "to": Field(list, required=True, items=str, max_length=MAX_RECIPIENTS, check=addresses_problem),
            "cc": recipients,
            "bcc": recipients,
            "subject": Field(str, max_length=998, check=control_problem),
            "text": Field(str),
            "html": Field(str),
            "in_reply_to": Field(str, max_length=64),
            "attachments": Field(list, items=dict, max_length=MAX_ATTACHMENTS),
        }
        if not self.request.files and not self.request.body_arguments:
            return self.body_fields(fields)
        unknown = sorted(set(self.request.body_arguments) - {"request"} | set(self.request.files) - set(FILE_FIELDS))
        if unknown:
            raise APIError(400, "unknown_field", f"Unknown form field: {', '.join(unknown)} (expected 'request' "
                           "and files named 'attachment' or 'inline')")
        requests = self.request.body_arguments.get("request", [])
        if len(requests) != 1:
            raise APIError(400, "missing_field", "A multipart/form-data send needs one 'request' field (the JSON)")
        return self.body_fields(fields, text=requests[0])

    def attachments(self, body: dict[str, Any]) -> list[Attachment]:
        """The attachments of the JSON ``attachments`` field, then the multipart body's files."""
        found = [_json_attachment(n, given) for n, given in enumerate(body.pop("attachments", []))]
        for name, inline in FILE_FIELDS.items():
            for upload in self.request.files.get(name, []):
                where = f"{name}[{upload.filename[:100]!r}]"
                content_id = upload.filename if inline else None
                found.append(attachment(upload.filename, upload.content_type or "application/octet-stream",
                                        upload.body, content_id, inline, where))
        if len(found) > MAX_ATTACHMENTS:
            raise APIError(400, "too_many_parts", f"At most {MAX_ATTACHMENTS} attachments")
        return found

    async def post(self) -> None:
        body = self.draft_fields()
        attachments = self.attachments(body)
        for name in ("to", "cc", "bcc"):
            if name in body:
                body[name] = [normalized(entry) for entry in body[name]]
        key = self.request.headers.get("Idempotency-Key")
        stored, replayed = await outbox.send(self.store, self.account, self.state.config.mail_domain,
                                             Draft(**body, attachments=attachments), key,
                                             max_size=self.state.config.smtp_max_size)
        if replayed:
            self.set_header("Idempotent-Replayed", "true")
        self.reply(201, email=public_email(await load_message(self.store, stored), detail=True))

    async def get(self) -> None:
        where: dict[str, Any] = {"owner": self.account["id"]}
        label = self.get_query_argument("label", None)
        if label:
            where["labels"] = Contains(label)
        thread = self.get_query_argument("thread", None)
        if thread:
            where["thread"] = thread
        search = search_filter(self)
        if search is not None:
            where["search"] = search
        query = self.page(where, {"created", "subject"}, "-created")
        await self.reply_listed("emails", query, "emails", public_email)


class EmailHandler(APIHandler):
    """``/emails/{id}``: read, relabel or mark read, delete."""

    async def get(self, email_id: str) -> None:
        email = await load_message(self.store, await self.owned("emails", email_id, "Email"))
        self.reply(email=public_email(email, detail=True))

    async def put(self, email_id: str) -> None:
        email = await self.owned("emails", email_id, "Email")
        changes = await email_changes(self)
        updated = await load_message(self.store, await update_email(self.store, email, changes))
        self.reply(email=public_email(updated, detail=True))

    async def delete(self, email_id: str) -> None:
        await delete_email(self.store, await self.owned("emails", email_id, "Email"))
        self.reply(message="Email deleted")


routes = [(r"/emails", EmailsHandler), (r"/emails/([^/]+)", EmailHandler)]
