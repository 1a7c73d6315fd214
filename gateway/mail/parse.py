"""Reading messages with the ``email`` package: the fields of an email document (bodies, addresses,
the MIME structure, the attachment list), one attachment's bytes, and the limits a message must keep.

The attachment numbering is the order of :func:`attachment_parts`, so the ``index`` an email's
``attachments`` list shows is the ``n`` of ``GET /emails/{id}/attachments/{n}``, computed again
from the stored raw message.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import re
from email.headerregistry import UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from gateway.ids import iso_from_epoch
from gateway.mail.addresses import PLAIN_ADDRESS, header_mailboxes
from gateway.mail.received import HEADER_CLASSES, POLICY
from gateway.mail.single_part import read_single_part

MAX_HEADERS = 200
#: The most MIME parts (every part, containers included) a message may have.
MAX_PARTS = 500
#: The deepest nesting of multiparts and attached messages (a plain message is depth 0).
MAX_DEPTH = 20
#: Checked on the bytes before parsing: the parser's work grows with lines x open containers.
MAX_CONTAINER_HEADERS = 100
CONTAINER_HEADER = re.compile(rb"^content-type:[ \t]*(?:multipart|message)/", re.I | re.M)
#: Regenerating attached messages: headers as they came, CRLF line ends.
REGENERATE = email.policy.SMTP.clone(refold_source="none", max_line_length=0)


#: Text bodies and filenames keep at most this many characters in the search text.
SEARCH_CHARS = 100_000


class TooComplex(ValueError):
    """A message beyond :data:`MAX_PARTS` or :data:`MAX_DEPTH`; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse(raw: bytes) -> EmailMessage:
    """The message, parsed; :class:`TooComplex` when it breaks the limits."""
    containers = len(CONTAINER_HEADER.findall(raw))
    if containers > MAX_CONTAINER_HEADERS:
        raise TooComplex("too_many_parts", f"More than {MAX_CONTAINER_HEADERS} multipart or message parts")
    # one that names a multipart or message part anywhere goes to the parser at once: the single-part
    # reader would lex its headers only to find a multipart (it still checks, for a folded Content-Type)
    single = read_single_part(raw, POLICY) if not containers else None
    message = single or BytesParser(policy=POLICY).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    check_limits(message)
    return message


