"""Mail moves and events flow: SMTP in, local and relayed delivery, delivery/receipt events, resume by cursor."""

from __future__ import annotations

import asyncio
import json
import smtplib
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from gateway.ids import new_id, now_iso
from gateway.app.server import Gateway
from gateway.client import Client
from tests.conftest import Api, PASSWORD, api_for, settled, wait_until
from tests.peers import Relay, free_port, in_thread, smtp_send
from tests.sockjs_clients import connect, next_event, subscribed, without_cursor


@pytest.mark.gen_test(timeout=30)
async def test_two_accounts_mail_each_other_over_the_tunnel(api: Api) -> None:
    alice, alice_token = await api.register("alice")
    bob, bob_token = await api.register("bob")
    a = await subscribed("websocket", api.base_url, alice_token)
    b = await subscribed("xhr-streaming", api.base_url, bob_token)
    try:
        sent = await a.request("POST", "/emails", {"to": ["bob@localhost"], "subject": "Lunch?", "text": "12:30"},
                               token=alice_token)
        email = json.loads(sent["body"])["email"]
        receipt = await next_event(b)
        delivery = await next_event(a)
        assert delivery == {"type": "delivery", "id": email["id"], "name": "Lunch?", "thread": email["thread"],
                            "labels": ["sent"], "cursor": delivery["cursor"]}
        assert receipt["type"] == "receipt" and receipt["name"] == "Lunch?" and receipt["labels"] == ["inbox"]
        copy = json.loads((await b.request("GET", f"/emails/{receipt['id']}", token=bob_token))["body"])["email"]
        assert (copy["thread"], copy["from"], copy["direction"]) == (receipt["thread"], "alice@localhost", "in")

        reply = await b.request("POST", "/emails", {"to": ["alice@localhost"], "subject": "Re: Lunch?",
                                                    "text": "yes", "in_reply_to": receipt["id"]}, token=bob_token)
        assert reply["status"] == 201
        answer = await next_event(a)
        assert answer["type"] == "receipt" and answer["thread"] == email["thread"]  # threaded in alice's mailbox
        assert (await next_event(b))["type"] == "delivery"
        assert int(answer["cursor"]) > int(delivery["cursor"])
    finally:
        await a.close()
        await b.close()


@pytest.mark.gen_test(timeout=30)
async def test_smtp_in_files_mail_and_the_recipient_gets_a_receipt(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    await api.register("carol")
    # a back end hearing about mail, as the Python client (gateway/client/) lets one do
    client = Client(api.base_url)
    await client.start()
    try:
        events = await client.subscribe(token)
        message = EmailMessage()
        message["From"] = "Ann <ann@example.org>"
        message["To"] = "bob@localhost, carol@localhost"
        message["Subject"] = "Quarterly report"
        message["Message-ID"] = "<q1@example.org>"
        message["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
        message.set_content("Numbers inside.")
        message.add_alternative("<p>Numbers inside.</p>", subtype="html")
        message.add_attachment(b"x" * 1000, maintype="application", subtype="pdf", filename="q3.pdf")
        wire = message.as_bytes(policy=email_policy.SMTP)  # CRLF line ends, as SMTP wants
        refused = await in_thread(smtp_send, gateway.smtp_port, "ann@example.org", ["bob@localhost"], wire)
        assert refused == {}
        event = await anext(aiter(events))
        assert (event["type"], event["name"], event["labels"]) == ("receipt", "Quarterly report", ["inbox"])
        email = (await api.get(f"/emails/{event['id']}", token=token)).json["email"]
        assert email["from"] == "Ann <ann@example.org>" and email["to"] == ["bob@localhost", "carol@localhost"]
        assert email["text"].strip() == "Numbers inside." and email["html"].strip() == "<p>Numbers inside.</p>"
        assert email["attachments"] == [{"index": 0, "filename": "q3.pdf", "content_type": "application/pdf",
                                         "size": 1000, "content_id": None, "inline": False}]
        assert email["message_id"] == "<q1@example.org>" and email["date"] == "2026-11-21T10:00:00.000000Z"
        assert email["raw"].encode() == wire and ["Subject", "Quarterly report"] in email["headers"]
        assert email["read"] is False and email["thread"] == event["thread"]
        listed = (await api.get("/emails?label=inbox", token=token)).json["emails"][0]
        assert "raw" not in listed and "headers" not in listed
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_smtp_refuses_unknown_recipients_and_oversized_mail(api: Api, gateway: Gateway) -> None:
    await api.register("bob")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["nobody@localhost"], "Subject: hi\r\n\r\nx")
    assert refused.value.recipients["nobody@localhost"][0] == 550
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@elsewhere.org"], "Subject: hi\r\n\r\nx")
    big = b"Subject: big\r\n\r\n" + b"x" * (gateway.config.smtp_max_size + 10)
    with pytest.raises(smtplib.SMTPSenderRefused) as too_big:  # the SIZE the client declares is refused
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], big)
    assert too_big.value.smtp_code == 552
    assert await gateway.store.count("emails") == 0


