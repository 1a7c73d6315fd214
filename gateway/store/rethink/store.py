"""The shared store: a RethinkDB database (``rethinkdb://HOST:PORT[,HOST:PORT...]/DB[?replicas=N]``), for
several gateway processes.

Each table of :data:`~gateway.store.schema.TABLES` holds the documents as they
are, keyed by ``id``.  The parts, each in its own module:

* :mod:`~gateway.store.rethink.pool`: connections and error translation;
* :mod:`~gateway.store.rethink.query`: ``where``, order and index choice in ReQL;
* :mod:`~gateway.store.rethink.schema`: tables and indexes, created on open;
* :mod:`~gateway.store.rethink.recording`: how an email write records its events;
* :mod:`~gateway.store.rethink.feeds`: table feeds and the event feed.

The cursor of an event is ``str(seq)``.  The event feed is ``.changes()`` on
the emails table filtered to the event stamps, so no other write leaves the
server; :class:`~gateway.store.ordering.SeqOrder` puts concurrent writers'
stamps back in seq order.  The events table keeps about ``history_limit``
entries; the counter document also records the highest pruned seq, so
:meth:`RethinkStore.event_history` can say exactly whether anything after a
cursor is gone.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from events.model import event_kind
from gateway.store.base import Change, ChangeFeed, History, Store, seq_cursor_key
from gateway.store.documents import Conflict, Doc, Query, StoreError, StoreUnavailable
from gateway.store.rethink import query as q
from gateway.store.rethink.feeds import EventFeed, Feed, TableFeed
from gateway.store.rethink.pool import DEFAULT_DB, DEFAULT_PORT, POOL_SIZE, Pool, close_quietly, r
from gateway.store.rethink.recording import COUNTERS, EVENTS, Recorder, is_event, is_stamp_only, public
from gateway.store.rethink.schema import Schema

#: RethinkDB's rule for database names.
DB_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
#: delete_where on emails deletes this many documents per query (each returned to be checked
#: for events), keeping each query's returned changes well under RethinkDB's array limit.
DELETE_BATCH = 1000
#: The error a conditional update raises inside ReQL when ``only_if`` does not hold.
NOT_MATCHED = "gateway: only_if did not match"


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

    def __init__(self, host: str = "localhost", port: int = DEFAULT_PORT, db: str = DEFAULT_DB,
                 user: str = "admin", password: str = "", history_limit: int = 100_000,
                 pool_size: int = POOL_SIZE, more_hosts: list[tuple[str, int]] | None = None,
                 replicas: int = 1) -> None:
        if not DB_NAME.match(db):
            raise ValueError(f"bad RethinkDB database name {db!r}: use A-Z, a-z, 0-9, _ and - only")
        self.host, self.port, self.db = host, port, db
        self.history_limit = history_limit
        self._pool = Pool([(host, port), *(more_hosts or [])], db, user, password, pool_size, replicas)
        self._recorder = Recorder(self._pool, history_limit)
        self._feeds: set[Feed] = set()

    @classmethod
    def from_url(cls, url: str, history_limit: int = 100_000) -> RethinkStore:
        """``rethinkdb://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]...][/DB][?replicas=N]``: the
        nodes this process may use, the preferred first, and how many replicas each table gets
        when this process creates it; ValueError when malformed."""
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.scheme != "rethinkdb" or parts.fragment or set(query) - {"replicas"}:
            raise ValueError(f"bad store URL {url!r}: expected rethinkdb://HOST:PORT[,HOST:PORT...]/DB[?replicas=N]")
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        hosts = [_host_port(item, url) for item in hostlist.split(",")] if hostlist else [("localhost", DEFAULT_PORT)]
        replicas = query.get("replicas", ["1"])[-1]
        if not replicas.isdigit() or not 1 <= int(replicas) <= 9:
            raise ValueError(f"bad store URL {url!r}: replicas must be a number from 1 to 9")
        db = parts.path.strip("/") or DEFAULT_DB
        return cls(hosts[0][0], hosts[0][1], db, unquote(user or "admin"), unquote(password), history_limit,
                   more_hosts=hosts[1:], replicas=int(replicas))

    async def _run(self, query: Any, conn: Any = None) -> Any:
        return await self._pool.run(query, conn)

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        try:
            await Schema(self._pool).create(await self._pool.open())
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
            await self._run(r.db(self.db).wait(wait_for="ready_for_writes", timeout=2))
            return True
        except StoreError:
            return False

    # -- documents --------------------------------------------------------

    async def get(self, table: str, id: str) -> Doc | None:
        result: Doc | None = await self._run(r.table(q.table_name(table)).get(id))
        return public(result)

    async def insert(self, table: str, doc: Doc) -> Doc:
        doc_id = doc["id"]  # required: RethinkDB would otherwise invent one
        kind = event_kind(None, doc) if table == "emails" else None
        if kind is not None:
            result, changes = await self._recorder.insert_event(doc, kind)
        else:
            result, changes = await self._recorder.write(table, r.table(q.table_name(table)).insert(
                doc, conflict="error", return_changes=True))
        if result["errors"]:
            if "Duplicate primary key" in result.get("first_error", ""):
                raise Conflict(f"{table}/{doc_id} exists")
            raise StoreError(f"insert into {table}: {result.get('first_error')}")
        new = changes[0].new
        assert new is not None  # an insert's change
        return new

    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        patch = q.patch(changes)
        conditions = dict(only_if or {})

        def replace(doc: Any) -> Any:
            # One atomic read-modify-write of the document: a claim with only_if cannot race.
            # replace + merge rather than update: r.literal (no deep merge) is not allowed in an
            # update function's branches, but is in merge's argument.
            matched = r.and_(*(doc[k].default(None).eq(r.expr(v)) for k, v in conditions.items())) \
                if conditions else True
            return r.branch(doc.eq(None), None, matched, doc.merge(patch), r.error(NOT_MATCHED))

        # "always": an update that changes nothing still returns the document (and is logged, as in SQLite)
        result, logged = await self._recorder.write(table, r.table(q.table_name(table)).get(id).replace(
            replace, return_changes="always"))
        if result["errors"]:
            if result.get("first_error") == NOT_MATCHED:
                return None
            raise StoreError(f"update of {table}/{id}: {result.get('first_error')}")
        return logged[0].new if logged else None

    async def delete(self, table: str, id: str) -> Doc | None:
        _, changes = await self._recorder.write(table, r.table(q.table_name(table)).get(id).delete(return_changes=True))
        return changes[0].old if changes else None

    async def find(self, table: str, query: Query) -> list[Doc]:
        query.check()
        selection = q.select(table, query.where)
        order = [r.desc(q.sort_key(n)) if desc else r.asc(q.sort_key(n)) for n, desc in query.order_by]
        ordered = selection.order_by(*order, r.asc("id"))
        if query.offset:
            ordered = ordered.skip(query.offset)
        if query.limit is not None:
            ordered = ordered.limit(query.limit)
        docs: list[Doc] = await self._run(ordered.coerce_to("array"))  # one reply, no cursor to leak
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

    async def latest_event_cursor(self) -> str | None:
        seq = await self._run(r.table(COUNTERS).get(EVENTS)["seq"].default(0))
        return str(seq) if seq else None

    def cursor_key(self, cursor: str) -> int:
        return seq_cursor_key(cursor)

    async def event_history(self, owner: str, after: str | None, limit: int) -> History:
        start = 0 if after is None else self.cursor_key(after)
        entries = r.table(EVENTS).between(
            [owner, start], [owner, r.maxval], index="owner_seq", left_bound="open",
        ).order_by(index="owner_seq").limit(limit).coerce_to("array")
        # entries first, then the prune mark: a prune in between makes the answer "incomplete",
        # never a silently shortened "complete"
        reply = await self._run(entries.do(
            lambda es: {"entries": es, "pruned": r.table(COUNTERS).get(EVENTS)["pruned"].default(0)}))
        changes = [Change("emails", None, e["doc"], str(e["id"]), e["kind"]) for e in reply["entries"]]
        return History(changes, complete=after is None or reply["pruned"] <= start)

    # -- change feeds -----------------------------------------------------

    async def event_feed(self) -> ChangeFeed:
        async def start(conn: Any) -> Feed:
            # only the stamps, and the server's overflow notices (which a plain filter would drop)
            query = r.table("emails").changes().filter(lambda c: c.has_fields("error") | is_event(c))
            cursor = await self._run(query, conn)  # the feed is live once this returns
            # read after the feed went live: every seq above it is an event the feed will see
            baseline = int(await self._run(r.table(COUNTERS).get(EVENTS)["seq"], conn))
            return EventFeed(conn, cursor, self._feeds.discard, self._pool, baseline)

        return await self._feed(start)

    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        q.table_name(table)
        Query(where or {}).check()
        predicate = q.predicate(where or {})

        def wanted(change: Any) -> Any:
            keep = r.expr(True) if table != "emails" else ~is_stamp_only(change)  # stamps are the backend's own
            return keep if predicate is None else keep & predicate(change["new_val"])

        async def start(conn: Any) -> Feed:
            query = r.table(table).changes().filter(lambda c: c.has_fields("error") | wanted(c))
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
