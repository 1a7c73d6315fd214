"""The promises about events and tokens, each held by a test that fails when it is broken.

Each is seen as a client sees it on the wire.  Where the order of things on
the server matters (a live event arriving while a replay reads the history),
the test gates the store's history read instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
import tornado.web

from gateway.app.server import Gateway
from gateway.ids import new_id
from gateway.mail.documents import inbound_copy
from tests.conftest import Api, api_for, wait_until
from tests.peers import mail as smtp_mail
from tests.sockjs_clients import TRANSPORTS, Client, connect, next_event, subscribed, without_cursor
from tests.stores import store_option


@pytest.fixture(params=["sqlite", "rethinkdb"])
def each_gateway(request: Any, io_loop: Any, start_gateway: Any) -> Gateway:
    """A running gateway on each store backend (RethinkDB: a database of its own; skips without one)."""
    gateway: Gateway = io_loop.run_sync(lambda: start_gateway(**store_option(request.param)))
    return gateway


async def mail(gateway: Gateway, user: str, subject: str) -> None:
    """Mail ``user`` over SMTP; the 250 comes once the message is stored (and its event recorded)."""
    await smtp_mail(gateway.smtp_port, f"{user}@localhost", subject)


async def events_until(client: Client, last: str) -> list[dict[str, Any]]:
    """Every delivery and receipt the client gets, up to and including the one named ``last``."""
    seen = [await next_event(client)]
    while seen[-1]["name"] != last:
        seen.append(await next_event(client))
    return seen


async def events_of(client: Client, expected: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (type, name) of every event the client gets until it has had each of ``expected``."""
    seen: list[tuple[str, str]] = []
    while not expected <= set(seen):
        event = await next_event(client)
        seen.append((event["type"], event["name"]))
    return seen


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("m4_in_the_page", [False, True], ids=["m4-held-only", "m4-held-and-read"])
async def test_a_live_event_during_a_replay_comes_once_and_in_order(each_gateway: Gateway,
                                                                     m4_in_the_page: bool) -> None:
    """Scenario 1: m1-m3 missed after cursor c; m4 reaches the dispatcher while the replay reads
    the history.  The client gets ``subscribed`` (recovered) first, then m1-m4 once each, then m5.

    ``m4-held-only``: the read finishes before m4 is written, so m4 is only held back (the hold-back
    is what keeps it after m3).  ``m4-held-and-read``: the read starts after m4 is written, so m4 is
    both read and held (the cursor check is what keeps it from coming twice).
    """
    gateway, api = each_gateway, api_for(each_gateway)
    alice, token = await api.register("alice")
    await mail(gateway, "alice", "m0")
    since = await gateway.store.latest_event_cursor(alice["id"])
    for name in ("m1", "m2", "m3"):
        await mail(gateway, "alice", name)

    store = gateway.store
    read = store.event_history
    reading, release = asyncio.Event(), asyncio.Event()

    async def gated_history(owner: str, after: str | None, limit: int) -> Any:
        reading.set()
        if m4_in_the_page:
            await release.wait()
            return await read(owner, after, limit)
        page = await read(owner, after, limit)
        await release.wait()
        return page

    store.event_history = gated_history  # type: ignore[method-assign]
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "since": since})
        await reading.wait()
        await mail(gateway, "alice", "m4")
        m4_cursor = await store.latest_event_cursor(alice["id"])
        await wait_until(lambda: [event.cursor for binding in gateway.registry.bindings(alice["id"])
                                  for _, event in binding.held or []] == [m4_cursor])  # m4 reached the dispatcher
        release.set()
        assert without_cursor(await client.recv()) == {"type": "subscribed", "recovered": True}
        await mail(gateway, "alice", "m5")
        events = await events_until(client, "m5")
        assert [e["name"] for e in events] == ["m1", "m2", "m3", "m4", "m5"]
        cursors = [store.cursor_key(e["cursor"]) for e in events]
        assert cursors == sorted(cursors) and cursors[0] > store.cursor_key(since)
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_session_that_asked_for_deliveries_never_sees_a_receipt(each_gateway: Gateway) -> None:
    """Scenario 2: with ``events: ["delivery"]``, receipts never come, even back to back with deliveries.

    Deliveries are made concurrently, so "self" and "to bob" may be delivered in either order; the
    test waits for the whole set.  A last delivery, sent once every other event has reached the
    unfiltered session, comes after them in the account's order: a receipt wrongly let through
    would reach the filtered session before it.
    """
    gateway, api = each_gateway, api_for(each_gateway)
    _, token = await api.register("alice")
    await api.register("bob")
    deliveries = await subscribed("websocket", api.base_url, token, events=["delivery"])
    everything = await subscribed("websocket", api.base_url, token)
    try:
        # to herself: her delivery and her receipt come back to back; then SMTP in; then one to bob
        assert (await api.post("/emails", {"to": ["alice@localhost"], "subject": "self", "text": "t"},
                               token=token)).status == 201
        await mail(gateway, "alice", "in")
        assert (await api.post("/emails", {"to": ["bob@localhost"], "subject": "to bob", "text": "t"},
                               token=token)).status == 201
        expected = [("delivery", "self"), ("delivery", "to bob"), ("receipt", "in"), ("receipt", "self")]
        assert sorted(await events_of(everything, set(expected))) == expected
        assert (await api.post("/emails", {"to": ["bob@localhost"], "subject": "last", "text": "t"},
                               token=token)).status == 201
        seen = await events_until(deliveries, "last")
        assert sorted((e["type"], e["name"]) for e in seen) == [
            ("delivery", "last"), ("delivery", "self"), ("delivery", "to bob")]
    finally:
        await deliveries.close()
        await everything.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_replay_longer_than_a_page_replays_everything_then_goes_live(each_gateway: Gateway) -> None:
    """Scenario 3: 501 events in history (the replay reads 500 a page); ``since: "0"`` replays all
    501, in order, then the live one."""
    gateway, api = each_gateway, api_for(each_gateway)
    alice, token = await api.register("alice")
    for i in range(501):
        email = inbound_copy({"from": "x@example.org", "to": ["alice@localhost"], "cc": [], "subject": f"h{i}",
                              "text": "t", "message_id": f"<h{i}@example.org>", "thread": new_id()},
                             alice["id"], new_id())
        await gateway.store.insert("emails", email)
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "since": "0"})
        assert without_cursor(await client.recv()) == {"type": "subscribed", "recovered": True}
        replayed = [await next_event(client) for _ in range(501)]
        assert [e["name"] for e in replayed] == [f"h{i}" for i in range(501)]
        await mail(gateway, "alice", "live")
        assert (await next_event(client))["name"] == "live"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_account_record_deleted_alone_ends_its_bindings(api: Api, gateway: Gateway) -> None:
    """Scenario 5: the account record deleted without its tokens (as a crash in the middle of an
    account deletion leaves it): bound sessions hear ``account_deleted``."""
    alice, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token)
    try:
        await gateway.store.delete("accounts", alice["id"])
        assert await client.recv() == {"type": "unsubscribed", "reason": "account_deleted"}
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_token_whose_record_is_another_accounts_is_refused(api: Api, gateway: Gateway) -> None:
    """Scenario 6: a JWT signed with the server's key, ``sub`` alice, ``jti`` one of bob's tokens."""
    alice, _ = await api.register("alice")
    _, bob_token = await api.register("bob")
    bob_jti = jwt.decode(bob_token, options={"verify_signature": False})["jti"]
    now = int(time.time())
    forged = jwt.encode({"sub": alice["id"], "jti": bob_jti, "iat": now, "exp": now + 600},
                        gateway.state.tokens.secret, algorithm="HS256")
    reply = await api.get("/accounts/me", token=forged)
    assert (reply.status, reply.json["code"]) == (401, "invalid_token")
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "id": "s", "token": forged})
        assert await client.recv() == {"type": "error", "error": "Invalid token", "code": "invalid_token", "id": "s"}
    finally:
        await client.close()


