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
