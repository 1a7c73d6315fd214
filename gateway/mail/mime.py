"""Internet messages: parsing what arrives over SMTP, building what goes to the relay."""

from __future__ import annotations

import base64
import email.policy
import email.utils
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from gateway.ids import iso_from_epoch

MAX_HEADERS = 200


def _addresses(message: Message, name: str) -> list[str]:
    values = [str(v) for v in message.get_all(name, [])]
    return [address for _, address in email.utils.getaddresses(values) if address]


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse: keep what the raw text says
        value = message.get_all(name, [""])[0] if hasattr(message, "get_all") else ""
    return " ".join(str(value or "").split())


def _date(message: Message) -> str | None:
    try:
        parsed = email.utils.parsedate_to_datetime(_header(message, "Date"))
        return iso_from_epoch(parsed.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _text(part: Message) -> str:
    try:
        return part.get_content()  # type: ignore[attr-defined]
    except Exception:  # unknown charset or broken transfer encoding: decode what is there
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def parse_message(raw: bytes) -> dict[str, Any]:
    """The fields of an email document from a raw message; never raises on malformed input."""
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    text: str | None = None
    html: str | None = None
    attachments: list[dict[str, Any]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        disposition = (part.get_content_disposition() or "").lower()
        if filename or disposition == "attachment":
            payload = part.get_payload(decode=True) or b""
            attachments.append({"name": filename or "", "content_type": part.get_content_type(), "size": len(payload)})
        elif part.get_content_type() == "text/plain" and text is None:
            text = _text(part)
        elif part.get_content_type() == "text/html" and html is None:
            html = _text(part)
    try:
        raw_text, raw_encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, raw_encoding = base64.b64encode(raw).decode(), "base64"
    references = _header(message, "References").split()
    return {
        "message_id": _header(message, "Message-ID") or None,
        "from": (_addresses(message, "From") or [""])[0],
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "subject": _header(message, "Subject"),
        "date": _date(message),
        "in_reply_to": _header(message, "In-Reply-To") or None,
        "references": references,
        "text": text,
        "html": html,
        "attachments": attachments,
        "headers": [[k, " ".join(str(v).split())] for k, v in list(message.raw_items())[:MAX_HEADERS]],
        "raw": raw_text,
        "raw_encoding": raw_encoding,
        "size": len(raw),
        "defects": len(message.defects),
    }


def build_message(email_doc: dict[str, Any]) -> EmailMessage:
    """The message to hand to the relay for an outbound email (Bcc is not a header)."""
    message = EmailMessage()
    message["From"] = email_doc["from"]
    if email_doc.get("to"):
        message["To"] = ", ".join(email_doc["to"])
    if email_doc.get("cc"):
        message["Cc"] = ", ".join(email_doc["cc"])
    message["Subject"] = email_doc.get("subject", "")
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email_doc["message_id"]
    if email_doc.get("in_reply_to"):
        message["In-Reply-To"] = email_doc["in_reply_to"]
    if email_doc.get("references"):
        message["References"] = " ".join(email_doc["references"])
    message.set_content(email_doc.get("text") or "")
    if email_doc.get("html"):
        message.add_alternative(email_doc["html"], subtype="html")
    return message