def children(part: Message) -> list[Message]:
    """The parts a multipart (or an attached message) holds; none for a leaf."""
    payload = part.get_payload() if part.is_multipart() else None
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def check_limits(message: Message) -> None:
    """:class:`TooComplex` when ``message`` has more than :data:`MAX_PARTS` parts or nests deeper
    than :data:`MAX_DEPTH` (walked without recursion, so any depth is safe to check)."""
    count, stack = 0, [(message, 0)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > MAX_PARTS:
            raise TooComplex("too_many_parts", f"More than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise TooComplex("too_deep", f"MIME parts nested deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children(part))


#: A Message-ID the email package reads back as it is: ``<dot-atom@dot-atom>`` of plain ASCII.
PLAIN_MESSAGE_ID = re.compile(f"<{PLAIN_ADDRESS.pattern}>")


def raw_headers(message: Message) -> dict[str, list[str]]:
    """A message's raw header values by lower-case name, in order: read once, so that looking up a
    dozen headers does not walk every header a dozen times."""
    found: dict[str, list[str]] = {}
    for field, value in message.raw_items():
        found.setdefault(field.lower(), []).append(str(value))
    return found


def _plain_header(headers: dict[str, list[str]], name: str) -> str | None:
    """A header's text, whitespace collapsed, when the email package would read it as the raw text
    is (an unstructured header of printable ASCII without encoded words, or a plain Message-ID);
    "" when there is no such header; None when only the parse can tell.  ``headers``: :func:`raw_headers`."""
    key = name.lower()
    values = headers.get(key)
    if not values:
        return ""
    text = " ".join("".join(values[0].splitlines()).split())
    if key == "message-id":
        return text if PLAIN_MESSAGE_ID.fullmatch(text) else None
    plain = text.isascii() and text.isprintable() and "=?" not in text
    return text if plain and issubclass(HEADER_CLASSES[key], UnstructuredHeader) else None


def _header(message: Message, name: str, headers: dict[str, list[str]] | None = None) -> str:
    """A header's text, whitespace collapsed ("" without one); ``headers``: the message's
    :func:`raw_headers`, when the caller has them."""
    headers = raw_headers(message) if headers is None else headers
    plain = _plain_header(headers, name)
    if plain is not None:  # what the parse below would give, at a fraction of its cost
        return plain
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse (asking again would raise again): the raw text
        value = headers[name.lower()][0]
    return " ".join(str(value or "").split())


#: A Date of RFC 5322's own form (``Tue, 01 Dec 2026 04:20:00 +0100``), whitespace collapsed: the
#: email package's Date header holds the same instant (it reads the text with the same function).
PLAIN_DATE = re.compile(r"(?:[A-Z][a-z]{2}, )?[0-9]{1,2} [A-Z][a-z]{2} [0-9]{4} "
                        r"[0-9]{2}:[0-9]{2}(?::[0-9]{2})? [+-][0-9]{4}")


def _date(message: Message, headers: dict[str, list[str]]) -> str | None:
    values = headers.get("date")
    plain = " ".join(values[0].split()) if values else ""
    try:
        if not PLAIN_DATE.fullmatch(plain):  # else only the Date header's own reading can tell
            plain = _header(message, "Date", headers)
        parsed = email.utils.parsedate_to_datetime(plain)
        return iso_from_epoch(parsed.timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _text(part: Message) -> str:
    """A text part decoded from its charset, lines ending in ``\n`` (the raw message keeps the bytes)."""
    try:
        text = part.get_content()  # type: ignore[attr-defined]
    except Exception:  # unknown charset or broken transfer encoding: decode what is there
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    return str(text).replace("\r\n", "\n")


def _body(message: EmailMessage, subtype: str) -> Message | None:
    try:
        return message.get_body((subtype,))
    except Exception:  # a structure the lookup trips on: no body of that kind
        return None


#: A message's text and html bodies (:func:`bodies`).
BodyParts = tuple[Message | None, Message | None]


def bodies(message: EmailMessage) -> BodyParts:
    """The parts a reader shows as the text and the html body (the email package's choice)."""
    text, html = _body(message, "plain"), _body(message, "html")
    return text, (html if html is not text else None)


def attachment_parts(message: EmailMessage, body_parts: BodyParts | None = None) -> list[Message]:
    """Every part that is not a body and holds content: the leaves, and attached messages as one
    part each (what they hold is shown in the structure, not listed again), in the message's order.
    ``body_parts``: the message's :func:`bodies`, when the caller has them."""
    skip = {id(p) for p in (bodies(message) if body_parts is None else body_parts) if p is not None}
    found: list[Message] = []
    stack: list[Message] = [message]
    while stack:
        part = stack.pop()
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed(children(part)))
        elif id(part) not in skip:  # a leaf, an attached message, or a root that is no body (a bare PDF)
            found.append(part)
    return found


def content(part: Message) -> bytes:
    """A part's decoded bytes: the transfer encoding undone; an attached message as the email package
    writes it again (headers as they came, CRLF line ends)."""
    if part.get_content_maintype() == "message" and part.is_multipart():
        inner = children(part)
        return inner[0].as_bytes(policy=REGENERATE) if inner else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def filename_of(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    return " ".join("".join(c if c.isprintable() else " " for c in str(name)).split()) or None


def _content_id(part: Message) -> str | None:
    value = _header(part, "Content-ID").strip()
    return value[1:-1] if value.startswith("<") and value.endswith(">") else (value or None)


def _params(part: Message) -> dict[str, str]:
    try:
        header = part["Content-Type"]
        params = dict(getattr(header, "params", {}) or {})
    except Exception:
        return {}
    return {str(k): str(v) for k, v in params.items()}


def _inline(part: Message) -> bool:
    disposition = part.get_content_disposition()
    return disposition == "inline" or (disposition is None and _content_id(part) is not None)


def describe(message: EmailMessage, body_parts: BodyParts | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The MIME structure (a tree) and the attachment list of a parsed message; ``body_parts``: its
    :func:`bodies`, when the caller has them."""
    text, html = bodies(message) if body_parts is None else body_parts
    attachments = attachment_parts(message, (text, html))
    index = {id(p): n for n, p in enumerate(attachments)}
    role = {id(text): "text", id(html): "html"}

    def node(part: Message) -> dict[str, Any]:
        inner = children(part)
        described: dict[str, Any] = {
            "content_type": part.get_content_type(),
            "params": _params(part),
            "filename": filename_of(part),
            "content_id": _content_id(part),
            "disposition": part.get_content_disposition(),
        }
        if inner:
            described["parts"] = [node(p) for p in inner]
        described["size"] = len(content(part)) if not inner or id(part) in index else \
            sum(p["size"] for p in described["parts"])
        if id(part) in index:
            described["attachment"] = index[id(part)]
        if id(part) in role:
            described["body"] = role[id(part)]
        return described

    listed = [{"index": n, "filename": filename_of(p), "content_type": p.get_content_type(),
               "size": len(content(p)), "content_id": _content_id(p), "inline": _inline(p)}
              for n, p in enumerate(attachments)]
    return node(message), listed


def stored_raw(raw: bytes) -> dict[str, Any]:
    """How a document keeps the raw message: ``raw`` as text when it is UTF-8, else base64 with
    ``raw_encoding: base64``; ``size`` in bytes."""
    try:
        return {"raw": raw.decode("utf-8"), "raw_encoding": "utf-8", "size": len(raw)}
    except UnicodeDecodeError:
        return {"raw": base64.b64encode(raw).decode(), "raw_encoding": "base64", "size": len(raw)}


def raw_bytes(email_doc: dict[str, Any]) -> bytes | None:
    """The exact bytes of an email's raw message, or None when it has none kept."""
    raw = email_doc.get("raw")
    if not isinstance(raw, str):
        return None
    return base64.b64decode(raw) if email_doc.get("raw_encoding") == "base64" else raw.encode("utf-8")


def _without_mime(message: Message,
                  headers: dict[str, list[str]]) -> tuple[dict[str, Any], list[Any], str, None] | None:
    """:func:`describe` and the bodies of a message with no MIME header (no ``Content-*`` field):
    one text/plain body in US-ASCII (RFC 2045's defaults), its bytes as they came; None for any
    other message.  ``headers``: its :func:`raw_headers`.  The same as the general reading (which
    asks the message for its content type and parameters a dozen times), without the asking."""
    if message.is_multipart() or any(name.startswith("content-") for name in headers):
        return None
    data = message.get_payload(decode=True)  # with no Content-Transfer-Encoding: the bytes as they came
    if not isinstance(data, bytes):
        return None
    structure: dict[str, Any] = {"content_type": "text/plain", "params": {}, "filename": None,
                                 "content_id": None, "disposition": None, "size": len(data), "body": "text"}
    return structure, [], data.decode("ascii", "replace").replace("\r\n", "\n"), None


def parse_message(raw: bytes) -> dict[str, Any]:
    """The fields of an email document from a raw message; :class:`TooComplex` beyond the limits,
    else never raises on malformed input (``defects`` counts what the parser found)."""
    message = parse(raw)
    headers = raw_headers(message)
    plain = _without_mime(message, headers)
    text: str | None
    html: str | None
    if plain is not None:
        structure, attachments, text, html = plain
    else:
        text_part, html_part = body_parts = bodies(message)
        structure, attachments = describe(message, body_parts)
        text = _text(text_part) if text_part is not None else None
        html = _text(html_part) if html_part is not None else None
    return {
        "message_id": _header(message, "Message-ID", headers) or None,
        "from": (header_mailboxes(message, "From", headers) or [""])[0],
        "to": header_mailboxes(message, "To", headers),
        "cc": header_mailboxes(message, "Cc", headers),
        "subject": _header(message, "Subject", headers),
        "date": _date(message, headers),
        "in_reply_to": _header(message, "In-Reply-To", headers) or None,
        "references": _header(message, "References", headers).split(),
        "text": text,
        "html": html,
        "attachments": attachments,
        "structure": structure,
        "headers": [[k, " ".join(str(v).split())] for k, v in list(message.raw_items())[:MAX_HEADERS]],
        **stored_raw(raw),
        "defects": len(message.defects),
    }


def attachment(raw: bytes, n: int) -> tuple[Message, bytes] | None:
    """Attachment ``n`` of a raw message (numbered as :func:`describe` lists them): the part and
    its decoded bytes, or None when there is no such attachment."""
    parts = attachment_parts(parse(raw))
    if not 0 <= n < len(parts):
        return None
    return parts[n], content(parts[n])


def search_text(fields: dict[str, Any]) -> str:
    """What ``?q=`` searches in an email, case-folded: subject, from, to, cc, attachment names, text body."""
    names = [a.get("filename") or "" for a in fields.get("attachments") or []]
    words = [fields.get("subject") or "", fields.get("from") or "", *(fields.get("to") or []),
             *(fields.get("cc") or []), *names, (fields.get("text") or "")[:SEARCH_CHARS]]
    return "\n".join(w for w in words if w).casefold()
