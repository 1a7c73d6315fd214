"""Internet messages: parsing what arrives over SMTP, building what goes to the relay."""

from __future__ import annotations

import base64
import email.policy
import re
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


#: A Message-ID as this server writes it into a header: printable ASCII in angle brackets.
MESSAGE_ID = re.compile(r"^<[!-~]+>$")


def encoded_header(value: str) -> str:
    """A header value every reader decodes to exactly ``value``.

    Plain printable ASCII with nothing a reader could take for an encoded word
    is written as it is.  Anything else (non-ASCII, or text such as
    ``=?utf-8?q?hi=0D=0AFrom:...?=`` that a reader would decode into new header
    lines) is written as RFC 2047 encoded words of its UTF-8, folded, so it
    comes out as the literal text the user gave and is never reinterpreted.
    The API refuses control characters in such values before they get here.
    """
    if value.isascii() and value.isprintable() and "=?" not in value and len(value) <= 76:
        return value
    words, chunk = [], ""
    for char in value:
        if chunk and len((chunk + char).encode("utf-8")) > 45:  # 60 base64 characters a word
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word.encode('utf-8')).decode()}?=" for word in words)


def build_message(email_doc: dict[str, Any]) -> bytes:
    """The message to hand to the relay for an outbound email, as bytes (Bcc is not a header).

    The body parts are made by the email package; the headers that carry what a
    user typed are written by :func:`encoded_header`, because the email package
    would parse an encoded word in them into raw line breaks (header injection).
    """
    message = EmailMessage()
    message.set_content(email_doc.get("text") or "")
    if email_doc.get("html"):
        message.add_alternative(email_doc["html"], subtype="html")
    headers = [("From", email_doc["from"])]
    if email_doc.get("to"):
        headers.append(("To", ", ".join(email_doc["to"])))
    if email_doc.get("cc"):
        headers.append(("Cc", ", ".join(email_doc["cc"])))
    headers.append(("Subject", encoded_header(email_doc.get("subject", ""))))
    headers.append(("Date", email.utils.formatdate(localtime=False)))
    headers.append(("Message-ID", email_doc["message_id"]))
    # ids taken from received mail: only well-formed ones are repeated
    if email_doc.get("in_reply_to") and MESSAGE_ID.match(email_doc["in_reply_to"]):
        headers.append(("In-Reply-To", email_doc["in_reply_to"]))
    references = [ref for ref in email_doc.get("references") or [] if MESSAGE_ID.match(ref)]
    if references:
        headers.append(("References", "\r\n ".join(references)))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")
    return head + message.as_bytes(policy=email.policy.SMTP)
