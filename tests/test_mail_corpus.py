"""A corpus of real-world-shaped messages goes in over SMTP and is read back as JSON, raw and parts:
the raw message and every part byte for byte, the bodies decoded from their charsets, the structure and
the attachment list as a reader sees them.  Messages beyond the part and depth limits are refused."""

from __future__ import annotations

import base64
import smtplib
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.app.server import Gateway
from gateway.mail.smtp_in import PARSE_ON_LOOP_BYTES
from tests.conftest import Api
from tests.peers import in_thread, smtp_send

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200, 256)) * 20
LARGE = b"PK\x03\x04" + bytes(range(256)) * 1200


def b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def head(subject: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (b"From: Sender <sender@example.org>\r\nTo: bob@localhost\r\nSubject: " + subject + b"\r\n"
            b"Date: Mon, 02 Mar 2026 09:30:00 +0100\r\nMessage-ID: <" + subject.split(b"?")[0][:8].replace(b"=", b"x")
            + b"@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n" + extra + b"\r\n")


@dataclass
class Case:
    """A message, and what reading it back must show."""

    raw: bytes
    subject: str
    text: str | None
    html: str | None = None
    attachments: list[tuple[str | None, str, bytes, bool]] = field(default_factory=list)  # name, type, bytes, inline
    tree: Any = None


FORWARDED = (b"From: Carol <carol@example.org>\r\nTo: sender@example.org\r\nSubject: Original\r\n"
             b"Message-ID: <orig@example.org>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n"
             b"--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe original text.\r\n"
             b"--inner\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
             b"Content-Disposition: attachment; filename=\"inner.pdf\"\r\n\r\n" + b64_lines(PDF) + b"--inner--\r\n")

CORPUS = {
    "attachments": Case(
        head(b"Invoice", b'multipart/mixed; boundary="outer"') +
        b"This is a multi-part message in MIME format.\r\n"
        b"--outer\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Please find the invoice attached. Caf=C3=A9 =E2=98=95\r\n"
        b"--outer\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n" + b64_lines(PDF) +
        b"--outer\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"rows.csv\"\r\n\r\n"
        b"a,b\r\n1,2\r\n--outer--\r\n",
        "Invoice", "Please find the invoice attached. Café ☕", None,
        [("invoice.pdf", "application/pdf", PDF, False), ("rows.csv", "text/csv", b"a,b\r\n1,2", False)],
        ["multipart/mixed", ["text/plain", "application/pdf", "text/csv"]]),
    "inline image": Case(
        head(b"Newsletter", b'multipart/alternative; boundary="alt"') +
        b"--alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nOur news.\r\n"
        b"--alt\r\nContent-Type: multipart/related; boundary=\"rel\"; type=\"text/html\"\r\n\r\n"
        b"--rel\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Our news <img src=\"cid:logo@news\"></p>\r\n"
        b"--rel\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <logo@news>\r\n"
        b"Content-Disposition: inline; filename=\"logo.png\"\r\n\r\n" + b64_lines(PNG) + b"--rel--\r\n--alt--\r\n",
        "Newsletter", "Our news.", '<p>Our news <img src="cid:logo@news"></p>',
        [("logo.png", "image/png", PNG, True)],
        ["multipart/alternative", ["text/plain", ["multipart/related", ["text/html", "image/png"]]]]),
    "forwarded": Case(
        head(b"Fwd: Original", b'multipart/mixed; boundary="fwd"') +
        b"--fwd\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
        b"--fwd\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"original.eml\"\r\n\r\n"
        + FORWARDED + b"--fwd--\r\n",
        "Fwd: Original", "See below.", None,
        [("original.eml", "message/rfc822", FORWARDED, False)],
        ["multipart/mixed", ["text/plain", ["message/rfc822", [["multipart/mixed", ["text/plain", "application/pdf"]]]]]]),
    "iso-8859-1": Case(
        head(b"=?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=", b"text/plain; charset=ISO-8859-1",
             b"Content-Transfer-Encoding: 8bit\r\n") + "Schöne Grüße, Jürgen\r\n".encode("latin-1"),
        "Grüße aus Köln", "Schöne Grüße, Jürgen\n", tree="text/plain"),
    "shift_jis": Case(
        head(b"=?ISO-2022-JP?B?GyRCJE8kOCRhJF4kNxsoQg==?=", b"text/plain; charset=Shift_JIS",
             b"Content-Transfer-Encoding: base64\r\n") + b64_lines("こんにちは、世界\r\n".encode("shift_jis")),
        "はじめまし", "こんにちは、世界\n", tree="text/plain"),
    "encoded-word filename": Case(
        head(b"Scan", b'multipart/mixed; boundary="s"') +
        b"--s\r\nContent-Type: text/plain\r\n\r\nscan\r\n"
        b"--s\r\nContent-Type: application/pdf; name=\"=?UTF-8?B?0KHQutCw0L0g4oSWMS5wZGY=?=\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"=?UTF-8?B?0KHQutCw0L0g4oSWMS5wZGY=?=\"\r\n\r\n" + b64_lines(PDF) +
        b"--s\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename*=iso-8859-1''r%E9sum%E9.bin\r\n\r\nxyz\r\n--s--\r\n",
        "Scan", "scan", None,
        [("Скан №1.pdf", "application/pdf", PDF, False), ("résumé.bin", "application/octet-stream", b"xyz", False)],
        ["multipart/mixed", ["text/plain", "application/pdf", "application/octet-stream"]]),
    # larger than what is parsed on the event loop: parsed on a worker thread (gateway/mail/smtp_in.py)
    "large attachment": Case(
        head(b"Archive", b'multipart/mixed; boundary="z"') +
        b"--z\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe archive.\r\n"
        b"--z\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"archive.zip\"\r\n\r\n" + b64_lines(LARGE) + b"--z--\r\n",
        "Archive", "The archive.", None, [("archive.zip", "application/zip", LARGE, False)],
        ["multipart/mixed", ["text/plain", "application/zip"]]),
}
assert len(CORPUS["large attachment"].raw) > PARSE_ON_LOOP_BYTES


def shape(node: dict[str, Any]) -> Any:
    """The structure as nested content types (as tests/test_attachments.py:tree gives it)."""
    if "parts" in node:
        return [node["content_type"], [shape(p) for p in node["parts"]]]
    return node["content_type"]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("name", list(CORPUS))
async def test_real_world_mail_reads_back_exactly(api: Api, gateway: Gateway, name: str) -> None:
    case = CORPUS[name]
    _, token = await api.register("bob")
    assert await in_thread(smtp_send, gateway.smtp_port, "sender@example.org", ["bob@localhost"], case.raw) == {}
    listed = (await api.get("/emails", token=token)).json["emails"]
    assert len(listed) == 1
    email = (await api.get(f"/emails/{listed[0]['id']}", token=token)).json["email"]
    assert (email["subject"], email["text"], email["html"]) == (case.subject, case.text, case.html)
    assert email["from"] == "Sender <sender@example.org>" and email["size"] == len(case.raw)
    assert [(a["filename"], a["content_type"], a["size"], a["inline"]) for a in email["attachments"]] == [
        (n, t, len(data), inline) for n, t, data, inline in case.attachments]
    assert shape(email["structure"]) == case.tree
    raw = await api.get(f"/emails/{email['id']}/raw", token=token)
    assert (raw.headers["Content-Type"], raw.body) == ("message/rfc822", case.raw)
    for index, (_, _, data, _) in enumerate(case.attachments):
        part = await api.get(f"/emails/{email['id']}/attachments/{index}", token=token)
        assert part.body == data, (name, index)
    if case.subject == "Invoice":
        assert (await api.get("/emails?q=invoice.PDF", token=token)).headers["X-Total-Count"] == "1"


def nested(depth: int) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return b"Subject: deep\r\nMIME-Version: 1.0\r\n" + opening + b"Content-Type: text/plain\r\n\r\nhi" + closing + b"\r\n"


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(count))
    return b'Subject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("raw,accepted", [
    (nested(20), True), (nested(21), False), (nested(3000), False),
    (many_parts(499), True), (many_parts(500), False),
])
async def test_smtp_refuses_messages_beyond_the_part_and_depth_limits(api: Api, gateway: Gateway, raw: bytes,
                                                                     accepted: bool) -> None:
    _, token = await api.register("bob")
    if accepted:
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw)
        assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "1"
        return
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw)
    assert refused.value.smtp_code == 552 and b"too complex" in refused.value.smtp_error
    assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "0"
