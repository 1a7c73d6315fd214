"""The store contract: every backend behaves the same through the Store interface."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.store import Change, Conflict, Contains, In, Query, Store, Substring
from tests import rethinkdb_server
from tests.stores import BACKENDS, make_store


@pytest.fixture(params=BACKENDS)
def store(request: Any, io_loop: Any, tmp_path: Any) -> Any:
    backend = make_store(request.param, tmp_path, prepared=True)  # its making: tests on store_url()
    io_loop.run_sync(backend.open)
    yield backend
    io_loop.run_sync(backend.close)


def doc(id: str, **fields: Any) -> dict:
    return {"id": id, "owner": "a", **fields}


@pytest.mark.gen_test
async def test_insert_get_and_conflict(store: Store) -> None:
    stored = await store.insert("contacts", doc("c1", name="Ann", tags=["x"], extra={"k": 1}, gone=None))
    assert stored == doc("c1", name="Ann", tags=["x"], extra={"k": 1}, gone=None)
    assert await store.get("contacts", "c1") == stored
    assert await store.get("contacts", "missing") is None
    with pytest.raises(Conflict):
        await store.insert("contacts", doc("c1", name="Other"))
    assert (await store.get("contacts", "c1"))["name"] == "Ann"


@pytest.mark.gen_test
@pytest.mark.parametrize("table, fields", [("contacts", {}), ("emails", {"direction": "in"})], ids=["plain", "event"])
async def test_insert_with_goes_in_turn(store: Store, table: str, fields: dict) -> None:
    """``before`` first (taken ones left as they are), then the document, then the others, each on
    its own; a taken document stops the others, and says so as a plain insert would."""
    await store.insert("labels", doc("l2", name="kept"))
    taken = await store.insert_with(table, doc("d1", **fields), ("threads", doc("t1")), ("labels", doc("l2")),
                                    before=[("labels", doc("l1")), ("labels", doc("l2", name="again"))])
    assert taken == ["labels"]
    assert await store.get(table, "d1") == doc("d1", **fields)
    assert await store.get("threads", "t1") == doc("t1")
    assert await store.get("labels", "l1") == doc("l1")
    assert await store.get("labels", "l2") == doc("l2", name="kept")
    with pytest.raises(Conflict):
        await store.insert_with(table, doc("d1", **fields, subject="again"), ("threads", doc("t2")),
                                before=[("labels", doc("l3"))])
    assert await store.get("threads", "t2") is None
    assert await store.get("labels", "l3") == doc("l3")
    assert (await store.get(table, "d1") or {}).get("subject") is None


@pytest.mark.gen_test
async def test_update_merges_top_level_fields(store: Store) -> None:
    await store.insert("contacts", doc("c1", name="Ann", notes="n"))
    updated = await store.update("contacts", "c1", {"name": "Bea", "email": "b@x"})
    assert updated == doc("c1", name="Bea", notes="n", email="b@x")
    assert await store.get("contacts", "c1") == updated
    assert await store.update("contacts", "missing", {"name": "x"}) is None


@pytest.mark.gen_test
async def test_delete_returns_the_removed_document(store: Store) -> None:
    await store.insert("contacts", doc("c1", name="Ann"))
    assert await store.delete("contacts", "c1") == doc("c1", name="Ann")
    assert await store.delete("contacts", "c1") is None
    assert await store.get("contacts", "c1") is None


@pytest.mark.gen_test
async def test_find_filters_sorts_and_pages(store: Store) -> None:
    for i, (owner, name, labels, read) in enumerate([
        ("a", "d", ["inbox"], False), ("a", "b", ["inbox", "x"], True), ("b", "a", ["inbox"], False),
        ("a", "c", [], False), ("a", "a", ["x"], True),
    ]):
        await store.insert("emails", {"id": f"e{i}", "owner": owner, "subject": name, "labels": labels,
                                      "read": read, "thread": None if i == 3 else "t"})
    ids = lambda docs: [d["id"] for d in docs]  # noqa: E731
    assert ids(await store.find("emails", Query({"owner": "a"}, [("subject", False)]))) == ["e4", "e1", "e3", "e0"]
    assert ids(await store.find("emails", Query({"owner": "a"}, [("subject", True)]))) == ["e0", "e3", "e1", "e4"]
    assert ids(await store.find("emails", Query({"owner": "a"}, [("subject", False)], limit=2, offset=1))) == ["e1", "e3"]
    assert ids(await store.find("emails", Query({"owner": "a"}, [("subject", False)], offset=3))) == ["e0"]
    assert ids(await store.find("emails", Query({"labels": Contains("x")}))) == ["e1", "e4"]
    assert ids(await store.find("emails", Query({"owner": "a", "read": False}))) == ["e0", "e3"]
    assert ids(await store.find("emails", Query({"subject": In(["a", "d"])}))) == ["e0", "e2", "e4"]
    assert ids(await store.find("emails", Query({"subject": In([])}))) == []
    assert ids(await store.find("emails", Query({"thread": None}))) == ["e3"]
    assert await store.count("emails") == 5
    assert await store.count("emails", {"owner": "a", "labels": Contains("inbox")}) == 2


@pytest.mark.gen_test
async def test_ties_are_broken_by_id(store: Store) -> None:
    for id in ["b", "c", "a"]:
        await store.insert("contacts", doc(id, name="same"))
    assert [d["id"] for d in await store.find("contacts", Query({}, [("name", False)]))] == ["a", "b", "c"]


@pytest.mark.gen_test
async def test_substring_matches_literally(store: Store) -> None:
    texts = {"a": "grüße. (x) [y]", "b": "a.*b \\ ^$ 100%", "c": "", "d": None, "e": 5}
    for id, text in texts.items():
        await store.insert("contacts", doc(id, notes=text))
    async def found(value: str) -> list[str]:
        return [d["id"] for d in await store.find("contacts", Query({"notes": Substring(value)}, [("id", False)]))]
    assert await found("üße. (") == ["a"]
    assert await found(".*") == ["b"] and await found("\\ ^$ 100%") == ["b"] and await found("[y]") == ["a"]
    assert await found("GRÜSSE") == [] and await found("zz") == []  # exactly as given: callers fold case
    assert await found("") == ["a", "b", "c"]  # every string, no other value
    assert await store.count("contacts", {"notes": Substring("1")}) == 1


@pytest.mark.gen_test
async def test_bad_field_names_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.find("contacts", Query({"name') OR 1=1 --": 1}))
    with pytest.raises(ValueError):
        await store.find("contacts", Query({}, [("x;drop", False)]))


@pytest.mark.gen_test
async def test_delete_where(store: Store) -> None:
    for i in range(4):
        await store.insert("contacts", {"id": f"c{i}", "owner": "a" if i % 2 else "b"})
    assert await store.delete_where("contacts", {"owner": "a"}) == 2
    assert [d["id"] for d in await store.find("contacts", Query())] == ["c0", "c2"]


async def next_change(feed: Any) -> Change:
    return await asyncio.wait_for(feed.__anext__(), 10)


@pytest.mark.gen_test
async def test_changefeed_reports_old_and_new_in_order(store: Store) -> None:
    feed = await store.changes("emails")
    other = await store.changes("emails")
    await store.insert("emails", doc("e1", subject="s"))
    await store.update("emails", "e1", {"read": True})
    await store.insert("contacts", doc("c1"))  # another table: not on this feed
    await store.delete("emails", "e1")
    await store.insert("emails", doc("e2"))
    await store.delete_where("emails", {"owner": "a"})
    changes = [await next_change(feed) for _ in range(5)]
    assert [(c.old, c.new) for c in changes] == [
        (None, doc("e1", subject="s")),
        (doc("e1", subject="s"), doc("e1", subject="s", read=True)),
        (doc("e1", subject="s", read=True), None),
        (None, doc("e2")),
        (doc("e2"), None),
    ]
    assert (await next_change(other)).new == doc("e1", subject="s")
    await feed.aclose()
    await other.aclose()


@pytest.mark.gen_test
async def test_changefeed_ends_when_the_store_closes(store: Store) -> None:
    feed = await store.changes("emails")
    waiter = asyncio.ensure_future(feed.__anext__())
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 10)
    await store.open()  # the fixture closes it again


@pytest.mark.gen_test
async def test_conditional_update_is_a_claim(store: Store) -> None:
    await store.insert("emails", doc("e1", status="queued"))
    claims = await asyncio.gather(*(store.update("emails", "e1", {"status": "sending", "by": i}, only_if={"status": "queued"})
                                    for i in range(5)))
    assert [c is not None for c in claims].count(True) == 1
    assert (await store.get("emails", "e1"))["status"] == "sending"
    assert await store.update("emails", "missing", {"x": 1}, only_if={"status": "queued"}) is None


@pytest.mark.gen_test
async def test_changefeed_with_where_reports_only_matching_writes(store: Store) -> None:
    feed = await store.changes("emails", {"direction": "out", "status": "queued"})
    await store.insert("emails", doc("e1", direction="out", status="draft"))
    await store.insert("emails", doc("e2", direction="in", status="queued"))
    await store.update("emails", "e1", {"status": "queued"})
    await store.delete("emails", "e1")  # a delete has no new document to match
    await store.insert("emails", doc("e3", direction="out", status="queued"))
    changes = [await next_change(feed) for _ in range(2)]
    assert [(c.old, c.new) for c in changes] == [
        (doc("e1", direction="out", status="draft"), doc("e1", direction="out", status="queued")),
        (None, doc("e3", direction="out", status="queued")),
    ]
    await feed.aclose()


def inbound(id: str, owner: str = "a") -> dict:
    return {"id": id, "owner": owner, "direction": "in", "subject": f"subject {id}", "labels": ["inbox"]}


def outbound(id: str, status: str = "queued") -> dict:
    return {"id": id, "owner": "a", "direction": "out", "status": status, "subject": "out", "labels": ["sent"]}


@pytest.mark.gen_test
async def test_events_feed_history_and_cursors(store: Store) -> None:
    before = await store.latest_event_cursor("a")
    assert (await store.event_history("a", before, 10)).changes == []
    events = await store.event_feed()
    writes = await store.changes("emails")
    await store.insert("emails", inbound("r1"))  # receipt for a
    with pytest.raises(Conflict):  # the same email again (a retried SMTP delivery, say): no second receipt
        await store.insert("emails", {**inbound("r1"), "subject": "again"})
    await store.insert("emails", outbound("o1"))  # no event: queued
    await store.update("emails", "o1", {"status": "sending"}, only_if={"status": "queued"})
    await store.update("emails", "o1", {"status": "delivered"})  # delivery for a
    await store.update("emails", "r1", {"read": True})
    await store.insert("emails", inbound("r2", owner="b"))  # receipt for b
    await store.update("emails", "o1", {"read": True})  # delivered already: no event
    await store.delete("emails", "r1")
    live = [await next_change(events) for _ in range(3)]
    assert [(c.kind, c.owner, c.new) for c in live] == [
        ("receipt", "a", inbound("r1")),
        ("delivery", "a", {**outbound("o1"), "status": "delivered"}),
        ("receipt", "b", inbound("r2", owner="b")),
    ]
    keys = [store.cursor_key(c.cursor) for c in live[:2]]
    assert keys == sorted(keys) and len(set(keys)) == 2 and keys[0] > store.cursor_key(before)
    # every write, once, as the caller wrote it: the backend's own bookkeeping never shows
    plain = [await next_change(writes) for _ in range(8)]
    assert [c.new["id"] if c.new else c.old["id"] for c in plain] == ["r1", "o1", "o1", "o1", "r1", "r2", "o1", "r1"]
    assert plain[-1].old == {**inbound("r1"), "read": True}
    assert await store.get("emails", "o1") == {**outbound("o1"), "status": "delivered", "read": True}
    assert await store.find("emails", Query({"id": "r2"})) == [inbound("r2", owner="b")]
    # history: the owner's events, in cursor order, with the cursors of the feed
    history = await store.event_history("a", None, 100)
    assert history.complete
    assert [(c.cursor, c.kind, c.new) for c in history.changes] == [(c.cursor, c.kind, c.new) for c in live[:2]]
    assert [c.cursor for c in (await store.event_history("a", live[0].cursor, 100)).changes] == [live[1].cursor]
    assert [c.cursor for c in (await store.event_history("b", None, 1)).changes] == [live[2].cursor]
    assert (await store.event_history("a", live[1].cursor, 100)).changes == []
    assert [c.cursor for c in (await store.event_history("a", before, 100)).changes] == [c.cursor for c in live[:2]]
    # the newest cursor: of the owner's newest event, or one no earlier (one sequence may count everyone's)
    assert store.cursor_key(await store.latest_event_cursor("a")) >= store.cursor_key(live[1].cursor)
    assert await store.latest_event_cursor("b") == live[2].cursor
    with pytest.raises(ValueError):
        await store.event_history("a", "not a cursor", 10)
    await events.aclose()
    await writes.aclose()


@pytest.mark.gen_test
async def test_concurrent_events_arrive_in_cursor_order(store: Store) -> None:
    """Concurrent writers of one account's events (and another's, in between): each event comes
    once, with the cursor its history has; in cursor order, or (a store whose cursors are
    consecutive) numbered 1 to n with no gap, in whatever order the feed reports them (the
    dispatcher puts those in order: tests/test_rethinkdb_events.py)."""
    events = await store.event_feed()
    await asyncio.gather(*(store.insert("emails", inbound(f"r{i:02}", owner="ab"[i % 3 == 0])) for i in range(30)))
    live = [await next_change(events) for _ in range(30)]
    for owner in "ab":
        mine = [c for c in live if c.owner == owner]
        keys = [store.cursor_key(c.cursor) for c in mine]
        history = (await store.event_history(owner, None, 100)).changes
        assert sorted(keys) == [store.cursor_key(c.cursor) for c in history] and len(set(keys)) == len(mine)
        if not store.consecutive:
            assert keys == sorted(keys)
        else:
            assert sorted(keys) == list(range(1, len(mine) + 1))
    assert sorted(c.new["id"] for c in live) == [f"r{i:02}" for i in range(30)]
    await events.aclose()


@pytest.mark.gen_test
@pytest.mark.parametrize("backend", BACKENDS)
async def test_event_history_says_when_it_was_pruned(backend: str, tmp_path: Any) -> None:
    store = make_store(backend, tmp_path, history_limit=5)
    await store.open()
    try:
        feed = await store.event_feed()
        for i in range(20):
            await store.insert("emails", inbound(f"e{i:02}"))
            await store.insert("emails", outbound(f"o{i:02}"))  # not an event: not kept
        cursors = [(await next_change(feed)).cursor for _ in range(20)]
        assert not (await store.event_history("a", cursors[0], 100)).complete
        recent = await store.event_history("a", cursors[-3], 100)
        assert recent.complete and [c.new["id"] for c in recent.changes] == ["e18", "e19"]
        await feed.aclose()
    finally:
        await store.close()


@pytest.mark.gen_test
async def test_ping(store: Store) -> None:
    assert await store.ping() is True


@pytest.mark.gen_test
async def test_rethinkdb_cursors_of_the_earlier_layout_read_as_pruned(tmp_path: Any) -> None:
    """A database of the earlier layout (one counter for every event, at 500 here): its cursors,
    up to 500, read as pruned (a resume says recovered: false and replays what the log has), never
    as a position in an account's events; a larger number was never issued, and is refused."""
    store = make_store("rethinkdb", tmp_path)
    # what the earlier version left: the counter of every event, and an email it stamped
    await rethinkdb_server.make_earlier_layout(store.db, stamped=inbound("r0"))  # type: ignore[attr-defined]
    await store.open()
    try:
        assert await store.get("emails", "r0") == inbound("r0")  # the earlier stamp never shows
        assert store.cursor_key("420") == store.cursor_key("0") == store.cursor_key(await store.latest_event_cursor("a"))
        for old in ("420", "500"):
            assert not (await store.event_history("a", old, 10)).complete
        with pytest.raises(ValueError):
            store.cursor_key("501")
        await store.insert("emails", inbound("r1"))
        replay = await store.event_history("a", "420", 10)
        assert not replay.complete and [c.new["id"] for c in replay.changes] == ["r1"]
        assert store.cursor_key(replay.changes[0].cursor) > store.cursor_key("420")
        assert (await store.event_history("a", "0", 10)).complete  # "0": from the first event, which is kept
    finally:
        await store.close()