class _Hanging(tornado.web.RequestHandler):
    """A handler that answers only when its connection closes (the test sets the events)."""

    started: asyncio.Event
    closed: asyncio.Event

    async def get(self) -> None:
        type(self).started.set()
        await type(self).closed.wait()

    def on_connection_close(self) -> None:
        type(self).closed.set()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("transport", ["websocket", "xhr-polling"])
async def test_closing_a_session_aborts_its_running_requests(start_gateway: Any, transport: str) -> None:
    """Scenario 7: through the real close path, a running tunneled request's handler sees
    ``on_connection_close``, and nothing stays counted as running."""
    gateway = await start_gateway(ws_disconnect_delay=0.2)
    _Hanging.started, _Hanging.closed = asyncio.Event(), asyncio.Event()
    assert gateway.services is not None
    gateway.services.app.add_handlers(r".*", [(r"/test/hang", _Hanging)])
    client = await connect(transport, api_for(gateway).base_url)
    await client.send({"type": "request", "id": "h", "method": "GET", "path": "/test/hang"})
    await _Hanging.started.wait()
    connection = next(iter(gateway.ws.live))
    assert connection.running_requests == 1
    await client.close()
    await asyncio.wait_for(_Hanging.closed.wait(), 10)
    await wait_until(lambda: not gateway.ws.live)
    assert connection.running_requests == 0 and not connection.tasks


