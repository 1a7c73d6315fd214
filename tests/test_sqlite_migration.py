"""A database written by an older version opens, and keeps its event history."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from gateway import jsontext
from gateway.mail.delivery import QUEUED
from gateway.store import Query, public
from gateway.store.sqlite import SQLiteStore
from gateway.store.sqlite_schema import MIGRATIONS


def older_database(path: str, version: int) -> sqlite3.Connection:
    """A database at schema ``version``, as that version made it (its connection, open)."""
    db = sqlite3.connect(path, isolation_level=None)
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    return db


@pytest.mark.gen_test
async def test_a_version_2_changelog_becomes_the_event_history(tmp_path: Any) -> None:
    path = str(tmp_path / "old.db")
    db = older_database(path, 2)
    inbound = {"id": "r1", "owner": "a", "direction": "in", "subject": "hi"}
    queued = {"id": "o1", "owner": "a", "direction": "out", "status": "queued"}
    delivered = {**queued, "status": "delivered"}
    rows = [  # version 2 logged every email change; seq 1 and 2 were pruned already
        (3, None, inbound), (4, None, queued), (5, queued, delivered), (6, delivered, {**delivered, "read": True}),
        (7, inbound, None),
    ]
    for seq, old, new in rows:
        db.execute("INSERT INTO changelog (seq, tbl, owner, old, new) VALUES (?, 'emails', 'a', ?, ?)",
                   (seq, json.dumps(old) if old else None, json.dumps(new) if new else None))
    db.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        history = await store.event_history("a", None, 10)
        assert [(c.cursor, c.kind, c.new) for c in history.changes] == [("3", "receipt", inbound),
                                                                          ("5", "delivery", delivered)]
        assert not (await store.event_history("a", "1", 10)).complete  # seq 2 was pruned
        assert (await store.event_history("a", "2", 10)).complete
        assert await store.latest_event_cursor("a") == "5"
        await store.insert("emails", {"id": "r2", "owner": "a", "direction": "in"})
        assert await store.latest_event_cursor("a") == "8"  # seqs go on from the old ones
    finally:
        await store.close()


def inbound(n: int) -> dict[str, Any]:
    return {"id": f"r{n}", "owner": "a", "direction": "in", "subject": f"hi {n}"}


@pytest.mark.gen_test
async def test_a_seq_is_never_given_again_once_pruning_emptied_the_log(tmp_path: Any) -> None:
    """The log's seq is SQLite's rowid, without AUTOINCREMENT (whose counter was one more page written
    by every event): pruning that empties the table must not start the seqs again at 1, in the same
    process or after a restart, since clients hold cursors of the pruned events."""
    path = str(tmp_path / "g.db")
    store = SQLiteStore(path, history_limit=0)  # every event is pruned as the next is logged
    await store.open()
    try:
        for n in range(1, 4):
            await store.insert("emails", inbound(n))
        assert (await store.event_history("a", None, 10)).changes == []
        await store.insert("emails", inbound(4))
        assert await store.latest_event_cursor("a") == "0"  # (the table is empty)
        assert not (await store.event_history("a", "2", 10)).complete  # seq 3 was pruned: known, not reused
    finally:
        await store.close()
    store = SQLiteStore(path, history_limit=0)
    await store.open()
    try:
        await store.insert("emails", inbound(5))
        feed = await store.event_feed()
        await store.insert("emails", inbound(6))
        assert (await feed.__anext__()).cursor == "6"
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'changelog'").fetchone()
        counters = db.execute("SELECT count(*) FROM sqlite_sequence").fetchone()[0]
    finally:
        db.close()
    assert "AUTOINCREMENT" not in sql and counters == 0  # no counter row written by each event


@pytest.mark.gen_test
async def test_a_version_7_log_keeps_its_counter(tmp_path: Any) -> None:
    """A log made with AUTOINCREMENT whose newest rows are gone (migration 3 deleted the writes that were
    no events) is rebuilt without it, its rows and history kept, and seqs go on after the highest its
    counter gave, not after the highest left."""
    path = str(tmp_path / "old.db")
    db = older_database(path, 7)
    for n in range(1, 6):
        db.execute("INSERT INTO changelog (tbl, owner, old, new, kind) VALUES ('emails', 'a', NULL, ?, 'receipt')",
                   (json.dumps(inbound(n)),))
    db.execute("DELETE FROM changelog WHERE seq > 3")
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        history = await store.event_history("a", None, 10)
        assert [(c.cursor, c.new) for c in history.changes] == [(str(n), inbound(n)) for n in (1, 2, 3)]
        assert await store.latest_event_cursor("a") == "3"
        await store.insert("emails", inbound(6))
        assert await store.latest_event_cursor("a") == "6"
        assert [c.cursor for c in (await store.event_history("a", "2", 10)).changes] == ["3", "6"]
    finally:
        await store.close()


@pytest.mark.gen_test
async def test_an_older_database_gets_the_index_an_email_list_is_read_by(tmp_path: Any) -> None:
    """A database made before the (owner, created desc, id) and (owner, thread, created) indexes opens with
    them: the email list's query (an account's emails, newest first and ties by id, one page) reads its
    page from the first without sorting anything, and a thread's emails are read from the second (not the
    whole mailbox from the first); the owner-only and (owner, thread) indexes, which they begin, and the
    (owner, created) index, which the first replaces, are dropped."""
    path = str(tmp_path / "old.db")
    db = older_database(path, len(MIGRATIONS))
    db.execute("CREATE INDEX emails_owner ON emails (json_extract(doc, '$.owner'))")
    db.execute("CREATE INDEX emails_owner_thread ON emails (json_extract(doc, '$.owner'), json_extract(doc, '$.thread'))")
    db.execute("CREATE INDEX emails_owner_created ON emails (json_extract(doc, '$.owner'), json_extract(doc, '$.created'))")
    old = {"id": "e1", "owner": "a", "created": "2026", "subject": "caf\u00e9 \U0001f600"}
    db.execute("INSERT INTO emails (id, doc) VALUES ('e1', ?)", (json.dumps(old),))  # as written then: \\u escapes
    db.close()

    store = SQLiteStore(path)
    await store.open()
    await store.close()
    db = sqlite3.connect(path)
    try:
        plan = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT doc FROM emails WHERE json_extract(doc, '$.owner') = ? "
            "ORDER BY json_extract(doc, '$.created') DESC, id ASC LIMIT 20", ("a",)))
        # a thread's emails, oldest first (mailbox.refresh_thread): from the thread's index, not the mailbox's
        thread_plan = " ".join(row[3] for row in db.execute(
            "EXPLAIN QUERY PLAN SELECT doc FROM emails WHERE json_extract(doc, '$.owner') = ? "
            "AND json_extract(doc, '$.thread') = ? ORDER BY json_extract(doc, '$.created') ASC, id ASC", ("a", "t")))
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'emails'")}
    finally:
        db.close()
    assert "USING INDEX emails_owner_created_id" in plan and "TEMP B-TREE" not in plan
    assert "USING INDEX emails_owner_thread_created" in thread_plan and "TEMP B-TREE FOR ORDER BY" not in thread_plan
    assert not {"emails_owner", "emails_owner_thread", "emails_owner_created"} & indexes
    assert {"emails_owner_thread_created", "emails_owner_message_id", "emails_status_out"} <= indexes
    store = SQLiteStore(path)
    await store.open()
    try:  # the email written before is still found by its owner, and by its subject beside one written now
        assert await store.find("emails", Query({"owner": "a"})) == [old]
        assert await store.count("emails", {"owner": "a"}) == 1
        await store.insert("emails", {**old, "id": "e2"})
        assert [e["id"] for e in await store.find("emails", Query({"subject": old["subject"]}, [("id", False)]))] == [
            "e1", "e2"]
    finally:
        await store.close()


@pytest.mark.gen_test
async def test_the_status_index_keeps_outbound_emails_only_and_serves_the_delivery_queue(tmp_path: Any) -> None:
    """An older database's index of every email's status is replaced by one of outbound emails only
    (what an inbound email stores writes no page of it), and both of the delivery queue's queries
    (waiting and claimed emails) read that one; an inbound email's status is still found, by a scan."""
    path = str(tmp_path / "old.db")
    db = older_database(path, len(MIGRATIONS))
    db.execute("CREATE INDEX emails_status ON emails (json_extract(doc, '$.status'))")
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        inbound = {"id": "i1", "owner": "a", "direction": "in", "status": "received"}
        queued = {"id": "o1", "owner": "a", "direction": "out", "status": "queued"}
        for doc in (inbound, queued):
            await store.insert("emails", doc)
        assert await store.find("emails", Query(QUEUED)) == [queued]
        assert await store.find("emails", Query({"status": "received"})) == [inbound]
    finally:
        await store.close()
    db = sqlite3.connect(path)
    try:
        indexes = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'emails' AND type = 'index'"))
        plans = []
        for where in (QUEUED, {**QUEUED, "status": "sending"}):
            sql, params = SQLiteStore._find_sql("emails", Query(where), "doc")
            plans.append(" ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)))
        in_index = db.execute("SELECT count(*) FROM emails INDEXED BY emails_status_out "
                              "WHERE json_extract(doc, '$.direction') = 'out' AND json_extract(doc, '$.status') IS NOT NULL"
                              ).fetchone()[0]
    finally:
        db.close()
    assert "emails_status" not in indexes
    assert indexes["emails_status_out"].endswith("WHERE json_extract(doc, '$.direction') = 'out'")
    assert all("USING INDEX emails_status_out" in plan for plan in plans), plans
    assert in_index == 1


@pytest.mark.gen_test
async def test_an_older_database_gets_each_emails_listed_view(tmp_path: Any) -> None:
    """A version 5 database (no ``listed`` column) opens with every email's listed view made; a page
    of views is the encoding of the documents ``find`` gives, each without the listed-out fields; a row
    orjson cannot encode keeps none (its page is found instead); a write by a store without ``listed``
    leaves none, made on the next open; views made for other fields are all made again."""
    path = str(tmp_path / "old.db")
    db = older_database(path, 5)
    emails = [{"id": f"e{n}", "owner": "a", "created": f"2026-0{n}", "subject": f"caf\u00e9 {n} \U0001f600",
               "search": "x", "labels": ["inbox"], "read": False} for n in range(1, 5)]
    emails[0]["subject"] = "lone \ud800"  # the oldest: json writes it escaped, orjson refuses it
    for email in emails:
        db.execute("INSERT INTO emails VALUES (?, ?)", (email["id"], json.dumps(email)))
    db.close()
    newest = Query({"owner": "a"}, [("created", True)], limit=3)

    async def views(hidden: tuple[str, ...], query: Query = newest) -> tuple[list[bytes] | None, list[bytes]]:
        store = SQLiteStore(path, listed={"emails": hidden})
        await store.open()
        try:
            found = [jsontext.dumps(public(doc, *hidden)) for doc in await store.find("emails", query)]
            return await store.find_listed("emails", query), found
        finally:
            await store.close()

    listed, found = await views(("search",))
    assert listed == found and b'"search"' not in listed[0] and b'"owner"' not in listed[0]
    assert (await views(("search",), Query({"owner": "a"}, [("created", True)])))[0] is None  # e1 has none
    db = sqlite3.connect(path)
    try:  # an open finds the rows without a view in their own partial index, not by reading every row
        assert [row[0] for row in db.execute("SELECT id FROM emails WHERE listed IS NULL")] == ["e1"]
        for query, params in [("SELECT count(*) FROM emails WHERE listed IS NULL", ()),
                              ("SELECT id, doc FROM emails WHERE listed IS NULL AND id > ? ORDER BY id LIMIT ?",
                               ("", 500))]:
            plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", params))
            assert "USING INDEX emails_unlisted" in plan, plan
    finally:
        db.close()

    plain = SQLiteStore(path)
    await plain.open()
    try:
        await plain.update("emails", "e4", {"read": True})
        assert await plain.find_listed("emails", newest) is None  # keeps no views: the caller finds the page
    finally:
        await plain.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT listed FROM emails WHERE id = 'e4'").fetchone() == (None,)
    finally:
        db.close()
    listed, found = await views(("search",))
    assert listed == found and b'"read":true' in listed[0]
    listed, found = await views(("search", "labels"))  # other fields: every view made again
    assert listed == found and b'"labels"' not in listed[0] and b'"search"' not in listed[0]
