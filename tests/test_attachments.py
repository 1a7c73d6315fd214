"""Sending with attachments (JSON and multipart/form-data): the message an aiosmtpd relay receives is
correct MIME that Python's email package parses back into the same bytes; local recipients get the
same parts; every part downloads as its bytes, over HTTP and the tunnel; limits and unsafe names are
refused or made safe."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
from typing import Any

import pytest

from gateway.app.server import Gateway
from tests.conftest import Api, api_for, settled
from tests.peers import Relay, in_thread, smtp_send
from tests.sockjs_clients import connect

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(600)
BINARY = bytes(range(256)) * 8
LATIN1_TEXT = "Grüße aus Köln, and a line of plain words\r\n".encode("latin-1") * 3


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def form_data(request: dict[str, Any], files: list[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (a JSON ``request`` field, then files as (field, filename, type, bytes))
    and its Content-Type, as a browser's FormData makes it."""
    boundary = "----gatewaytest" + os.urandom(8).hex()
    parts = [b'Content-Disposition: form-data; name="request"\r\n\r\n' + json.dumps(request).encode()]
    for field, filename, content_type, data in files:
        parts.append(f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                     f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def tree(part: email.message.Message) -> Any:
    """A message's MIME tree as nested content types."""
    if part.is_multipart():
        return [part.get_content_type(), [tree(p) for p in part.iter_parts()]]  # type: ignore[attr-defined]
    return part.get_content_type()


@pytest.mark.gen_test(timeout=30)
async def test_json_attachments_reach_the_relay_as_correct_mime(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    await api.put("/accounts/me", {"display_name": "Alice Älvsjö"}, token=token)
    attachments = [
        {"filename": "logo.png", "content_type": "image/png", "content_base64": b64(PNG), "content_id": "<logo>",
         "inline": True},
        {"filename": "C:\\reports\\Résumé «2026».bin", "content_base64": b64(BINARY)},
        {"filename": "notes.txt", "content_type": "text/plain", "content_base64": b64(LATIN1_TEXT)},
        {"filename": "short.txt", "content_type": "text/plain", "content_base64": b64(b"plain ascii\r\n")},
    ]
    sent = await api.post("/emails", {
        "to": ["Zoë Bär <zoe@example.org>", '"Smith, John" <john@example.org>'], "cc": ["carol@example.org"],
        "subject": "Report", "text": "See attached.", "html": '<p>See <img src="cid:logo"></p>',
        "attachments": attachments}, token=token)
    assert sent.status == 201, sent.body
    email_json = sent.json["email"]
    assert email_json["to"] == ["Zoë Bär <zoe@example.org>", '"Smith, John" <john@example.org>']
    assert email_json["from"] == "Alice Älvsjö <alice@localhost>"
    assert [(a["index"], a["filename"], a["content_type"], a["size"], a["content_id"], a["inline"])
            for a in email_json["attachments"]] == [
        (0, "logo.png", "image/png", len(PNG), "logo", True),
        (1, "Résumé «2026».bin", "application/octet-stream", len(BINARY), None, False),  # the path is dropped
        (2, "notes.txt", "text/plain", len(LATIN1_TEXT), None, False),
        (3, "short.txt", "text/plain", 13, None, False),
    ]
    await settled(gateway)
    assert len(relay.received) == 1
    mail_from, recipients, wire = relay.received[0]
    assert (mail_from, recipients) == ("alice@localhost", ["zoe@example.org", "john@example.org", "carol@example.org"])
    assert wire.isascii()  # 7-bit clean: every part 7bit, quoted-printable or base64
    message = email.message_from_bytes(wire, policy=email.policy.default)
    assert tree(message) == ["multipart/mixed", [
        ["multipart/alternative", ["text/plain", ["multipart/related", ["text/html", "image/png"]]]],
        "application/octet-stream", "text/plain", "text/plain"]]
    assert str(message["From"]) == "Alice Älvsjö <alice@localhost>"
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("Zoë Bär", "zoe@example.org"), ("Smith, John", "john@example.org")]
    assert b"=?utf-8?b?" in wire.split(b"\r\n\r\n")[0]  # the non-ASCII name is an encoded word
    parts = [p for p in message.walk() if not p.is_multipart()]
    by_name = {p.get_filename(): p for p in parts if p.get_filename()}
    assert {name: p.get_payload(decode=True) for name, p in by_name.items()} == {
        "logo.png": PNG, "Résumé «2026».bin": BINARY, "notes.txt": LATIN1_TEXT, "short.txt": b"plain ascii\r\n"}
    assert by_name["logo.png"]["Content-ID"] == "<logo>" and by_name["logo.png"].get_content_disposition() == "inline"
    assert re.search(rb"filename\*(0\*)?=utf-8''R%C3%A9sum%C3%A9", wire)  # RFC 2231
    assert {p["Content-Transfer-Encoding"] for p in parts} <= {"7bit", "quoted-printable", "base64"}
    assert by_name["short.txt"]["Content-Transfer-Encoding"] == "7bit"
    assert by_name["notes.txt"]["Content-Transfer-Encoding"] == "quoted-printable"
    assert by_name["logo.png"]["Content-Transfer-Encoding"] == "base64"
    assert message.get_body(("plain",)).get_content().strip() == "See attached."

    # the sender's copy keeps the message as sent, byte for byte, and each part as given
    raw = await api.get(f"/emails/{email_json['id']}/raw", token=token)
    assert (raw.status, raw.headers["Content-Type"], raw.body) == (200, "message/rfc822", wire)
    assert raw.headers["Content-Disposition"] == f'attachment; filename="{email_json["id"]}.eml"'
    for index, data in enumerate([PNG, BINARY, LATIN1_TEXT, b"plain ascii\r\n"]):
        part = await api.get(f"/emails/{email_json['id']}/attachments/{index}", token=token)
        assert (part.status, part.body) == (200, data)
    notes = await api.get(f"/emails/{email_json['id']}/attachments/2", token=token)
    assert notes.headers["Content-Type"] == "text/plain"
    assert notes.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'
    resume = await api.get(f"/emails/{email_json['id']}/attachments/1", token=token)
    assert resume.headers["Content-Disposition"] == (
        "attachment; filename=\"Resume 2026.bin\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%C2%AB2026%C2%BB.bin")
    for missing in ("4", "-1", "x", "99999999"):
        gone = await api.get(f"/emails/{email_json['id']}/attachments/{missing}", token=token)
        assert (gone.status, gone.json["code"]) == (404, "not_found")


@pytest.mark.gen_test(timeout=30)
async def test_multipart_form_data_send_is_delivered_locally_with_its_files(api: Api, gateway: Gateway) -> None:
    _, alice = await api.register("alice")
    _, bob = await api.register("bob")
    body, content_type = form_data(
        {"to": ["Bob <bob@localhost>"], "subject": "Photos", "html": '<img src="cid:pic.png">'},
        [("attachment", "data.bin", "application/octet-stream", BINARY), ("inline", "pic.png", "image/png", PNG)])
    sent = await api.post("/emails", raw=body, token=alice, headers={"Content-Type": content_type})
    assert sent.status == 201, sent.body
    assert [(a["filename"], a["content_id"], a["inline"]) for a in sent.json["email"]["attachments"]] == [
        ("pic.png", "pic.png", True), ("data.bin", None, False)]
    await settled(gateway)
    inbox = (await api.get("/emails?label=inbox", token=bob)).json["emails"]
    assert len(inbox) == 1 and inbox[0]["from"] == "alice@localhost" and inbox[0]["to"] == ["Bob <bob@localhost>"]
    received = inbox[0]["id"]
    assert [a["filename"] for a in inbox[0]["attachments"]] == ["pic.png", "data.bin"]
    assert (await api.get(f"/emails/{received}/attachments/0", token=bob)).body == PNG
    assert (await api.get(f"/emails/{received}/attachments/1", token=bob)).body == BINARY
    sent_raw = (await api.get(f"/emails/{sent.json['email']['id']}/raw", token=alice)).body
    assert (await api.get(f"/emails/{received}/raw", token=bob)).body == sent_raw  # the same message
    detail = (await api.get(f"/emails/{received}", token=bob)).json["email"]
    html_part = detail["structure"]["parts"][0]
    assert detail["structure"]["content_type"] == "multipart/mixed" and html_part["content_type"] == "multipart/related"
    assert [p["content_type"] for p in html_part["parts"]] == ["text/html", "image/png"]
    assert html_part["parts"][1]["attachment"] == 0 and html_part["parts"][0]["body"] == "html"

    # multipart needs a bearer token (no page of another site can send one), and is taken on POST /emails only
    refused = await api.post("/emails", raw=body, headers={"Content-Type": content_type})
    assert (refused.status, refused.json["code"]) == (401, "unauthorized")
    elsewhere = await api.post("/contacts", raw=body, token=alice, headers={"Content-Type": content_type})
    assert (elsewhere.status, elsewhere.json["code"]) == (415, "unsupported_media_type")
    stray, stray_type = form_data({"to": ["bob@localhost"], "text": "x"}, [("other", "a.bin", "text/plain", b"x")])
    unknown = await api.post("/emails", raw=stray, token=alice, headers={"Content-Type": stray_type})
    assert (unknown.status, unknown.json["code"]) == (400, "unknown_field")
    no_request, no_request_type = form_data({}, [])
    missing = await api.post("/emails", raw=no_request.replace(b'name="request"', b'name="nope"'), token=alice,
                             headers={"Content-Type": no_request_type})
    assert (missing.status, missing.json["code"]) == (400, "unknown_field")


@pytest.mark.gen_test(timeout=30)
async def test_bad_attachments_and_limits_get_clear_errors(start_gateway: Any) -> None:
    gateway = await start_gateway(smtp_max_size=100_000)
    api = api_for(gateway)
    _, token = await api.register("alice")

    async def send(*attachments: dict[str, Any]) -> Any:
        return await api.post("/emails", {"to": ["bob@localhost"], "text": "x", "attachments": list(attachments)},
                              token=token)

    good = {"filename": "a.bin", "content_base64": b64(b"x")}
    cases = [
        ({**good, "content_base64": "not base64!"}, 400, "invalid_field"),
        ({**good, "content_type": "text/html; charset=x"}, 400, "invalid_field"),
        ({**good, "content_type": "multipart/mixed"}, 400, "invalid_field"),
        ({**good, "content_type": "message/rfc822"}, 400, "invalid_field"),
        ({**good, "filename": "a\r\nBcc: spy@example.org"}, 400, "invalid_field"),
        ({**good, "filename": "../"}, 400, "invalid_field"),
        ({**good, "content_id": "a b"}, 400, "invalid_field"),
        ({**good, "size": 1}, 400, "unknown_field"),
        ({"content_base64": b64(b"x")}, 400, "missing_field"),
        ({**good, "content_base64": b64(os.urandom(80_000))}, 413, "too_large"),  # over --smtp-max-size once built
    ]
    for attachment, status, code in cases:
        reply = await send(attachment)
        assert (reply.status, reply.json["code"]) == (status, code), attachment.get("filename")
    many = await send(*[good] * 101)
    assert (many.status, many.json["code"]) == (400, "invalid_field")
    body, content_type = form_data({"to": ["bob@localhost"], "text": "x"},
                                   [("attachment", f"{n}.txt", "text/plain", b"x") for n in range(98)])
    files = await api.post("/emails", raw=body, token=token, headers={"Content-Type": content_type})
    assert files.status == 201  # the form parser's own limit is 100 parts, the request field one of them
    huge = json.dumps({"to": ["bob@localhost"], "text": "x" * (gateway.config.max_body + 100_001)})
    too_big = await api.post("/emails", raw=huge, token=token)
    assert (too_big.status, too_big.json["code"]) == (413, "too_large")
    assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "1"


@pytest.mark.gen_test(timeout=30)
async def test_an_attachment_is_never_served_as_something_a_browser_runs(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    hostile = ('=?utf-8?q?evil=22=0D=0ASet-Cookie=3A_a=3D1=3B_x=3D=22.html?=')
    raw = (b"From: x@example.org\r\nTo: bob@localhost\r\nSubject: look\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
           b'--b\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename="'
           + hostile.encode() + b'"\r\n\r\n<script>alert(document.domain)</script>\r\n'
           b'--b\r\nContent-Type: image/svg+xml\r\nContent-Disposition: attachment; filename="x.svg"\r\n\r\n'
           b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>\r\n--b--\r\n")
    await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw)
    email_id = (await api.get("/emails", token=token)).json["emails"][0]["id"]
    for n in (0, 1):
        part = await api.get(f"/emails/{email_id}/attachments/{n}", token=token)
        assert part.status == 200
        assert part.headers["Content-Type"] == "application/octet-stream"  # html and svg: never rendered
        assert part.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in part.headers["Content-Security-Policy"]
        assert part.headers.get_list("Set-Cookie") == []
    html = await api.get(f"/emails/{email_id}/attachments/0", token=token)
    assert html.body == b"<script>alert(document.domain)</script>"
    disposition = html.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="evil_ Set-Cookie_ a_1_ x__.html"; filename*=UTF-8\'\'evil%22')
    assert disposition.isascii() and "\r" not in disposition and "\n" not in disposition
    # the stored html body itself is only ever JSON
    detail = await api.get(f"/emails/{email_id}", token=token)
    assert detail.headers["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.gen_test(timeout=30)
async def test_raw_and_parts_through_the_tunnel(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    raw = (b"From: =?iso-8859-1?q?J=F6rg?= <jorg@example.org>\r\nTo: bob@localhost\r\nSubject: Gr\xfc\xdfe\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           b"Gr\xfc\xdfe\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=\"b.bin\"\r\n\r\n" + base64.encodebytes(BINARY).replace(
               b"\n", b"\r\n") + b"--b--\r\n")
    await in_thread(smtp_send, gateway.smtp_port, "jorg@example.org", ["bob@localhost"], raw)
    email_id = (await api.get("/emails", token=token)).json["emails"][0]["id"]
    auth = {"Authorization": f"Bearer {token}"}
    client = await connect("websocket", api.base_url)
    try:
        detail = await client.request("GET", f"/emails/{email_id}", headers=auth)
        email_json = json.loads(detail["body"])["email"]
        assert "body_encoding" not in detail  # text stays text
        assert email_json["from"] == "Jörg <jorg@example.org>" and email_json["text"] == "Grüße"
        tunneled_raw = await client.request("GET", f"/emails/{email_id}/raw", headers=auth)
        assert tunneled_raw["body_encoding"] == "base64"  # not UTF-8: base64, marked
        assert base64.b64decode(tunneled_raw["body"]) == raw
        assert tunneled_raw["headers"]["Content-Type"] == ["message/rfc822"]
        part = await client.request("GET", f"/emails/{email_id}/attachments/0", headers=auth)
        assert (part["status"], part["body_encoding"], base64.b64decode(part["body"])) == (200, "base64", BINARY)
        http = await api.get(f"/emails/{email_id}/attachments/0", token=token)
        assert {k: v for k, v in part["headers"].items() if k not in ("Date", "X-Request-Id")} == {
            k: http.headers.get_list(k) for k in http.headers if k not in ("Date", "X-Request-Id", "Connection")}
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_display_names_reach_the_relay_exactly_and_inject_nothing(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    names = ["=?utf-8?q?x=0D=0ABcc:_spy@evil.example?=", 'He said "hi", then: <left>', "Ωμέγα", "a" * 120]
    to = [f'"{n.replace(chr(34), chr(92) + chr(34))}" <r{i}@example.org>' for i, n in enumerate(names)]
    sent = await api.post("/emails", {"to": to, "subject": "names", "text": "x"}, token=token)
    assert sent.status == 201, sent.body
    await settled(gateway)
    _, recipients, wire = relay.received[0]
    assert recipients == [f"r{i}@example.org" for i in range(len(names))]
    message = email.message_from_bytes(wire, policy=email.policy.default)
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        (n, f"r{i}@example.org") for i, n in enumerate(names)]
    assert message.get_all("Bcc") is None and b"\r\nBcc:" not in wire
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