@pytest.mark.gen_test
async def test_rethinkdb_cursors_are_per_account(tmp_path: Any) -> None:
    """Each account's events count from 1, apart from everyone else's; another account's cursor is refused."""
    store = make_store("rethinkdb", tmp_path)
    await store.open()
    try:
        for i in range(3):
            await store.insert("emails", inbound(f"a{i}"))
        await store.insert("emails", inbound("b0", owner="b"))
        a, b = await store.latest_event_cursor("a"), await store.latest_event_cursor("b")
        assert (store.cursor_key(a), store.cursor_key(b)) == (3, 1)
        with pytest.raises(ValueError):
            await store.event_history("a", b, 10)
        with pytest.raises(ValueError):
            store.cursor_key(b, "a")
        assert store.cursor_key(b, "b") == 1
    finally:
        await store.close()


@pytest.mark.gen_test
async def test_pages_of_an_accounts_emails_in_created_order(store: Store) -> None:
    """Pages of one account's emails by ``created``, either way, with ties (broken by ascending id),
    missing and null values (first), numbers and a filter: every page is the same slice of the whole
    order on every backend (RethinkDB reads these pages from an index, not by sorting every email)."""
    created = {"e0": "2026-01-02", "e1": "2026-01-01", "e2": "2026-01-02", "e3": "missing", "e4": "2026-01-03",
               "e5": "2026-01-02", "e6": 7, "e7": "2026-01-01", "e8": True, "e9": None}
    for id, value in created.items():
        email: dict[str, Any] = {"id": id, "owner": "a", "labels": ["x"] if id in ("e0", "e2", "e4", "e6") else []}
        if value != "missing":
            email["created"] = value
        await store.insert("emails", email)
    await store.insert("emails", {"id": "b0", "owner": "b", "created": "2026-01-02", "labels": ["x"]})
    # missing and null first (ties), then true (1) and 7, then strings
    ascending = ["e3", "e9", "e8", "e6", "e1", "e7", "e0", "e2", "e5", "e4"]
    descending = ["e4", "e0", "e2", "e5", "e1", "e7", "e6", "e8", "e3", "e9"]  # ties by ascending id either way
    ids = lambda docs: [d["id"] for d in docs]  # noqa: E731
    for desc, whole in ((False, ascending), (True, descending)):
        for offset in range(len(whole) + 1):
            for limit in (1, 2, 3, 20):
                page = await store.find("emails", Query({"owner": "a"}, [("created", desc)], limit=limit, offset=offset))
                assert ids(page) == whole[offset:offset + limit], (desc, offset, limit)
        labelled = [i for i in whole if i in ("e0", "e2", "e4", "e6")]
        for offset in range(len(labelled) + 1):
            page = await store.find("emails", Query({"owner": "a", "labels": Contains("x")}, [("created", desc)],
                                                    limit=2, offset=offset))
            assert ids(page) == labelled[offset:offset + 2], (desc, offset)
