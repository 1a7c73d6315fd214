"""The shared store: a RethinkDB database (``rethinkdb://HOST:PORT[,HOST:PORT...]/DB[?replicas=N][&timeout=S]``), for
several gateway processes.

Each table of :data:`~gateway.store.schema.TABLES` holds the documents as they
are, keyed by ``id``.  The parts, each in its own module:

* :mod:`~gateway.store.rethink.pool`: connections and error translation;
* :mod:`~gateway.store.rethink.query`: ``where``, order and index choice in ReQL;
* :mod:`~gateway.store.rethink.schema`: tables and indexes, created on open;
* :mod:`~gateway.store.rethink.recording`: how an email write records its events;
* :mod:`~gateway.store.rethink.feeds`: table feeds and the event feed.

Each account has its own sequence of events, kept in the ``event_log`` table
(:mod:`~gateway.store.rethink.recording`); the cursor of an event names the
account and its seq (:mod:`~gateway.store.rethink.cursors`).  The event feed is
the log's inserts, so no other write leaves the server.  The log keeps about
``history_limit`` events and always each account's newest, so
:meth:`RethinkStore.event_history` can say exactly whether anything after a
cursor is gone: the seqs after it must follow on from it.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from events.model import event_kind
from gateway.store.base import Change, ChangeFeed, History, Store
from gateway.store.documents import Conflict, Doc, Query, StoreError, StoreUnavailable
from gateway.store.rethink import query as q
from gateway.store.rethink.cursors import cursor, parse
from gateway.store.rethink.feeds import EventFeed, Feed, TableFeed
from gateway.store.rethink.group_commit import GroupCommit
from gateway.store.rethink.pool import (DEFAULT_DB, DEFAULT_PORT, POOL_SIZE, QUERY_TIMEOUT, Pool, close_quietly, r,
                                        write_failed)
from gateway.store.rethink.recording import (LEGACY_COUNTERS, LOG, Recorder, insert_each, is_event,
                                             is_stamp_only, newest_seq, public)
from gateway.store.rethink.schema import Schema
from gateway.store.rethink.template import Template

#: RethinkDB's rule for database names.
DB_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
#: delete_where on emails deletes this many documents per query (each returned to be checked
#: for events), keeping each query's returned changes well under RethinkDB's array limit.
DELETE_BATCH = 1000
#: Seconds :meth:`RethinkStore.ping` waits for the tables (a health probe must answer soon).
PING_TIMEOUT = 2
#: The error a conditional update raises inside ReQL when ``only_if`` does not hold.
NOT_MATCHED = "gateway: only_if did not match"

#: Insert ``before``, then a document (with its id), then, if it went in, ``others`` (see insert_each).
INSERT = Template(lambda table, doc, others, before: insert_each(before).do(
    lambda first: r.table(table).insert(doc, conflict="error").do(lambda result: {
        "result": result, "others": r.branch(result["inserted"].eq(1), insert_each(others), {}), "before": first})))
#: Merge ``changes`` into a document's top-level fields (a nested object replaces the old one whole),
#: only if its fields equal ``conditions`` (else the query fails with NOT_MATCHED): one atomic
#: read-modify-write, so a claim cannot race.  "always": an update that changes nothing still
#: returns the document.
UPDATE = Template(lambda table, id, changes, conditions: r.table(table).get(id).replace(
    lambda doc: r.branch(
        doc.eq(None), None,
        conditions.keys().filter(lambda name: doc[name].default(None).ne(conditions[name])).is_empty(),
        doc.without(changes.keys()).merge(changes),
        r.error(NOT_MATCHED)),
    return_changes="always"))


def _host_port(item: str, url: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) of a store URL; ValueError when malformed."""
    parts = urlsplit(f"//{item}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad store URL {url!r}: bad port in {item!r}") from None
    if not parts.hostname:
        raise ValueError(f"bad store URL {url!r}: a host is missing")
    return parts.hostname, port


