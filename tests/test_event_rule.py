"""The one rule of what is an event (events/model.py) and its mirrors in SQL and ReQL agree on every case."""

from __future__ import annotations

import itertools
import json
import sqlite3
from typing import Any

import pytest

from events.model import event_kind
from gateway.store.sqlite_schema import EVENT_KIND_SQL
from tests import rethinkdb_server

#: Every shape of email document the rule can see: none, no fields, each direction and status.
DOCS: list[dict[str, Any] | None] = [None, {}, {"direction": "in"}, {"direction": "in", "status": "received"}] + [
    {"direction": "out", "status": status} for status in (None, "queued", "sending", "delivered", "failed")
] + [{"direction": "out"}, {"status": "delivered"}] + [
    {"direction": "out", "status": status, "attempts": attempts}
    for status in ("queued", "sending", "failed") for attempts in (None, 0, 1, 2)]
CASES = list(itertools.product(DOCS, DOCS))


def test_the_rule_names_receipts_deliveries_deferrals_and_failures() -> None:
    assert event_kind(None, {"direction": "in"}) == "receipt"
    assert event_kind({"direction": "in"}, {"direction": "in", "read": True}) is None
    assert event_kind({"direction": "out", "status": "sending"}, {"direction": "out", "status": "delivered"}) == "delivery"
    assert event_kind({"direction": "out", "status": "delivered"}, {"direction": "out", "status": "delivered"}) is None
    assert event_kind({"direction": "in"}, None) is None
    sending = {"direction": "out", "status": "sending", "attempts": 1}
    assert event_kind(sending, {"direction": "out", "status": "queued", "attempts": 2}) == "deferred"
    assert event_kind(sending, {"direction": "out", "status": "queued", "attempts": 1}) is None  # a released claim
    assert event_kind(sending, {"direction": "out", "status": "failed", "attempts": 2}) == "failed"
    assert event_kind(None, {"direction": "out", "status": "queued"}) is None  # a send is no event


def test_the_sql_mirror_agrees_on_every_case() -> None:
    db = sqlite3.connect(":memory:")
    for old, new in CASES:
        row = db.execute(f"SELECT {EVENT_KIND_SQL} FROM (SELECT ? AS old, ? AS new)",
                         (None if old is None else json.dumps(old), None if new is None else json.dumps(new))).fetchone()
        assert row[0] == event_kind(old, new), (old, new)


@pytest.mark.gen_test(timeout=60)
async def test_the_reql_mirror_agrees_on_every_case() -> None:
    from gateway.store.rethink.pool import r
    from gateway.store.rethink.recording import event_kind_reql

    host, port = rethinkdb_server.server_address()  # skips, saying why, without a RethinkDB
    conn = await r.connect(host=host, port=port)
    try:
        kinds = await r.expr([{"old": old, "new": new} for old, new in CASES]).map(
            lambda case: event_kind_reql(case["old"], case["new"])).run(conn)
    finally:
        await conn.close()
    assert kinds == [event_kind(old, new) for old, new in CASES]