@pytest.mark.gen_test(timeout=30)
async def test_malformed_mail_is_stored_as_well_as_it_parses(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    raw = (b"From: =?bogus?Q?x?= <<broken@@>\r\nTo: bob@localhost\r\nSubject: =?utf-8?B?not base64!?=\r\n"
           b"Content-Type: multipart/mixed; boundary=\"missing\"\r\nDate: yesterday-ish\r\n\r\n\xff\xfe garbage")
    await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw)
    emails = (await api.get("/emails", token=token)).json["emails"]
    assert len(emails) == 1 and emails[0]["date"] is None and emails[0]["direction"] == "in"
    full = (await api.get(f"/emails/{emails[0]['id']}", token=token)).json["email"]
    assert full["raw_encoding"] == "base64" and full["size"] > 0
    assert (await api.get("/health")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_relay_accepts_and_the_sender_gets_a_delivery(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token, events=["delivery"])
    try:
        sent = (await api.post("/emails", {"to": ["dan@example.org"], "bcc": ["eve@example.net"],
                                           "subject": "Hi Dan", "text": "hello"}, token=token)).json["email"]
        event = await next_event(client)
        assert (event["type"], event["id"]) == ("delivery", sent["id"])
        [(sender, recipients, data)] = relay.received
        assert sender == "alice@localhost" and recipients == ["dan@example.org", "eve@example.net"]
        assert b"Subject: Hi Dan" in data and b"eve@example.net" not in data  # Bcc is no header
        email = (await api.get(f"/emails/{sent['id']}", token=token)).json["email"]
        assert email["status"] == "delivered" and email["delivered_to"] == ["dan@example.org", "eve@example.net"]
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_relay_refusal_and_outage_retry_then_fail(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url, delivery_attempts=3, delivery_backoff=0.05)
    api = api_for(gateway)
    _, token = await api.register("alice")
    # a permanent refusal fails at once
    relay.refuse = ["550 5.1.1 No such mailbox"]
    refused = (await api.post("/emails", {"to": ["gone@example.org"], "text": "x"}, token=token)).json["email"]
    await settled(gateway)
    email = (await api.get(f"/emails/{refused['id']}", token=token)).json["email"]
    assert (email["status"], email["attempts"]) == ("failed", 1) and "550" in email["last_error"]
    # a temporary refusal is retried, and the retry gets through
    relay.refuse = ["451 4.3.0 Try later"]
    later = (await api.post("/emails", {"to": ["busy@example.org"], "text": "x"}, token=token)).json["email"]
    await settled(gateway)
    email = (await api.get(f"/emails/{later['id']}", token=token)).json["email"]
    assert (email["status"], email["attempts"]) == ("delivered", 2)
    # no relay at all (down): retried with backoff, then failed with the reason
    await gateway.stop()
    down = await start_gateway(relay=f"smtp://127.0.0.1:{free_port()}", delivery_attempts=3, delivery_backoff=0.05)
    api = api_for(down)
    token = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]["value"]
    lost = (await api.post("/emails", {"to": ["dan@example.org"], "text": "x"}, token=token)).json["email"]
    await settled(down)
    email = (await api.get(f"/emails/{lost['id']}", token=token)).json["email"]
    assert (email["status"], email["attempts"]) == ("failed", 3) and "relay unreachable" in email["last_error"]


