"""The event record is written atomically with the email that makes it (scenario 8), on each backend
in the form it allows: if recording the event fails, the email write fails too and leaves nothing."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from gateway.store import Store, StoreError
from tests.stores import make_store


def inbound(id: str) -> dict[str, Any]:
    return {"id": id, "owner": "a", "direction": "in", "subject": f"subject {id}", "labels": ["inbox"]}


@pytest.mark.gen_test(timeout=30)
async def test_sqlite_an_event_that_cannot_be_logged_fails_its_email_write(tmp_path: Any) -> None:
    store: Store = make_store("sqlite", tmp_path)
    await store.open()
    try:
        await store.insert("emails", {"id": "out1", "owner": "a", "direction": "out", "status": "sending"})
        # a trigger that aborts every event record, on a connection of its own
        other = sqlite3.connect(f"{tmp_path}/contract.db")
        other.execute("CREATE TRIGGER refuse BEFORE INSERT ON changelog BEGIN SELECT RAISE(ABORT, 'refused'); END")
        other.close()
        with pytest.raises(StoreError):
            await store.insert("emails", inbound("r1"))  # a receipt
        assert await store.get("emails", "r1") is None
        with pytest.raises(StoreError):
            await store.update("emails", "out1", {"status": "delivered"})  # a delivery
        assert (await store.get("emails", "out1") or {})["status"] == "sending"
        assert (await store.event_history("a", None, 10)).changes == []
        await store.update("emails", "out1", {"read": True})  # no event: nothing to refuse
        # an email stored with its message and thread is one transaction: a refused event undoes all three
        with pytest.raises(StoreError):
            await store.insert_with("emails", inbound("r2"), ("threads", {"id": "t2", "owner": "a"}),
                                    before=[("messages", {"id": "r2", "raw": "x"})])
        assert [await store.get(t, i) for t, i in (("messages", "r2"), ("emails", "r2"), ("threads", "t2"))] \
            == [None, None, None]
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_sqlite_a_write_never_joins_an_open_transaction(tmp_path: Any) -> None:
    """SQL runs inline on the loop, each write one transaction with no await inside; a transaction
    found open (a write that awaited in the middle of its own) is refused, not joined."""
    store: Any = make_store("sqlite", tmp_path)
    await store.open()
    try:
        store._db.execute("BEGIN IMMEDIATE")
        with pytest.raises(RuntimeError, match="open already"):
            await store.insert_with("emails", inbound("r1"))
        store._db.execute("ROLLBACK")
        await store.insert_with("emails", inbound("r1"))
        assert (await store.get("emails", "r1") or {}).get("subject") == "subject r1"
    finally:
        await store.close()


@pytest.mark.gen_test(timeout=30)
async def test_rethinkdb_an_event_that_cannot_be_logged_fails_its_email_insert(tmp_path: Any) -> None:
    """RethinkDB has no transaction across documents; an inbound email is inserted after its event
    is logged, in the same query, so a refused log leaves no email.  (A delivery stamps the email
    after its update: docs/architecture.md says what a server failure in between leaves.)"""
    from gateway.store.rethink import r
    from gateway.store.rethink.recording import LOG

    store: Any = make_store("rethinkdb", tmp_path)  # skips, saying why, without a RethinkDB
    await store.open()
    try:
        await store._run(r.table_drop(LOG))  # every event log entry is refused now
        with pytest.raises(StoreError):
            await store.insert("emails", inbound("r1"))
        assert await store.get("emails", "r1") is None
    finally:
        await store.close()
