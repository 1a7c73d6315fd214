"""Per-account cursors on RethinkDB, as a client sees them: an account's events reported out of
order still arrive in order, and the cursors of the earlier layout read as pruned, never as wrong.

Each test makes a RethinkDB store of its own and skips, saying why, without a RethinkDB.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app.server import Gateway
from gateway.ids import new_id, now_iso
from gateway.store.rethink import RethinkStore, r
from gateway.store.rethink import recording
from gateway.store.rethink.recording import LOG, STAMP
from tests import rethinkdb_server
from tests.conftest import api_for
from tests.peers import mail
from tests.sockjs_clients import connect, next_event, subscribed, without_cursor


def email(owner: str, subject: str) -> dict[str, Any]:
    return {"id": new_id(), "owner": owner, "direction": "in", "status": "received", "subject": subject,
            "thread": new_id(), "labels": ["inbox"], "created": now_iso()}


async def file_email(store: RethinkStore, owner: str, subject: str) -> str:
    """File an inbound email with its raw message first, as SMTP intake does; its id."""
    doc = email(owner, subject)
    await store.insert_with("emails", doc, before=[("messages", {"id": doc["id"], "owner": owner,
                                                                   "raw": f"Subject: {subject}\r\n\r\n"})])
    return str(doc["id"])


def log_of(owner: str) -> Any:
    """The owner's entries in the event log."""
    return r.table(LOG).between([owner, r.minval], [owner, r.maxval])


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("first_stamp", ["never", "right-after"])
async def test_an_event_reported_before_the_one_it_follows_waits_for_it(start_gateway: Any,
                                                                        first_stamp: str) -> None:
    """Two writers log events 1 and 2 of one account; the stamp of 2 reaches the feed first.  The
    client gets 1 then 2, once each, whether the stamp of 1 comes right after (then it is
    waited for) or never (a failure between log and stamp: then 1 is read from the history)."""
    gateway: Gateway = await start_gateway(store=rethinkdb_server.store_url())
    api = api_for(gateway)
    alice, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token)
    try:
        store: Any = gateway.store
        first, second = email(alice["id"], "first"), email(alice["id"], "second")
        # what two concurrent writers leave: both events logged, both emails written, no stamp yet
        await store._run(r.table(LOG).insert([
            {"id": [alice["id"], seq], "kind": "receipt", "doc": doc, "at": 0}
            for seq, doc in ((1, first), (2, second))]))
        await store._run(r.table("emails").insert([first, second]))
        await store._run(r.table("emails").get(second["id"]).update({STAMP: {"seq": 2, "kind": "receipt"}}))
        if first_stamp == "right-after":
            await store._run(r.table("emails").get(first["id"]).update({STAMP: {"seq": 1, "kind": "receipt"}}))
        events = [await next_event(client) for _ in range(2)]
        assert [e["name"] for e in events] == ["first", "second"]
        assert [store.cursor_key(e["cursor"]) for e in events] == [1, 2]
        await mail(gateway.smtp_port, "alice@localhost", "third")  # nothing twice before it
        assert (await next_event(client))["name"] == "third"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_cursor_of_the_earlier_layout_resumes_as_pruned(start_gateway: Any) -> None:
    """A database the earlier layout used (one counter for every event, at 500): a client holding
    one of its cursors resumes with ``recovered: false`` and gets what the log has; a number that
    layout never issued is refused."""
    url = rethinkdb_server.store_url()
    await rethinkdb_server.make_earlier_layout(url.rsplit("/", 1)[1])
    gateway: Gateway = await start_gateway(store=url)
    api = api_for(gateway)
    _, token = await api.register("alice")
    await mail(gateway.smtp_port, "alice@localhost", "since the upgrade")
    client = await connect("websocket", api.base_url)
    try:
        await client.send({"type": "subscribe", "token": token, "since": "420"})
        assert without_cursor(await client.recv()) == {"type": "subscribed", "recovered": False}
        assert (await next_event(client))["name"] == "since the upgrade"
        await client.send({"type": "subscribe", "id": "s", "token": token, "since": "501"})
        assert (await client.recv())["code"] == "invalid_cursor"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("raw", [False, True])