class RethinkStore(Store):
    """A store in one RethinkDB database; create it with :meth:`from_url` or directly."""

    shared = True
    backend = "rethinkdb"

    def __init__(self, host: str = "localhost", port: int = DEFAULT_PORT, db: str = DEFAULT_DB,
                 user: str = "admin", password: str = "", history_limit: int = 100_000,
                 pool_size: int = POOL_SIZE, more_hosts: list[tuple[str, int]] | None = None,
                 replicas: int = 1, query_timeout: float = QUERY_TIMEOUT) -> None:
        if not DB_NAME.match(db):
            raise ValueError(f"bad RethinkDB database name {db!r}: use A-Z, a-z, 0-9, _ and - only")
        self.host, self.port, self.db = host, port, db
        self.history_limit = history_limit
        self._pool = Pool([(host, port), *(more_hosts or [])], db, user, password, pool_size, replicas,
                          query_timeout)
        self._recorder = Recorder(self._pool, history_limit, GroupCommit(self._pool).insert_next)
        self._feeds: set[Feed] = set()
        #: The last cursor the earlier layout (one sequence for every event) issued in this database.
        self._legacy_seq = 0

    @classmethod
    def from_url(cls, url: str, history_limit: int = 100_000) -> RethinkStore:
        """``rethinkdb://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...][/DB][?replicas=N][&timeout=S]``:
        the nodes this process may use, the preferred first, how many replicas each table gets
        when this process creates it, and the seconds a query may go unanswered (:data:`QUERY_TIMEOUT`);
        ValueError when malformed."""
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.scheme != "rethinkdb" or parts.fragment or set(query) - {"replicas", "timeout"}:
            raise ValueError(f"bad store URL {url!r}: expected "
                             "rethinkdb://HOST:PORT[,HOST:PORT...]/DB[?replicas=N][&timeout=SECONDS]")
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        hosts = [_host_port(item, url) for item in hostlist.split(",")] if hostlist else [("localhost", DEFAULT_PORT)]
        replicas = query.get("replicas", ["1"])[-1]
        if not replicas.isdigit() or not 1 <= int(replicas) <= 9:
            raise ValueError(f"bad store URL {url!r}: replicas must be a number from 1 to 9")
        timeout = query.get("timeout", [str(QUERY_TIMEOUT)])[-1]
        try:
            query_timeout = float(timeout)
        except ValueError:
            query_timeout = 0.0
        if not 0.1 <= query_timeout <= 3600:  # (also refuses nan and inf)
            raise ValueError(f"bad store URL {url!r}: timeout must be a number of seconds from 0.1 to 3600")
        db = parts.path.strip("/") or DEFAULT_DB
        return cls(hosts[0][0], hosts[0][1], db, unquote(user or "admin"), unquote(password), history_limit,
                   more_hosts=hosts[1:], replicas=int(replicas), query_timeout=query_timeout)

    async def _run(self, query: Any, conn: Any = None) -> Any:
        return await self._pool.run(query, conn)

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        try:
            conn = await self._pool.open()
            await Schema(self._pool).create(conn)
            self._legacy_seq = int(await self._run(r.branch(
                r.table_list().contains(LEGACY_COUNTERS),
                r.table(LEGACY_COUNTERS).get_all("events", "emails")["seq"].max().default(0), 0), conn))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._pool.is_open = False  # first: a feed starting meanwhile ends itself (see _feed)
        for feed in list(self._feeds):
            await feed.aclose()
        await self._pool.close()

    async def ping(self) -> bool:
        """Whether the tables answer (a server that just restarted takes connections before its tables are ready)."""
        try:
            await self._pool.run(r.db(self.db).wait(wait_for="ready_for_writes", timeout=PING_TIMEOUT),
                                 timeout=min(PING_TIMEOUT + 1, self._pool.query_timeout))
            return True
        except StoreError:
            return False

    # -- documents --------------------------------------------------------

    async def get(self, table: str, id: str) -> Doc | None:
        result: Doc | None = await self._run(r.table(q.table_name(table)).get(id))
        return public(result)

    async def insert(self, table: str, doc: Doc) -> Doc:
        await self.insert_with(table, doc)
        return doc

    async def insert_with(self, table: str, doc: Doc, *others: tuple[str, Doc],
                          before: Sequence[tuple[str, Doc]] = ()) -> list[str]:
        """One query: ``before``, the insert (with its event, if it is one), then the others'."""
        doc_id = doc["id"]  # required: RethinkDB would otherwise invent one
        owner = doc.get("owner")
        kind = event_kind(None, doc) if table == "emails" and isinstance(owner, str) else None
        for other_table, _ in (*others, *before):
            q.table_name(other_table)
        if kind is not None and isinstance(owner, str):
            result, failed, refused = await self._recorder.insert_event(doc, owner, kind, others, before)
        else:
            reply = await self._run(INSERT(q.table_name(table), doc, *(
                [{"table": docs_table, "doc": other} for docs_table, other in docs] for docs in (others, before))))
            result, failed, refused = reply["result"], reply["others"].get("failed", []), \
                reply["before"].get("failed", [])
        for other_table, error in (*refused, *failed):
            if "Duplicate primary key" not in error:
                raise write_failed(f"insert into {other_table}", error)
        if result["errors"]:
            if "Duplicate primary key" in result.get("first_error", ""):
                raise Conflict(f"{table}/{doc_id} exists")
            raise write_failed(f"insert into {table}", result.get("first_error"))
        return [other_table for other_table, _ in failed]

    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        write = UPDATE(q.table_name(table), id, {k: v for k, v in changes.items() if k != "id"}, only_if or {})
        result, logged = await self._recorder.write(table, write)
        if result["errors"]:
            if result.get("first_error") == NOT_MATCHED:
                return None
            raise write_failed(f"update of {table}/{id}", result.get("first_error"))
        return logged[0].new if logged else None

    async def delete(self, table: str, id: str) -> Doc | None:
        result, changes = await self._recorder.write(table, r.table(q.table_name(table)).get(id).delete(
            return_changes=True))
        if result["errors"]:  # not "no such document": that is no error, and no change
            raise write_failed(f"delete of {table}/{id}", result.get("first_error"))
        return changes[0].old if changes else None

    async def find(self, table: str, query: Query) -> list[Doc]:
        query.check()
        page = q.ordered_page(table, query.where, query.order_by, query.offset, query.limit)
        if page is None:  # every match sorted
            ordered = q.select(table, query.where).order_by(*(q.order(n, desc) for n, desc in query.order_by),
                                                            r.asc("id"))
            if query.offset:
                ordered = ordered.skip(query.offset)
            if query.limit is not None:
                ordered = ordered.limit(query.limit)
            page = ordered.coerce_to("array")  # one reply, no cursor to leak
        docs: list[Doc] = await self._run(page)
        return [public(doc) for doc in docs] if table == "emails" else docs

    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        Query(where or {}).check()
        return int(await self._run(q.select(table, where or {}).count()))

    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        Query(where).check()
        selection = q.select(table, where)
        if table != "emails":
            result = await self._run(selection.delete())
            return int(result["deleted"])
        deleted = 0
        while True:  # in batches: each deleted document is returned (to be checked for events)
            result, _ = await self._recorder.write(table, selection.limit(DELETE_BATCH).delete(return_changes=True))
            deleted += int(result["deleted"])
            if result["deleted"] < DELETE_BATCH:
                return deleted

    # -- the event log ----------------------------------------------------

    consecutive = True

    async def latest_event_cursor(self, owner: str) -> str:
        return cursor(owner, int(await self._run(newest_seq(owner))))

    def cursor_key(self, cursor: str, owner: str | None = None) -> int:
        """The seq of a cursor; 0 for ``"0"`` and for the earlier layout's cursors (before every event)."""
        cursor_owner, seq = parse(cursor)
        if cursor_owner is None:
            if seq > self._legacy_seq:
                raise ValueError(f"cursor {cursor} was never issued here")
            return 0
        if owner is not None and cursor_owner != owner:
            raise ValueError("a cursor of another account's events")
        return seq

    async def event_history(self, owner: str, after: str | None, limit: int) -> History:
        start = 0 if after is None else self.cursor_key(after, owner)
        entries = await self._run(r.table(LOG).between(
            [owner, start], [owner, r.maxval], left_bound="open").order_by(index="id").limit(limit).coerce_to("array"))
        # an account's seqs have no gap, and its newest entry is never pruned: the first one kept after
        # the cursor follows on from it, or something was pruned (or the cursor is the earlier layout's)
        follows = not entries or entries[0]["id"][1] == start + 1
        legacy = after is not None and parse(after)[0] is None and parse(after)[1] > 0
        changes = [Change("emails", None, e["doc"], cursor(owner, e["id"][1]), e["kind"])
                   for e in entries if e["kind"] is not None]  # (a void: a seq whose email was never written)
        return History(changes, complete=after is None or (follows and not legacy))

    # -- change feeds -----------------------------------------------------

    async def event_feed(self) -> ChangeFeed:
        async def start(conn: Any) -> Feed:
            # only the stamps, and the server's overflow notices (which a plain filter would drop)
            query = r.table("emails").changes().filter(lambda c: c.has_fields("error") | is_event(c))
            return EventFeed(conn, await self._run(query, conn), self._feeds.discard)

        return await self._feed(start)

    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        q.table_name(table)
        Query(where or {}).check()
        predicate = q.predicate(where or {})

        def wanted(change: Any) -> Any:
            keep = r.expr(True) if table != "emails" else ~is_stamp_only(change)  # stamps are the backend's own
            return keep if predicate is None else keep & predicate(change["new_val"])

        async def start(conn: Any) -> Feed:
            query = r.table(table).changes()
            if table == "emails" or predicate is not None:
                query = query.filter(lambda c: c.has_fields("error") | wanted(c))
            return TableFeed(table, conn, await self._run(query, conn), self._feeds.discard)

        return await self._feed(start)

    async def _feed(self, start: Callable[[Any], Any]) -> ChangeFeed:
        """A feed started by ``start(conn)`` on a connection of its own: closing it ends the feed."""
        if not self._pool.is_open:
            raise StoreUnavailable("the store is closed")
        conn = await self._pool.connect()
        try:
            feed: Feed = await start(conn)
        except BaseException:
            await close_quietly(conn)
            raise
        self._feeds.add(feed)
        if not self._pool.is_open:  # closed while the feed started: it must end like the others
            await feed.aclose()
        return feed