@pytest.mark.gen_test(timeout=30)
async def test_without_a_relay_external_mail_fails_clearly(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("alice")
    sent = (await api.post("/emails", {"to": ["dan@example.org"], "text": "x"}, token=token)).json["email"]
    await settled(gateway)
    email = (await api.get(f"/emails/{sent['id']}", token=token)).json["email"]
    assert email["status"] == "failed" and "no SMTP relay configured" in email["last_error"]


@pytest.mark.gen_test(timeout=30)
async def test_restart_delivers_queued_mail_and_resends_nothing(start_gateway: Any, relay: Relay) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    alice, token = await api.register("alice")
    await gateway.stop()
    # what a crash leaves: one email queued, one mid-delivery with one recipient done
    base = {"owner": alice["id"], "direction": "out", "from": "alice@localhost", "cc": [], "bcc": [],
            "subject": "s", "text": "t", "html": None, "in_reply_to": None, "references": [], "labels": ["sent"],
            "read": True, "created": now_iso(), "thread": new_id()}
    queued = {**base, "id": new_id(), "message_id": "<q@localhost>", "status": "queued", "to": ["dan@example.org"]}
    sending = {**base, "id": new_id(), "message_id": "<s@localhost>", "status": "sending",
               "to": ["dan@example.org", "eve@example.org"], "delivered_to": ["dan@example.org"]}
    await gateway.store.open()
    for email in (queued, sending):
        await gateway.store.insert("emails", email)
    await gateway.store.close()

    restarted = await start_gateway(relay=relay.url)
    await settled(restarted)
    assert sorted((sender, tuple(rcpts)) for sender, rcpts, _ in relay.received) == [
        ("alice@localhost", ("dan@example.org",)), ("alice@localhost", ("eve@example.org",))]
    for email in (queued, sending):
        assert (await restarted.store.get("emails", email["id"]))["status"] == "delivered"


@pytest.mark.gen_test(timeout=60)
async def test_resubscribing_with_since_gets_exactly_the_missed_events(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    client = await subscribed("websocket", api.base_url, token)
    mail = lambda i: in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"],  # noqa: E731
                               f"Subject: m{i}\r\n\r\nbody")
    await mail(0)
    first = await next_event(client)
    await client.close()
    for i in range(1, 6):  # arrive while nobody listens
        await mail(i)
    client = await connect("xhr-streaming", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "since": first["cursor"]})
        during = asyncio.ensure_future(asyncio.gather(*(mail(i) for i in range(6, 12))))  # while it replays
        assert without_cursor(await client.recv()) == {"type": "subscribed", "recovered": True}
        await during
        events = [await next_event(client) for _ in range(11)]
        assert [e["name"] for e in events[:5]] == [f"m{i}" for i in range(1, 6)]
        assert sorted(e["name"] for e in events[5:]) == sorted(f"m{i}" for i in range(6, 12))
        cursors = [int(e["cursor"]) for e in events]
        assert cursors == sorted(cursors) and len(set(cursors)) == 11
        await mail(12)
        assert (await next_event(client))["name"] == "m12"  # live again, nothing repeated before it
        assert client.inbox.empty()
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_since_too_old_is_not_recovered_and_bad_fields_are_refused(start_gateway: Any) -> None:
    gateway = await start_gateway(event_history=5)
    api = api_for(gateway)
    _, token = await api.register("bob")
    client = await subscribed("websocket", api.base_url, token)
    try:
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], "Subject: old\r\n\r\nx")
        old = await next_event(client)
        for i in range(12):
            await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], f"Subject: n{i}\r\n\r\nx")
        await client.send({"type": "subscribe", "token": token, "since": old["cursor"]})
        reply = await client.wait_for(lambda m: m["type"] == "subscribed")
        assert without_cursor(reply) == {"type": "subscribed", "recovered": False}
        for fields, code in [({"since": 5}, "invalid_field"), ({"since": "abc"}, "invalid_cursor"),
                             ({"events": ["spam"]}, "invalid_field"), ({"events": "receipt"}, "invalid_field")]:
            await client.send({"type": "subscribe", "token": token, "id": "s", **fields})
            error = await client.wait_for(lambda m: m["type"] == "error")
            assert (error["code"], error["id"]) == (code, "s"), fields
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_client_that_falls_behind_is_closed_and_can_resume(start_gateway: Any) -> None:
    gateway = await start_gateway(ws_max_queue=300)
    api = api_for(gateway)
    _, token = await api.register("bob")
    http = api.http
    url = f"{api.base_url}/ws/000/{new_id()}/"
    assert (await http.fetch(url + "xhr", method="POST", body=b"")).body == b"o\n"
    await http.fetch(url + "xhr_send", method="POST", body=json.dumps([json.dumps({"type": "subscribe", "token": token})]))
    assert b"subscribed" in (await http.fetch(url + "xhr", method="POST", body=b"")).body
    # the client stops polling; events pile up in its queue until it overflows
    for i in range(8):
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], f"Subject: m{i}\r\n\r\nx")
    await wait_until(lambda: not gateway.ws.live)
    assert gateway.registry.counts()["subscribers"] == 0
    close = (await http.fetch(url + "xhr", method="POST", body=b"")).body.decode()
    assert close.startswith("a[") or close.startswith("c[4000")  # queued events, then the close frame
    # the other clients are unaffected; this one resumes by cursor
    client = await subscribed("websocket", api.base_url, token, since="0")
    try:
        names = [(await next_event(client))["name"] for _ in range(8)]
        assert names == [f"m{i}" for i in range(8)]
    finally:
        await client.close()


