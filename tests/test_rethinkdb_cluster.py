"""Several gateways on one RethinkDB, and the database going away: the tests start real RethinkDB servers."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
from typing import Any

import pytest
from rethinkdb.errors import ReqlInternalError, ReqlOpFailedError, ReqlQueryLogicError

from gateway.ids import new_id, now_iso
from gateway.store import StoreError, StoreUnavailable, store_from_url
from gateway.store.rethink import r
from gateway.store.rethink.pool import translated_errors
from tests import rethinkdb_server
from tests.conftest import Api, api_for, restart, wait_ready, wait_until
from tests.sockjs_clients import Client, connect, next_event, subscribed
from tests.peers import GatewayProcess as Subprocess
from tests.peers import Relay, in_thread, smtp_send
from tests.peers import mail as smtp_mail


async def mail_retrying_451(port: int, to: str, subject: str) -> None:
    """Mail, retrying while the gateway answers 451, as any MTA does (after a database restart the
    tables come back one by one)."""
    async def accepted() -> bool:
        try:
            await smtp_mail(port, to, subject)
            return True
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            assert "451" in str(exc)
            return False
    await wait_until(accepted, timeout=30)


@pytest.mark.gen_test(timeout=120)
async def test_two_gateway_processes_share_users_events_and_the_queue(start_gateway: Any,
                                                                      relay: Relay) -> None:
    url = rethinkdb_server.store_url()
    a = await start_gateway(store=url, relay=relay.url)
    b = Subprocess({"GATEWAY_STORE": url, "GATEWAY_SECRET_FILE": a.config.secret_file, "GATEWAY_RELAY": relay.url})
    await b.start()
    api_a, api_b = api_for(a), Api(b.base)
    client: Client | None = None
    try:
        alice, alice_token = await api_a.register("alice")
        _, bob_token = await api_b.register("bob")  # registered at B, logs in at A: same users
        assert (await api_a.get("/accounts/me", token=bob_token)).json["account"]["username"] == "bob"
        client = await subscribed("websocket", api_a.base_url, alice_token)

        # mail sent through B and mail arriving over SMTP at B: each a receipt at A, exactly once
        sent = await api_b.post("/emails", {"to": ["alice@localhost"], "subject": "via B", "text": "x"}, token=bob_token)
        assert sent.status == 201
        await in_thread(smtp_send, b.smtp_port, "ann@example.org", ["alice@localhost"], "Subject: smtp at B\r\n\r\nx")
        # (in either order: the delivery worker files "via B" whenever it gets to it)
        receipts = [await next_event(client) for _ in range(2)]
        assert sorted(e["name"] for e in receipts) == ["smtp at B", "via B"]
        assert a.store.cursor_key(receipts[0]["cursor"]) < a.store.cursor_key(receipts[1]["cursor"])

        # external mail from A: both processes watch the queue, each email goes out once
        for i in range(10):
            await api_a.post("/emails", {"to": [f"dan{i}@example.org"], "subject": f"out {i}", "text": "x"},
                             token=alice_token)
        deliveries = [await next_event(client) for _ in range(10)]
        assert sorted(e["name"] for e in deliveries) == sorted(f"out {i}" for i in range(10))
        assert all(e["type"] == "delivery" for e in deliveries)
        assert sorted(r[1][0] for r in relay.received) == sorted(f"dan{i}@example.org" for i in range(10))

        # nothing more was queued for this session: the next event is the next mail
        await in_thread(smtp_send, b.smtp_port, "ann@example.org", ["alice@localhost"], "Subject: marker\r\n\r\nx")
        assert (await next_event(client))["name"] == "marker"
        assert client.inbox.empty()
        # a revocation made at B ends the binding at A
        assert (await api_b.delete("/tokens", token=alice_token)).status == 200
        assert await client.wait_for(lambda m: m["type"] == "unsubscribed") == {"type": "unsubscribed",
                                                                                 "reason": "revoked"}
    finally:
        if client is not None:
            await client.close()
        await b.stop()


@pytest.mark.gen_test(timeout=120)
async def test_a_gateway_started_before_its_database_waits_for_it(start_gateway: Any, caplog: Any) -> None:
    server = rethinkdb_server.OwnServer()
    try:
        starting = asyncio.ensure_future(start_gateway(store=server.url, store_wait=60))
        await wait_until(lambda: "the store is not reachable yet" in caplog.text, timeout=30)
        assert not starting.done()
        await asyncio.get_running_loop().run_in_executor(None, server.start)
        gateway = await starting
        health = await api_for(gateway).get("/health")
        assert (health.status, health.json["store"]) == (200, "up")
    finally:
        server.remove()


@pytest.mark.gen_test(timeout=180)
async def test_the_database_going_away_and_coming_back(start_gateway: Any, own_rethinkdb: Any) -> None:
    server = own_rethinkdb
    gateway = await start_gateway(store=server.url)
    api = api_for(gateway)
    _, token = await api.register("bob")
    client = await subscribed("websocket", api.base_url, token)
    mail = lambda name: in_thread(smtp_send, gateway.smtp_port, "x@example.org",  # noqa: E731
                                  ["bob@localhost"], f"Subject: {name}\r\n\r\nbody")
    for i in range(3):
        await mail(f"before {i}")
    assert [(await next_event(client))["name"] for _ in range(3)] == [f"before {i}" for i in range(3)]

    server.kill()
    down = await api.get("/emails", token=token)
    assert (down.status, down.json["code"]) == (503, "store_unavailable")
    health = await api.get("/health")
    assert (health.status, health.json["store"]) == (503, "down")
    ready = await api.get("/health/ready")  # readiness: no traffic to this process while the store is away
    assert (ready.status, ready.json["store"]) == (503, "down")
    with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)) as deferred:
        await mail("while down")
    assert "451" in str(deferred.value)
    # a subscribe the store cannot answer closes that session, for its client to come back later
    late = await connect("websocket", api.base_url)
    await late.send({"type": "subscribe", "token": token})
    await late.closed.wait()
    assert late.close_frame == [4002, "Store unavailable: reconnect and subscribe with since=<last cursor>"]

    await restart(server)
    async def healthy() -> bool:
        return (await api.get("/health")).status == 200
    await wait_until(healthy, timeout=30)
    await wait_ready(api)  # ready again once the feeds are open too
    # mail written while the event feed may still be reconnecting: delivered when it is back.
    # Like any MTA, the sender retries a 451 (tables can come back one by one).
    for i in range(3):
        await mail_retrying_451(gateway.smtp_port, "bob@localhost", f"after {i}")
    events = [await next_event(client) for _ in range(3)]
    assert [e["name"] for e in events] == [f"after {i}" for i in range(3)]
    assert client.close_frame is None  # the session stayed open throughout
    await mail("marker")
    assert (await next_event(client))["name"] == "marker" and client.inbox.empty()  # no duplicates
    await client.close()


@pytest.mark.gen_test(timeout=90)
async def test_a_database_that_stops_answering_gets_503_not_a_hung_request(start_gateway: Any,
                                                                          own_rethinkdb: Any) -> None:
    """The database stops answering without closing anything (as behind a partition with no reset;
    here it is sent SIGSTOP): requests get 503 once the store URL's ``timeout`` passes, readiness
    says the store is down, SMTP says 451; once it answers again, all is served as before and the
    sender's retry is filed once."""
    server = own_rethinkdb
    gateway = await start_gateway(store=f"{server.url}?timeout=1")
    api = api_for(gateway)
    _, token = await api.register("bob")
    client = await subscribed("websocket", api.base_url, token)
    assert server.process is not None
    message = "Subject: while stopped\r\nMessage-ID: <stopped@example.org>\r\n\r\nbody"

    async def accepted() -> bool:  # as an MTA tries again after a 451: the same message
        try:
            await in_thread(smtp_send, gateway.smtp_port, "x@example.org", ["bob@localhost"], message)
            return True
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            assert "451" in str(exc)
            return False

    server.process.send_signal(signal.SIGSTOP)
    pid = server.process.pid

    def stopped() -> bool:  # the kernel stops it a moment after the signal: wait for the state, not a while
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "T"
    try:
        await wait_until(stopped)
        down = await api.get("/emails", token=token)
        assert (down.status, down.json["code"]) == (503, "store_unavailable")
        ready = await api.get("/health/ready")
        assert (ready.status, ready.json["store"]) == (503, "down")
        assert not await accepted()  # 451
    finally:
        server.process.send_signal(signal.SIGCONT)

    await wait_until(accepted, timeout=30)  # (the first attempt's write may have completed late: filed once)
    await smtp_mail(gateway.smtp_port, "bob@localhost", "after")
    assert [(await next_event(client))["name"] for _ in range(2)] == ["while stopped", "after"]
    listed = (await api.get("/emails", token=token)).json["emails"]
    assert sorted(e["subject"] for e in listed) == ["after", "while stopped"]
    await client.close()