@pytest.mark.gen_test(timeout=30)
async def test_a_fresh_subscriber_resumes_from_the_cursor_of_subscribed(each_gateway: Gateway) -> None:
    """``subscribed`` carries the cursor later events come after: mail that arrives while a fresh
    subscriber is away, before its first event, is replayed on its return."""
    gateway, api = each_gateway, api_for(each_gateway)
    _, token = await api.register("alice")
    await mail(gateway, "alice", "old")
    client = await connect("websocket", api.base_url)
    await client.send({"type": "subscribe", "token": token})
    reply = await client.recv()
    await client.close()
    await mail(gateway, "alice", "while away")
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "since": reply["cursor"]})
        back = await client.recv()
        assert (back["type"], back["recovered"]) == ("subscribed", True)
        assert (await next_event(client))["name"] == "while away"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_cursor_ahead_of_the_newest_event_is_invalid(api: Api, gateway: Gateway) -> None:
    alice, token = await api.register("alice")
    await mail(gateway, "alice", "one")
    newest = await gateway.store.latest_event_cursor(alice["id"])
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "id": "s", "token": token, "since": str(int(newest or 0) + 5)})
        assert await client.recv() == {"type": "error", "id": "s", "code": "invalid_cursor",
                                       "error": "Field 'since' is not a cursor this server issued"}
        await client.send({"type": "subscribe", "id": "t", "token": token, "since": newest})
        assert without_cursor(await client.recv()) == {"type": "subscribed", "id": "t", "recovered": True}
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_second_request_with_a_running_id_is_refused(start_gateway: Any) -> None:
    """Two in-flight requests with the same id: the second gets an error, never a second answer."""
    gateway = await start_gateway()
    _Hanging.started, _Hanging.closed = asyncio.Event(), asyncio.Event()
    assert gateway.services is not None
    gateway.services.app.add_handlers(r".*", [(r"/test/hang", _Hanging)])
    client = await connect("websocket", api_for(gateway).base_url)
    try:
        await client.send({"type": "request", "id": "x", "method": "GET", "path": "/test/hang"})
        await _Hanging.started.wait()
        await client.send({"type": "request", "id": "x", "method": "GET", "path": "/"})
        assert await client.recv() == {"type": "error", "id": "x", "code": "duplicate_id",
                                       "error": "A request with this id is still running on this session"}
        _Hanging.closed.set()  # the first one answers now
        assert (await client.recv())["id"] == "x"
        assert (await client.request("GET", "/"))["status"] == 200
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_events_reach_a_session_on_every_transport(api: Api, gateway: Gateway, transport: str) -> None:
    _, token = await api.register("alice")
    client = await subscribed(transport, api.base_url, token)
    try:
        await mail(gateway, "alice", "over " + transport)
        assert (await next_event(client))["name"] == "over " + transport
    finally:
        await client.close()
