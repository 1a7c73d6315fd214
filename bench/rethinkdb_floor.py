"""The floor under a RethinkDB event design on this machine: writes reported by a change feed, nothing else.

Issue 16 asks for RethinkDB's p99 write-to-client within 3x of SQLite's (``bench/events.py``).
Whatever the gateway does for an inbound email, its event reaches a client no sooner than the
writes it needs are made and a change feed reports the last.  This script measures that with
nothing of the gateway: a RethinkDB server of its own (the one ``bench/events.py`` starts), a
change feed on a connection of its own (as a gateway's is), and ``--rate`` writes a second (200,
the events benchmark's rate) for ``--duration`` seconds, over ``--connections`` connections (16,
as the gateway's pool).  Each write is one query, in one of three shapes (``--shapes``):

``insert``
    one document (``--size`` bytes of body: 2,000, about an email with its listed view) into a
    table with no secondary index: the least any design can write;
``logged``
    an event-log entry, then the email (the tables' indexes as the gateway's, 2 and 5), in one
    query: the least a design that keeps the gateway's promise writes before the event is reported
    (the entry durable first, so that a crash cannot give its seq to another email after a client
    saw it);
``inbound``
    the four documents an inbound email is written as (raw message, event-log entry, email,
    thread), into four tables with the secondary indexes the gateway keeps on them (1, 2, 5 and
    1), in one query, the email last: what the gateway's store writes, without its reads or seqs.

Latency is from sending the query to the feed's report of its last document; printed per shape
and durability (``hard``: what an accepted email needs; ``soft``: acknowledged before the disk
write), with the query's own acknowledgement time and the server's CPU time per write.

Run (from the repository root)::

    python bench/rethinkdb_floor.py
    python bench/rethinkdb_floor.py --shapes logged --durability hard --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from events import RethinkServer  # noqa: E402
from gateway_process import percentile  # noqa: E402
from rethinkdb import RethinkDB  # noqa: E402

r = RethinkDB()
r.set_loop_type("asyncio")

#: ``inbound``'s tables, in the order the query writes them, and how many secondary indexes each has
#: (the gateway's: messages ``owner``; event_log ``at``, ``email``; emails ``owner``,
#: ``owner_thread``, ``owner_message_id``, ``status``, ``owner_created_order``; threads ``owner``).
INBOUND = (("messages", 1), ("event_log", 2), ("threads", 1), ("emails", 5))


def index_function(field: str) -> Any:
    return lambda doc: [doc["owner"], doc[field]]


async def make_tables(admin: Any, db: str, shape: str) -> list[str]:
    """The shape's tables, with their indexes; the last one's feed reports a write."""
    tables = {"insert": [("events", 0)], "logged": [INBOUND[1], INBOUND[3]], "inbound": list(INBOUND)}[shape]
    await r.db_create(db).run(admin)
    for table, indexes in tables:
        await r.db(db).table_create(table).run(admin)
        for number in range(indexes):
            await r.db(db).table(table).index_create(f"i{number}", index_function(f"f{number}")).run(admin)
        await r.db(db).table(table).index_wait().run(admin)
    await r.db(db).wait().run(admin)
    return [table for table, _ in tables]


def write_query(tables: list[str], key: str, owner: str, size: int, durability: str) -> Any:
    def doc(body: int) -> dict[str, Any]:
        return {"id": key, "owner": owner, **{f"f{n}": f"{key}-{n}" for n in range(5)}, "body": "x" * body}
    inserts = [r.table(t).insert(doc(size if t in ("emails", "events") else size // 4), durability=durability)
               for t in tables]
    query = inserts[-1]
    for earlier in reversed(inserts[:-1]):  # one after another, the feed's table last
        query = earlier.do((lambda then: lambda _: then)(query))
    return query


async def run(server: RethinkServer, shape: str, durability: str, args: argparse.Namespace) -> dict[str, Any]:
    db = f"floor_{secrets.token_hex(3)}"
    admin = await r.connect("127.0.0.1", server.port)
    tables = await make_tables(admin, db, shape)
    writers = [await r.connect("127.0.0.1", server.port, db=db) for _ in range(args.connections)]
    feed_conn = await r.connect("127.0.0.1", server.port, db=db)
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    total = int(args.rate * args.duration)
    done = asyncio.Event()
    feed = await r.table(tables[-1]).changes().run(feed_conn)

    async def follow() -> None:
        while len(seen) < total:
            change = await feed.next()
            seen[change["new_val"]["id"]] = time.perf_counter()
        done.set()

    async def write(conn: Any, number: int) -> None:
        key = f"m{number:08d}"
        query = write_query(tables, key, f"a{number % 100}", args.size, durability)
        sent[key] = time.perf_counter()
        await query.run(conn)
        acked[key] = time.perf_counter()

    follower = asyncio.ensure_future(follow())
    cpu_before = server.cpu_seconds()
    connections = itertools.cycle(writers)
    tasks = []
    start = time.perf_counter()
    for number in range(total):
        delay = start + number / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(write(next(connections), number)))
    await asyncio.gather(*tasks)
    await asyncio.wait_for(done.wait(), 30)
    await follower
    cpu = server.cpu_seconds() - cpu_before
    for conn in (*writers, feed_conn):
        await conn.close()
    await r.db_drop(db).run(admin)
    await admin.close()
    to_feed = sorted(seen[k] - sent[k] for k in sent)
    to_ack = sorted(acked[k] - sent[k] for k in sent)
    return {"writes": total, "feed p50": 1000 * percentile(to_feed, 0.5), "feed p99": 1000 * percentile(to_feed, 0.99),
            "ack p50": 1000 * percentile(to_ack, 0.5), "ack p99": 1000 * percentile(to_ack, 0.99),
            "cpu ms": cpu / total * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="writes a second (200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of writes per line (10)")
    parser.add_argument("--size", type=int, default=2000, help="bytes of the email's body (2,000; a quarter for the others)")
    parser.add_argument("--connections", type=int, default=16, help="connections the writes go over (16)")
    parser.add_argument("--shapes", default="insert,logged,inbound",
                        help="comma-separated: insert, logged, inbound (all three)")
    parser.add_argument("--durability", default="hard,soft", help="comma-separated: hard, soft (both)")
    parser.add_argument("--rethinkdb-args", default="", help="more options for the rethinkdb server")
    args = parser.parse_args()
    shapes, durabilities = args.shapes.split(","), args.durability.split(",")
    if set(shapes) - {"insert", "logged", "inbound"} or set(durabilities) - {"hard", "soft"}:
        parser.error("--shapes takes insert, logged and inbound, --durability hard and/or soft")
    server = RethinkServer(args.rethinkdb_args.split())
    try:
        print(f"rethinkdb floor: {args.rate:g} writes/s for {args.duration:g} s over {args.connections} connections, "
              "each reported by a change feed; a server of its own, nothing of the gateway")
        print(f"{'shape':>8} {'durability':>10} {'writes':>6} {'to feed p50 ms':>14} {'p99 ms':>7} "
              f"{'ack p50 ms':>10} {'p99 ms':>7} {'server CPU ms/write':>19}")
        for shape in shapes:
            for durability in durabilities:
                result = asyncio.run(run(server, shape, durability, args))
                print(f"{shape:>8} {durability:>10} {result['writes']:>6} {result['feed p50']:>14.2f} "
                      f"{result['feed p99']:>7.2f} {result['ack p50']:>10.2f} {result['ack p99']:>7.2f} "
                      f"{result['cpu ms']:>19.2f}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