@pytest.fixture
def tls_relay(io_loop: Any, tmp_path: Any, monkeypatch: Any) -> Any:
    """A relay that requires STARTTLS and a login, with a certificate the gateway is told to trust."""
    import shutil
    import ssl
    import subprocess

    from aiosmtpd.smtp import AuthResult

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a test certificate")
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # how an operator trusts a private CA
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Relay()
    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        # handled=False: let aiosmtpd answer 535 itself on a failure
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"gw", b"s3cret pass"), handled=False)

    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            lambda: SMTP(handler, tls_context=context, require_starttls=True, auth_required=True,
                         authenticator=authenticator), "127.0.0.1", 0)

    server = io_loop.run_sync(start)
    handler.port = server.sockets[0].getsockname()[1]
    handler.logins = logins
    yield handler
    server.close()


@pytest.mark.gen_test(timeout=30)
async def test_relay_with_starttls_and_login(start_gateway: Any, tls_relay: Relay) -> None:
    gateway = await start_gateway(relay=f"smtp+starttls://gw:s3cret%20pass@127.0.0.1:{tls_relay.port}",
                                  delivery_attempts=1)
    api = api_for(gateway)
    _, token = await api.register("alice")
    sent = (await api.post("/emails", {"to": ["dan@example.org"], "subject": "secure", "text": "x"},
                           token=token)).json["email"]
    await settled(gateway)
    assert (await api.get(f"/emails/{sent['id']}", token=token)).json["email"]["status"] == "delivered"
    assert tls_relay.logins == [("gw", "s3cret pass")] and len(tls_relay.received) == 1
    # a wrong password is a clear failure, not a silent one
    await gateway.stop()
    wrong = await start_gateway(relay=f"smtp+starttls://gw:nope@127.0.0.1:{tls_relay.port}", delivery_attempts=1)
    api = api_for(wrong)
    token = (await api.post("/tokens", {"username": "alice", "password": PASSWORD})).json["token"]["value"]
    lost = (await api.post("/emails", {"to": ["dan@example.org"], "text": "x"}, token=token)).json["email"]
    await settled(wrong)
    email = (await api.get(f"/emails/{lost['id']}", token=token)).json["email"]
    assert email["status"] == "failed" and "535" in email["last_error"]
