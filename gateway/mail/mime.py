"""Building the message an outbound email is: a MIME message made by the ``email`` package.

The body is text, html, or both as ``multipart/alternative``; inline parts join the html in
``multipart/related``; attachments make it ``multipart/mixed``.  Non-ASCII filenames are written as
RFC 2231 parameters.  Each part's transfer encoding is chosen for it: 7bit for short-lined ASCII,
quoted-printable for mostly-ASCII text, base64 for the rest, so the message is 7-bit clean and every
part decodes to exactly the bytes given.  The headers that carry what a user typed are written by
:mod:`gateway.mail.headers` and :mod:`gateway.mail.addresses`, because the email package would parse
an encoded word in them into raw line breaks (header injection).
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from gateway.errors import Invalid
from gateway.mail.addresses import address_header, control_problem
from gateway.mail.headers import MESSAGE_ID, encoded_header

#: Parts are written 7-bit clean (quoted-printable or base64 where needed), lines end in CRLF.
POLICY = email.policy.SMTP.clone(cte_type="7bit")
#: The longest line a part is sent as 7bit with.
MAX_7BIT_LINE = 76
#: A media type an attachment may have: ``type/subtype`` in RFC 6838's characters, no parameters.
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
#: A Content-ID without its angle brackets.
CONTENT_ID = re.compile(r"^[!-;=?-~]{1,250}$")
MAX_FILENAME = 255


@dataclass(frozen=True)
class Attachment:
    """A file to send: attached, or ``inline`` (shown in the html, which names it ``cid:<content_id>``)."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


def attachment(filename: str, content_type: str, data: bytes, content_id: str | None = None,
               inline: bool = False, where: str = "attachment") -> Attachment:
    """An attachment as a user gave it, checked (:class:`Invalid` saying which field of ``where`` is
    wrong).  A filename keeps only its last path segment; control characters are refused, as
    in any header; multipart and message types are refused (a part of those types is built by
    the server, not given as bytes)."""
    problem = control_problem(filename)
    if problem:
        raise Invalid("invalid_field", f"Field '{where}.filename' {problem}")
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or len(name) > MAX_FILENAME:
        raise Invalid("invalid_field", f"Field '{where}.filename' must be a file name of 1-{MAX_FILENAME} characters")
    media = content_type.strip().lower()
    if not MEDIA_TYPE.match(media) or media.split("/")[0] in ("multipart", "message"):
        raise Invalid("invalid_field", f"Field '{where}.content_type' must be a media type such as "
                      "application/pdf (not multipart/* or message/*)")
    cid = content_id.strip() if content_id else None
    if cid and cid.startswith("<") and cid.endswith(">"):
        cid = cid[1:-1]
    if cid is not None and not CONTENT_ID.match(cid):
        raise Invalid("invalid_field", f"Field '{where}.content_id' must be 1-250 printable ASCII characters "
                      "without spaces or angle brackets")
    return Attachment(name, media, data, cid, inline)


def transfer_encoding(data: bytes, maintype: str) -> str:
    """The Content-Transfer-Encoding a part of ``data`` is sent with: ``7bit`` for ASCII with CRLF line
    ends and short lines, ``quoted-printable`` for text that is nearly all of that, else ``base64``."""
    lines = data.split(b"\r\n")
    crlf_only = b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    if crlf_only and data.isascii() and b"\0" not in data and all(len(line) <= MAX_7BIT_LINE for line in lines) \
            and not data.startswith(b"From "):
        return "7bit"
    if maintype == "text" and crlf_only and data:
        plain = sum(1 for byte in data if 32 <= byte < 127 or byte in (9, 10, 13))
        if plain / len(data) > 0.9:
            return "quoted-printable"
    return "base64"


def _body(text: str | None, html: str | None, inline: list[Attachment]) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    if text is not None or html is None:
        message.set_content(text or "")
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    html_part = message.get_body(("html",)) if html is not None else None
    for part in inline:
        maintype, subtype = part.content_type.split("/")
        options: dict[str, Any] = {"filename": part.filename, "disposition": "inline",
                                   "cte": transfer_encoding(part.data, maintype)}
        if part.content_id:
            options["cid"] = f"<{part.content_id}>"
        if html_part is not None:
            html_part.add_related(part.data, maintype, subtype, **options)
        else:
            message.add_attachment(part.data, maintype, subtype, **options)
    return message


def build_message(fields: dict[str, Any], attachments: list[Attachment]) -> bytes:
    """The message for an outbound email's fields (from, to, cc, subject, text, html, message_id,
    in_reply_to, references), as the bytes to send (Bcc is not a header)."""
    message = _body(fields.get("text"), fields.get("html"), [a for a in attachments if a.inline])
    for part in attachments:
        if not part.inline:
            maintype, subtype = part.content_type.split("/")
            message.add_attachment(part.data, maintype, subtype, filename=part.filename,
                                   cte=transfer_encoding(part.data, maintype))
    headers = [("From", address_header([fields["from"]]))]
    if fields.get("to"):
        headers.append(("To", address_header(fields["to"])))
    if fields.get("cc"):
        headers.append(("Cc", address_header(fields["cc"])))
    headers.append(("Subject", encoded_header(fields.get("subject") or "")))
    headers.append(("Date", email.utils.formatdate(localtime=False)))
    headers.append(("Message-ID", fields["message_id"]))
    # ids taken from received mail: only well-formed ones are repeated
    if fields.get("in_reply_to") and MESSAGE_ID.match(fields["in_reply_to"]):
        headers.append(("In-Reply-To", fields["in_reply_to"]))
    references = [ref for ref in fields.get("references") or [] if MESSAGE_ID.match(ref)]
    if references:
        headers.append(("References", "\r\n ".join(references)))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    return head + message.as_bytes(policy=POLICY)