@pytest.mark.gen_test(timeout=90)
async def test_catch_up_after_an_outage_starts_at_the_last_cursor_seen(start_gateway: Any,
                                                                          own_rethinkdb: Any) -> None:
    """Three mails, then a session subscribes without since; the database is killed and restarted,
    then "after" is written: the first event the session gets is "after", not a replay of the three."""
    server = own_rethinkdb
    gateway = await start_gateway(store=server.url)
    api = api_for(gateway)
    _, token = await api.register("bob")
    for i in range(3):
        await smtp_mail(gateway.smtp_port, "bob@localhost", f"before {i}")
    client = await subscribed("websocket", api.base_url, token)
    server.kill()
    await restart(server)

    await mail_retrying_451(gateway.smtp_port, "bob@localhost", "after")
    assert (await next_event(client))["name"] == "after"
    await client.close()


@pytest.mark.gen_test(timeout=120)
async def test_concurrent_startup_makes_one_schema() -> None:
    url = rethinkdb_server.store_url()
    stores = [store_from_url(url) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await r.connect(*rethinkdb_server.server_address())
        names = await r.db(url.rsplit("/", 1)[1]).table_list().run(conn)
        await conn.close()
        assert len(names) == len(set(names)), names
        for i, store in enumerate(stores):  # every process can write and read
            await store.insert("contacts", {"id": f"c{i}", "owner": "x"})
        assert await stores[0].count("contacts") == 6
    finally:
        for store in stores:
            await store.close()


@pytest.mark.gen_test(timeout=60)
async def test_a_delivery_claimed_by_a_dead_process_is_taken_over(start_gateway: Any, relay: Relay) -> None:
    url = rethinkdb_server.store_url()
    gateway = await start_gateway(store=url, relay=relay.url, delivery_lease=0.5)
    api = api_for(gateway)
    alice, _ = await api.register("alice")
    # what a process that died mid-delivery leaves: a claim nobody will finish
    email = {"id": new_id(), "owner": alice["id"], "direction": "out", "status": "sending",
             "claimed_at": time.time() - 60, "from": "alice@localhost", "to": ["dan@example.org"], "cc": [],
             "bcc": [], "subject": "orphan", "text": "t", "html": None, "message_id": "<orphan@localhost>",
             "in_reply_to": None, "references": [], "labels": ["sent"], "read": True, "created": now_iso(),
             "thread": new_id()}
    await gateway.store.insert("emails", email)
    # a claim that is still fresh (its process is alive) is left alone
    fresh = {**email, "id": new_id(), "message_id": "<fresh@localhost>", "claimed_at": time.time() + 3600}
    await gateway.store.insert("emails", fresh)

    async def taken_over() -> bool:
        return (await gateway.store.get("emails", email["id"]))["status"] == "delivered"
    await wait_until(taken_over, timeout=30)
    assert [r[1] for r in relay.received] == [["dan@example.org"]]
    assert (await gateway.store.get("emails", fresh["id"]))["status"] == "sending"


@pytest.mark.gen_test(timeout=120)
async def test_a_write_the_cluster_cannot_take_is_unavailable_not_a_failure() -> None:
    """A table whose primary has lost its majority refuses writes: the store says it is unavailable
    for now (the API's 503, SMTP's 451: try again), not that the write itself failed (a 500) — for a
    plain insert and for an inbound email with its raw message, event and thread."""
    cluster = rethinkdb_server.OwnCluster(2)  # skips without rethinkdb
    await in_thread(cluster.start)
    store = store_from_url(cluster.url("gateway", first=0, replicas=2))
    try:
        await store.open()
        await in_thread(cluster.make_primary, "gateway", cluster.nodes[0])
        await store.insert("contacts", {"id": "c0", "owner": "a", "name": "before"})
        await in_thread(cluster.nodes[1].kill)  # node1 keeps every primary, without a majority
        with pytest.raises(StoreUnavailable):
            await store.insert("contacts", {"id": "c1", "owner": "a", "name": "after"})
        email = {"id": "e1", "owner": "a", "direction": "in", "thread": "t1", "created": now_iso()}
        with pytest.raises(StoreUnavailable):
            await store.insert_with("emails", email, ("threads", {"id": "t1", "owner": "a"}),
                                    before=[("messages", {"id": "e1", "owner": "a", "raw": "x"})])
        with pytest.raises(StoreUnavailable):  # and reads: the primary may no longer be up to date
            await store.get("contacts", "c0")
    finally:
        await store.close()
        await in_thread(cluster.remove)


@pytest.mark.parametrize("error, unavailable", [
    # what a gateway got during test_cluster.py's failover, as a 500: an *internal* error by its class
    (ReqlInternalError("Unexpected exception: The attempt to read or modify the table's configuration failed because "
                       "none of the servers were accessible.  If it was an attempt to modify, the modification did "
                       "not take place"), True),
    (ReqlOpFailedError("Cannot perform write: primary replica for shard [\"\", +inf) not available"), True),
    (ReqlQueryLogicError("Expected type STRING but found NUMBER."), False),
])
def test_what_the_cluster_says_when_it_cannot_serve_is_unavailable(error: Exception, unavailable: bool) -> None:
    """The server's errors that mean "not now" are StoreUnavailable (503, SMTP 451: try again), whatever
    their class; the others are failures of the query itself."""
    with pytest.raises(StoreError) as raised:
        with translated_errors():
            raise error
    assert isinstance(raised.value, StoreUnavailable) == unavailable
