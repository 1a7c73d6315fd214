"""What a user types into a header comes out at the relay as exactly that value: encoded words are
not reinterpreted (no header injection), and text no header can carry is refused at the API."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from tests.conftest import api_for, settled
from tests.peers import Relay

INJECTION = "=?utf-8?q?hi=0D=0AFrom:_ceo@bank.example=0D=0A=0D=0Afake_body?="
BCC_INJECTION = "=?utf-8?q?x=0D=0ABcc:_spy@evil.example?="


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("subject", [
    INJECTION, BCC_INJECTION, "Grüße — ☃ and =?not-a-word", "plain", "x" * 300, "tab\there", "",
])
async def test_a_subject_reaches_the_relay_exactly_as_given(start_gateway: Any, relay: Relay, subject: str) -> None:
    gateway = await start_gateway(relay=relay.url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    sent = await api.post("/emails", {"to": ["dan@example.org"], "subject": subject, "text": "the real body"},
                          token=token)
    assert sent.status == 201
    await settled(gateway)
    assert len(relay.received) == 1
    _, recipients, raw = relay.received[0]
    assert recipients == ["dan@example.org"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == subject
    assert message.get_all("From") == ["alice@localhost"] and message.get_all("To") == ["dan@example.org"]
    assert message.get_all("Bcc") is None
    assert message.get_content().strip() == "the real body"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r", "\n", "\x00", "\ud800"])
async def test_a_subject_no_header_can_carry_is_refused(start_gateway: Any, char: str) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    reply = await api.post("/emails", {"to": ["bob@localhost"], "subject": f"a{char}b", "text": "t"}, token=token,
                           check_spec=False)
    assert (reply.status, reply.json["code"]) == (400, "invalid_field")
    assert (await api.get("/emails", token=token)).headers["X-Total-Count"] == "0"


@pytest.mark.gen_test(timeout=30)
async def test_an_encoded_word_is_no_address(start_gateway: Any) -> None:
    gateway = await start_gateway()
    api = api_for(gateway)
    _, token = await api.register("alice")
    reply = await api.post("/emails", {"to": ["=?utf-8?q?x=0D=0ABcc:_spy?=@example.org"], "text": "t"}, token=token)
    assert (reply.status, reply.json["code"]) == (400, "invalid_field")


@pytest.mark.gen_test(timeout=60)
async def test_received_addresses_read_as_the_email_package_reads_them(api: Any, gateway: Any) -> None:
    """Headers of bare addresses are read by a fast path; each must come out as the email package
    reads the same header (display names kept, encoded words decoded, broken entries dropped)."""
    from gateway.mail.addresses import mailbox
    from tests.peers import in_thread, smtp_send

    values = ["a@b.example", "  a.b+c_d@x-y.example ,\r\n c@d.example", "a@b.example,,c@d.example", "x.@b.example",
              "a..b@c.example", "a@b.", "=?utf-8?q?eve?=@b.example", "Ann <ann@b.example>, c@d.example",
              "\"Smith, J\" <j@b.example>", "A@B.EXAMPLE", "-a@-b.example", "undisclosed-recipients:;"]
    _, token = await api.register("bob")
    for n, value in enumerate(values):
        raw = f"From: {value}\r\nTo: {value}\r\nCc: {value}\r\nSubject: case{n}x\r\n\r\nhi\r\n".encode()
        await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        expected = [mailbox(a.display_name, a.addr_spec) for a in parsed["To"].addresses
                    if a.addr_spec and a.addr_spec != "<>"]
        listed = (await api.get(f"/emails?q=case{n}x", token=token)).json["emails"]
        assert len(listed) == 1, value
        assert (listed[0]["to"], listed[0]["cc"]) == (expected, expected), value
        assert listed[0]["from"] == (expected or ["x@example.org"])[0], value


@pytest.mark.gen_test(timeout=60)
async def test_a_header_the_email_package_cannot_parse_does_not_cost_the_message(api: Any, gateway: Any) -> None:
    """The email package's address parser raises on some broken headers (``broken <``); the
    message is still accepted, and that header read from its raw text: entries without an
    address dropped, the good ones kept, the envelope sender standing in for a From it loses."""
    from tests.peers import in_thread, smtp_send

    _, token = await api.register("bob")
    raw = (b"From: broken <\r\nTo: bob@localhost, broken <\r\nCc: broken <\r\nSubject: still read\r\n"
           b"Message-ID: <broken-headers@example.org>\r\n\r\nThe body.\r\n")
    assert await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw) == {}
    listed = (await api.get("/emails", token=token)).json["emails"]
    assert [(e["from"], e["to"], e["cc"], e["subject"]) for e in listed] == [
        ("x@example.org", ["bob@localhost"], [], "still read")]
    email_id = listed[0]["id"]
    assert (await api.get(f"/emails/{email_id}/raw", token=token)).body == raw


@pytest.mark.gen_test(timeout=60)
async def test_long_and_hostile_address_headers_are_read_entry_by_entry(api: Any, gateway: Any) -> None:
    """Address headers the email package would take seconds over (its parser is quadratic in a
    header's length) arrive whole: the message is stored, a long list reads as the package reads it,
    and a header of junk gives the addresses it has."""
    from tests.peers import in_thread, smtp_send

    def folded(words: list[str]) -> str:  # SMTP lines are at most 998 octets: ten words a line
        return "\r\n ".join(" ".join(words[at:at + 10]) for at in range(0, len(words), 10))

    _, token = await api.register("bob")
    listed = folded([f'"Doe, J{n}" <j{n}@x.org>,' for n in range(300)]).rstrip(",")
    raw = (f"From: a@b.example\r\nTo: {folded(['Ann'] * 15000)}\r\nCc: {listed}\r\n"
           f"Reply-To: {folded(['(x,'] * 4000)}\r\nSubject: long headers\r\n\r\nThe body.\r\n").encode()
    assert await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], raw) == {}
    email = (await api.get("/emails", token=token)).json["emails"][0]
    assert (email["subject"], email["to"], len(email["cc"])) == ("long headers", [], 300)
    assert email["cc"][:2] == ['"Doe, J0" <j0@x.org>', '"Doe, J1" <j1@x.org>']
    assert (await api.get(f"/emails/{email['id']}/raw", token=token)).body == raw
