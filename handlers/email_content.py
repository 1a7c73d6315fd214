"""An email's content as files: the raw message (``/emails/{id}/raw``) and one attachment's bytes
(``/emails/{id}/attachments/{n}``), each a download that no browser renders on this origin."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from email.message import Message
from urllib.parse import quote

from gateway.mail.mailbox import load_message
from gateway.mail.parse import TooComplex, attachment, filename_of, raw_bytes
from gateway.store import Doc
from handlers.base import APIError, APIHandler, not_found

#: Media types served as they are; any other (html, svg, xml, scripts: what a browser could run) is
#: served as application/octet-stream.
SAFE_TYPES = re.compile(r"^(?:text/(?:plain|csv|calendar)|image/(?:png|jpeg|gif|webp|bmp|tiff|avif)|audio/[a-z0-9.+-]+"
                        r"|video/[a-z0-9.+-]+|font/[a-z0-9.+-]+|message/rfc822"
                        r"|application/(?:pdf|zip|gzip|octet-stream|msword|rtf|vnd\.[a-z0-9.+-]+))$")
#: Downloads must not run anything even if a browser were to render them.
DOWNLOAD_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"


def served_type(part: Message) -> str:
    """The Content-Type a part is served with: its own when it is on :data:`SAFE_TYPES`
    (text with its charset), else ``application/octet-stream``."""
    media = part.get_content_type()
    if not SAFE_TYPES.match(media):
        return "application/octet-stream"
    charset = part.get_content_charset()
    if media.startswith("text/") and charset and re.fullmatch(r"[A-Za-z0-9._:-]{1,40}", charset):
        return f"{media}; charset={charset}"
    return media


def content_disposition(filename: str) -> str:
    """``attachment`` with the filename as an ASCII fallback (anything unsafe replaced by ``_``) and,
    when that differs, the full name as RFC 5987 ``filename*`` (RFC 6266)."""
    name = "".join(c for c in filename if unicodedata.category(c)[0] != "C").replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip().strip(".") or "attachment"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", ascii_name)[:150].strip() or "attachment"
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name[:200], safe='')}"
    return value


class ContentHandler(APIHandler):
    """A download of an email's content."""

    def download(self, content_type: str, filename: str, data: bytes) -> None:
        self.set_header("Content-Type", content_type)
        self.set_header("Content-Disposition", content_disposition(filename))
        self.set_header("Content-Security-Policy", DOWNLOAD_CSP)
        self.finish(data)

    async def raw_of(self, email_id: str) -> tuple[Doc, bytes]:
        email = await load_message(self.store, await self.owned("emails", email_id, "Email"))
        raw = raw_bytes(email)
        if raw is None:  # an email composed before the gateway kept messages
            raise APIError(404, "not_found", "This email has no raw message")
        return email, raw


class EmailRawHandler(ContentHandler):
    """``GET /emails/{id}/raw``: the message's exact bytes, as received (inbound) or as sent (outbound)."""

    async def get(self, email_id: str) -> None:
        email, raw = await self.raw_of(email_id)
        self.download("message/rfc822", f"{email['id']}.eml", raw)


class EmailAttachmentHandler(ContentHandler):
    """``GET /emails/{id}/attachments/{n}``: attachment ``n``'s decoded bytes."""

    async def get(self, email_id: str, number: str) -> None:
        _, raw = await self.raw_of(email_id)
        if not number.isdigit() or len(number) > 6:
            raise not_found("Attachment")
        try:
            found = await asyncio.to_thread(attachment, raw, int(number))  # parsing takes a while: off the loop
        except TooComplex:
            found = None  # stored before the limits: its parts are not served
        if found is None:
            raise not_found("Attachment")
        part, data = found
        self.download(served_type(part), filename_of(part) or f"attachment-{number}", data)


routes = [(r"/emails/([^/]+)/raw", EmailRawHandler), (r"/emails/([^/]+)/attachments/([^/]+)", EmailAttachmentHandler)]
