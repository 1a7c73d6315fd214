"""One test per mail guarantee, seen as a client sees it (HTTP API replies, an SMTP peer's view).

Each test fails when the guarantee it holds is broken (docs/mail.md, "Guarantees and the tests that hold them").
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import pytest

from gateway.app.server import Gateway
from gateway.ids import new_id
from gateway.mail.documents import Draft
from gateway.mail.outbox import compose
from tests.conftest import PASSWORD, Api, api_for, serve_relay, settled, wait_until
from tests.peers import Relay, in_thread, smtp_send


class RelayPeer(Protocol):
    """The ``relay`` fixture as these tests use it: its URL (set by the fixture) and what it accepted."""

    url: str
    received: list[tuple[str, list[str], bytes]]


class BusyRelay(Relay):
    """A relay that answers every RCPT with 451 (try later) and notes when each attempt reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""  # set once it listens
        self.attempts: list[float] = []  # time.monotonic() of each RCPT

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.attempts.append(time.monotonic())
        return "451 4.3.0 try later"


@pytest.fixture
def busy_relay(io_loop: Any) -> Any:
    """A :class:`BusyRelay` on a free port; ``busy_relay.url`` is its ``smtp://`` URL."""
    yield from serve_relay(io_loop, BusyRelay())


@pytest.mark.gen_test(timeout=30)
async def test_retry_backoff_doubles_between_attempts(start_gateway: Any, busy_relay: BusyRelay) -> None:
    backoff = 0.3
    gateway = await start_gateway(relay=busy_relay.url, delivery_attempts=4, delivery_backoff=backoff)
    api = api_for(gateway)
    _, token = await api.register("alice")
    sent = (await api.post("/emails", {"to": ["dan@example.org"], "text": "x"}, token=token)).json["email"]
    await wait_until(lambda: len(busy_relay.attempts) >= 4)
    first, second, third, fourth = busy_relay.attempts[:4]
    gaps = [second - first, third - second, fourth - third]
    assert gaps[0] >= backoff * 0.9, gaps  # the first retry waits the base delay
    # each wait is twice the one before (a constant backoff gives ~1.0); generous, as the machine is noisy
    assert 1.4 <= gaps[1] / gaps[0] <= 3.2, gaps
    assert 1.4 <= gaps[2] / gaps[1] <= 3.2, gaps
    await settled(gateway)
    email = (await api.get(f"/emails/{sent['id']}", token=token)).json["email"]
    assert (email["status"], email["attempts"]) == ("failed", 4) and "451" in email["last_error"]
    assert len(busy_relay.attempts) == 4  # no attempt past delivery_attempts


@pytest.mark.gen_test(timeout=30)
async def test_restart_resumes_a_send_a_dead_process_had_claimed(start_gateway: Any, relay: RelayPeer) -> None:
    gateway = await start_gateway(relay=relay.url)
    alice, _ = await api_for(gateway).register("alice")
    await gateway.stop()
    # what a process that died mid-send leaves: the email claimed just now, nothing delivered yet
    email = {**compose(new_id(), alice, "localhost", Draft(to=["dan@example.org"], subject="unfinished", text="t")),
             "thread": new_id(), "status": "sending", "claimed_at": time.time()}
    await gateway.store.open()
    await gateway.store.insert("emails", email)
    await gateway.store.close()

    restarted: Gateway = await start_gateway(relay=relay.url)
    api = api_for(restarted)
    login = await api.post("/tokens", {"username": "alice", "password": PASSWORD})
    assert login.status == 201, login.body
    token = login.json["token"]["value"]

    seen: list[str] = []  # the statuses the client read

    async def delivered() -> bool:
        reply = await api.get(f"/emails/{email['id']}", token=token)
        seen.append(reply.json["email"]["status"] if reply.status == 200 else f"HTTP {reply.status}")
        return seen[-1] == "delivered"

    try:
        await wait_until(delivered, timeout=5)
    except AssertionError:
        pytest.fail(f"the claimed email was never resumed: still {seen[-1]!r} after 5 s")
    await settled(restarted)
    assert [(sender, rcpts) for sender, rcpts, _ in relay.received] == [("alice@localhost", ["dan@example.org"])]
    assert b"Subject: unfinished" in relay.received[0][2]


@pytest.mark.gen_test(timeout=30)
async def test_identical_bytes_sent_twice_over_smtp_are_filed_once(api: Api, gateway: Gateway) -> None:
    _, token = await api.register("bob")
    message = (b"From: ann@example.org\r\nTo: bob@localhost\r\nSubject: once\r\n"
               b"Message-ID: <once@example.org>\r\n\r\nhello\r\n")

    async def send(data: bytes) -> None:
        refused = await in_thread(smtp_send, gateway.smtp_port, "ann@example.org", ["bob@localhost"], data)
        assert refused == {}

    async def inbox() -> list[dict[str, Any]]:
        reply = await api.get("/emails?label=inbox", token=token)
        assert reply.status == 200, reply.body
        return list(reply.json["emails"])

    await send(message)
    await send(message)  # a sender retrying the same bytes
    filed = await inbox()
    assert len(filed) == 1, f"the same bytes were filed {len(filed)} times"
    assert filed[0]["subject"] == "once" and filed[0]["from"] == "ann@example.org"
    await send(message.replace(b"hello", b"hellp"))  # one byte different: another message
    filed = await inbox()
    assert len(filed) == 2, f"a different message left {len(filed)} copies, not 2"