async def test_an_insert_interrupted_after_logging_its_event_is_retried_as_one_event(start_gateway: Any,
                                                                                     raw: bool) -> None:
    """A database node fails between logging an inbound email's event and inserting the email
    (one query is no transaction): the entry is there, the email not, and the sender tries again
    (SMTP 451).  The retry reuses that entry: subscribers get the receipt once, in order.  With
    ``raw`` the attempt had stored the raw message first, as SMTP intake does (the retry looks for
    the entry only because that message is already there)."""
    gateway: Gateway = await start_gateway(store=rethinkdb_server.store_url())
    api = api_for(gateway)
    alice, token = await api.register("alice")
    client = await subscribed("websocket", api.base_url, token)
    try:
        store: Any = gateway.store
        await mail(gateway.smtp_port, "alice@localhost", "before")
        before = await next_event(client)
        retried = email(alice["id"], "retried")
        # what the interrupted attempt left: the next entry of alice's log, naming the email
        await store._run(r.table(LOG).insert({"id": [alice["id"], 2], "kind": "receipt", "doc": retried,
                                              "email": retried["id"], "at": 0}))
        if raw:
            message = {"id": retried["id"], "owner": alice["id"], "raw": "Subject: retried\r\n\r\n"}
            await store.insert("messages", message)
            await store.insert_with("emails", retried, before=[("messages", message)])  # the retry
        else:
            await store.insert("emails", retried)  # the retry
        await mail(gateway.smtp_port, "alice@localhost", "after")
        events = [await next_event(client) for _ in range(2)]
        assert [e["name"] for e in events] == ["retried", "after"]
        assert [store.cursor_key(e["cursor"]) for e in [before, *events]] == [1, 2, 3]
        stored = await store.get("emails", retried["id"])
        assert stored is not None and STAMP not in stored  # (the stamp is the backend's own)
        entries = await store._run(log_of(alice["id"]).count())
        assert entries == 3
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=30)
async def test_two_processes_filing_one_accounts_mail_at_once_log_each_email_once() -> None:
    """Two processes (two stores on one database) file inbound emails of one account at once,
    each with its raw message first, as SMTP intake does: their takes of the account's next seq
    collide and are tried again.  Every email is logged once, numbered 1 to n with no gap."""
    url = rethinkdb_server.store_url()
    stores = [RethinkStore.from_url(url), RethinkStore.from_url(url)]
    for store in stores:
        await store.open()
    try:
        written = [await file_email(store, "alice", f"first {n}") for n, store in enumerate(stores)]
        written += await asyncio.gather(*(file_email(stores[i % 2], "alice", f"m{i}") for i in range(30)))
        history = (await stores[0].event_history("alice", None, 100)).changes
        assert [stores[0].cursor_key(c.cursor) for c in history] == list(range(1, 33))
        assert sorted(c.new["id"] for c in history) == sorted(written)
        entries = await stores[0]._run(log_of("alice").count())
        assert entries == 32  # no entry left over by a collision
    finally:
        for store in stores:
            await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_a_seq_freed_by_pruning_is_never_taken_again() -> None:
    """One process files an account's first email; another files the next ones, and the log is
    pruned to a few entries meanwhile, freeing the early seqs.  When the first process files again,
    its email is numbered after the newest, not in a freed seq below events already reported (a
    subscriber holding the newest cursor would skip it as seen)."""
    url = rethinkdb_server.store_url()
    first, second = RethinkStore.from_url(url, history_limit=3), RethinkStore.from_url(url, history_limit=3)
    for store in (first, second):
        await store.open()
    try:
        await file_email(first, "alice", "one")
        for n in range(2, 12):
            await file_email(second, "alice", f"n{n}")
        kept = await first._run(log_of("alice").map(lambda e: e["id"].nth(1)).coerce_to("array"))
        assert 2 not in kept and max(kept) == 11  # pruned: seq 2 is free again
        await file_email(first, "alice", "again")
        history = (await first.event_history("alice", None, 100)).changes
        assert [(first.cursor_key(c.cursor), c.new["subject"]) for c in history][-1] == (12, "again")
    finally:
        for store in (first, second):
            await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_an_email_id_taken_meanwhile_voids_the_entry_unless_the_email_carries_it() -> None:
    """The end of an inbound email's query, after its entry is logged: the email's insert is refused
    (its id was taken meanwhile).  When the email that took it is stamped with that very entry (another
    attempt at it, the careful query, found the entry as an interrupted attempt's and got there first),
    the entry is that email's event and stays; otherwise it is voided (no event, no gap)."""
    url = rethinkdb_server.store_url()
    store = RethinkStore.from_url(url)
    await store.open()
    try:
        shared, other = email("alice", "shared"), email("alice", "other")
        for seq, doc in enumerate((shared, other), 1):
            await store._run(r.table(LOG).insert({"id": ["alice", seq], "kind": "receipt", "doc": doc,
                                                  "email": doc["id"], "at": 0}))
        await store._run(r.table("emails").insert({**shared, STAMP: {"seq": 1, "kind": "receipt"}}))
        await store._run(r.table("emails").insert(other))  # taken by a write of no event
        for seq, doc in enumerate((shared, other), 1):
            reply = await store._run(recording._stamped(r.expr(doc), r.expr({"owner": "alice", "kind": "receipt"}),
                                                        seq, r.expr([])))
            assert reply["state"] == "done" and reply["result"]["errors"] == 1
        kinds = await store._run(log_of("alice").order_by(index="id").map(lambda e: e["kind"]).coerce_to("array"))
        assert kinds == ["receipt", None]
        history = await store.event_history("alice", None, 10)
        assert [c.new["id"] for c in history.changes] == [shared["id"]] and history.complete
    finally:
        await store.close()
