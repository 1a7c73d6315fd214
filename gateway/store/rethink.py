"""The shared store: a RethinkDB database (``rethinkdb://HOST:PORT/DB``), for several gateway processes.

Each table of :data:`~gateway.store.base.TABLES` holds the documents as they
are, keyed by ``id``.  Events (writes to ``emails`` that
:func:`~gateway.store.base.event_kind` names) get cursors:

* A write to ``emails`` is followed, in the same ReQL query, by the same rule
  in ReQL (:func:`_event_kind`) over the write's changes.  Only when some are
  events does the query go on: it takes a seq per event from the ``events``
  counter (one document in ``counters``, bumped atomically), appends
  ``{id: seq, owner, kind, doc}`` to the ``events`` table (the history), and
  stamps each email with ``_event: {seq, kind}``.  An inbound email, whose
  insert is always an event, is stamped as it is inserted (the seq taken and
  the event logged first), which saves that write.  One query means a client that
  dies mid-way leaves no hole; it is not one transaction (RethinkDB has none
  across documents), so a server failure in between can.
* The live feed is ``.changes()`` on the emails table, filtered in the query
  to those stamps: other writes never leave the server.  The cursor of an
  event is ``str(seq)``; :class:`_EventFeed` puts concurrent writers' stamps
  back in seq order, and takes from the history an event whose stamp never comes.  ``_event`` is the backend's own: no document it returns
  carries it.
* The events table keeps about ``history_limit`` entries; the counter
  document also records the highest pruned seq, so ``event_history()`` can
  say exactly whether anything after a cursor is gone.

Queries run on a small pool of connections (round robin, reconnected when a
connection drops); each change feed has a connection of its own, so closing
the feed is closing that connection.  Lost connections surface as
:class:`~gateway.store.base.StoreUnavailable`.

``open()`` creates the database, tables and indexes that are missing.  Several
processes may do so at once: RethinkDB then creates duplicate tables, which
``open()`` settles (see :meth:`RethinkStore._create_schema`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import re
from typing import Any, Callable, Iterator, overload
from urllib.parse import unquote, urlsplit

from rethinkdb import RethinkDB
from rethinkdb.errors import (
    ReqlAuthError, ReqlAvailabilityError, ReqlCursorEmpty, ReqlDriverError, ReqlError, ReqlOpFailedError,
    ReqlRuntimeError, ReqlTimeoutError,
)

from gateway.store.base import (
    OWNED_TABLES, TABLES, Change, ChangeFeed, Conflict, Contains, Doc, History, In, Query, Store, StoreError,
    StoreUnavailable, event_kind, seq_cursor_key,
)

log = logging.getLogger(__name__)

r = RethinkDB()
# Tornado runs on asyncio, so the driver's asyncio connections share its loop.
r.set_loop_type("asyncio")

DEFAULT_PORT = 28015
DEFAULT_DB = "gateway"
#: RethinkDB's rule for database names.
DB_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

POOL_SIZE = 4
CONNECT_TIMEOUT = 5.0
#: When the event feed, holding later events back for a missing seq, looks that seq up in the
#: history (seconds after it began waiting); after the last look, a seq still missing is
#: skipped.  Seqs are taken just before the email is stamped, so concurrent writers can stamp
#: out of seq order (the gap fills within milliseconds).  A stamp that never comes (its email
#: deleted in between, or a server failure after the history entry) is taken from the history;
#: only a seq that never reached the history either (a failure right after taking it) is skipped.
GAP_CHECKS = (0.1, 0.5, 2.0)
GAP_TIMEOUT = GAP_CHECKS[-1]
#: How many seqs the event feed remembers as taken from the history or skipped (to tell a late
#: stamp that is a duplicate from one that is still news).
GAP_MEMORY = 10_000
#: Prune the events table after this many events (or fewer when history_limit is small).
PRUNE_EVERY = 1000
#: delete_where on emails deletes this many documents per query (each returned to be checked
#: for events), keeping each query's returned changes well under RethinkDB's array limit.
DELETE_BATCH = 1000

#: Passes over the schema before open() gives up (each settles what concurrent openers created).
SCHEMA_ATTEMPTS = 10

#: ``{id: seq, owner, kind, doc}``: the history of events.
EVENTS = "events"
#: ``{id: "events", seq: last seq taken, pruned: highest seq pruned}``.
COUNTERS = "counters"
#: The field stamped on an email whose write made an event: ``{seq, kind}``.
STAMP = "_event"


def _fields(*names: str) -> Callable[[Any], Any]:
    return lambda doc: [doc[name] for name in names]


#: Secondary indexes: table -> name -> (the fields find() may serve with it, the index function).
INDEXES: dict[str, dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]]] = {
    **{table: {"owner": (("owner",), lambda doc: doc["owner"])} for table in OWNED_TABLES},
    "emails": {
        # most specific first: find() uses the first index whose fields it can all fill
        "owner_thread": (("owner", "thread"), _fields("owner", "thread")),
        "owner_message_id": (("owner", "message_id"), _fields("owner", "message_id")),
        "owner": (("owner",), lambda doc: doc["owner"]),
        "status": (("status",), lambda doc: doc["status"]),
    },
    EVENTS: {
        "owner_seq": ((), _fields("owner", "id")),  # event_history(): one owner's events in seq order
    },
}

#: The error a conditional update raises inside ReQL when ``only_if`` does not hold.
NOT_MATCHED = "gateway: only_if did not match"


#: find() looks up at most this many keys in an index (an In, or Ins on a compound index).
MAX_INDEX_KEYS = 100


def _indexable(value: Any) -> bool:
    """Whether ``value`` can be looked up in an index (RethinkDB refuses null keys; objects are left to filter)."""
    return isinstance(value, (str, int, float))


def _index_keys(cond: Any) -> list[Any] | None:
    """The index keys a ``where`` condition matches, or None when an index cannot serve it."""
    if isinstance(cond, In):
        return list(cond.values) if cond.values and all(_indexable(v) for v in cond.values) else None
    return [cond] if _indexable(cond) else None


def _condition(doc: Any, name: str, cond: Any) -> Any:
    """One ``where`` entry as a ReQL predicate, with the SQLite backend's semantics:
    a missing field equals only None, and never matches a value, In or Contains."""
    if isinstance(cond, In):
        values = [v for v in cond.values if v is not None]  # SQL's IN never matches NULL
        return r.expr(values).contains(doc[name]).default(False) if values else r.expr(False)
    if isinstance(cond, Contains):
        field = doc[name]
        return r.branch(field.type_of().eq("ARRAY"), field.contains(r.expr(cond.value)), False).default(False)
    if cond is None:
        return doc[name].default(None).eq(None)
    return doc[name].eq(r.expr(cond)).default(False)


def _predicate(where: dict[str, Any]) -> Callable[[Any], Any] | None:
    if not where:
        return None
    return lambda doc: r.and_(*(_condition(doc, name, cond) for name, cond in where.items()))


def _sort_key(name: str) -> Callable[[Any], Any]:
    """Order as SQLite does: missing and null first, booleans as 0 and 1 among the numbers,
    then strings (RethinkDB's own order puts booleans before null, and missing before null)."""
    def key(doc: Any) -> Any:
        value = doc[name].default(None)
        return r.branch(value.eq(None), [0], value.type_of().eq("BOOL"), [1, r.branch(value, 1, 0)], [1, value])
    return key


def _patch(changes: Doc) -> Doc:
    """``changes`` as a merge argument that replaces nested objects instead of deep-merging them."""
    return {k: r.literal(v) if isinstance(v, dict) else v for k, v in changes.items() if k != "id"}


def _aside(name: str, item_id: str) -> str:
    """The name a duplicate is renamed to: the same in every process that settles it."""
    return f"{name}_dup_{item_id.replace('-', '')[:16]}"


#: Names made by :func:`_aside`.
ASIDE = re.compile(r"^[A-Za-z0-9_-]+_dup_[0-9a-f]{16}$")


def _table_name(table: str) -> str:
    # Unknown names would otherwise come back as "table does not exist", an availability error.
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return table


class RethinkStore(Store):
    """A store in one RethinkDB database; create it with :meth:`from_url` or directly."""

    shared = True

    def __init__(self, host: str = "localhost", port: int = DEFAULT_PORT, db: str = DEFAULT_DB,
                 user: str = "admin", password: str = "", history_limit: int = 100_000,
                 pool_size: int = POOL_SIZE) -> None:
        if not DB_NAME.match(db):
            raise ValueError(f"bad RethinkDB database name {db!r}: use A-Z, a-z, 0-9, _ and - only")
        self.host, self.port, self.db = host, port, db
        self.user, self.password = user, password
        self.history_limit = history_limit
        self._pool: list[Any] = [None] * pool_size
        self._pool_locks: list[asyncio.Lock] = []
        self._turn = itertools.cycle(range(pool_size))
        self._feeds: set[_Feed] = set()
        self._open = False
        self._events_since_prune = 0

    @classmethod
    def from_url(cls, url: str, history_limit: int = 100_000) -> RethinkStore:
        """``rethinkdb://[USER[:PASSWORD]@]HOST[:PORT][/DB]``; ValueError when malformed."""
        parts = urlsplit(url)
        if parts.scheme != "rethinkdb" or parts.query or parts.fragment:
            raise ValueError(f"bad store URL {url!r}: expected rethinkdb://HOST:PORT/DB")
        port = parts.port or DEFAULT_PORT  # .port raises ValueError for a bad port
        db = parts.path.strip("/") or DEFAULT_DB
        return cls(parts.hostname or "localhost", port, db, unquote(parts.username or "admin"),
                   unquote(parts.password or ""), history_limit)

    # -- plumbing ---------------------------------------------------------

    async def _connect(self) -> Any:
        try:
            return await r.connect(host=self.host, port=self.port, db=self.db, user=self.user,
                                   password=self.password, timeout=CONNECT_TIMEOUT)
        except ReqlAuthError as exc:
            raise StoreError(f"rethinkdb {self.host}:{self.port}: {exc}") from exc
        except (ReqlDriverError, OSError) as exc:
            raise StoreUnavailable(f"rethinkdb {self.host}:{self.port}: {exc}") from exc

    async def _connection(self) -> Any:
        """The next pooled connection, reconnected first if it dropped (the server restarted, say)."""
        if not self._open:
            raise StoreUnavailable("the store is closed")
        slot = next(self._turn)
        conn = self._pool[slot]
        if conn is not None and conn.is_open():
            return conn
        async with self._pool_locks[slot]:  # one reconnect per slot, however many queries wait
            conn = self._pool[slot]
            if conn is None or not conn.is_open():
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(noreply_wait=False)
                conn = await self._connect()
                if not self._open:  # closed while we connected
                    await conn.close(noreply_wait=False)
                    raise StoreUnavailable("the store is closed")
                self._pool[slot] = conn
            return conn

    async def _run(self, query: Any, conn: Any = None) -> Any:
        """Run a query; driver and availability failures become StoreUnavailable."""
        with _translated_errors():
            if conn is None:
                conn = await self._connection()
            # Shielded: the driver resolves the query's future when the answer arrives, and an
            # answer to a cancelled caller would make it close the whole (shared) connection.
            return await asyncio.shield(query.run(conn))

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        self._open = True
        self._pool_locks = [asyncio.Lock() for _ in self._pool]  # made here: they belong to this loop
        try:
            connections = await asyncio.gather(*(self._connect() for _ in self._pool), return_exceptions=True)
            self._pool = [c if not isinstance(c, BaseException) else None for c in connections]
            failed = [c for c in connections if isinstance(c, BaseException)]
            if failed:
                raise failed[0]
            await self._create_schema(self._pool[0])
        except BaseException:
            await self.close()
            raise

    async def _create_schema(self, conn: Any) -> None:
        """Create what is missing; safe when several processes open the same database at once.

        RethinkDB checks a new table's name without a lock: processes creating the same table
        at once all succeed, leaving duplicates that make every use of the name fail as
        "ambiguous".  So a process that created tables, or met a schema error while others
        were at it, settles duplicates (:meth:`_settle_duplicates`) and looks again, until a
        pass finds the whole schema in place.
        """
        settle = False
        failure: StoreUnavailable | None = None
        for _ in range(SCHEMA_ATTEMPTS):
            try:
                if settle:
                    await self._settle_duplicates(conn)
                if await self._create_tables(conn):
                    settle = True  # others may have created the same tables at the same moment
                    continue
                await self._create_indexes(conn)
                return
            except StoreUnavailable as exc:
                # ambiguous names, tables dropped or not ready yet: other processes at work
                if not isinstance(exc.__cause__, ReqlOpFailedError):
                    raise
                settle, failure = True, exc
                await asyncio.sleep(random.uniform(0.05, 0.3))  # let them finish their step
        raise failure or StoreError(f"rethinkdb: the schema of {self.db!r} did not settle")

    async def _create_tables(self, conn: Any) -> bool:
        """Create the database and tables that are missing; whether any table was."""
        if self.db not in await self._run(r.db_list(), conn):
            await self._create(r.db_create(self.db), conn)  # atomic on one server, not across a cluster
        existing = set(await self._run(r.db(self.db).table_list(), conn))
        missing = [t for t in (*TABLES, EVENTS, COUNTERS) if t not in existing]
        await asyncio.gather(*(self._create(r.db(self.db).table_create(t)) for t in missing))
        if missing:
            await self._run(r.db(self.db).wait(wait_for="ready_for_writes"), conn)
        return bool(missing)

    async def _create_indexes(self, conn: Any) -> None:
        # index_create, unlike table_create, refuses a name that exists, even under a race
        for table, indexes in INDEXES.items():
            present = set(await self._run(r.table(table).index_list(), conn))
            await asyncio.gather(*(self._create(r.table(table).index_create(name, function))
                                   for name, (_, function) in indexes.items() if name not in present))
        await asyncio.gather(*(self._run(r.table(table).index_wait()) for table in INDEXES))
        # An existing counter is left alone (the insert reports a conflict).  A database of an
        # earlier version logged every email change under counter "emails": the events counter
        # starts where that one stopped, so the cursors it issued read as pruned (a resume says
        # recovered: false) instead of as events still to come.
        earlier = r.table(COUNTERS).get("emails")["seq"].default(0)
        await self._run(r.table(COUNTERS).insert({"id": EVENTS, "seq": earlier, "pruned": earlier}), conn)

    async def _create(self, query: Any, conn: Any = None) -> None:
        try:
            await self._run(query, conn)
        except StoreUnavailable as exc:
            # another process created it first
            if not (isinstance(exc.__cause__, ReqlOpFailedError) and "already exists" in str(exc.__cause__)):
                raise

    async def _settle_duplicates(self, conn: Any) -> None:
        """Leave one database and one table of each name, never dropping anything that holds data.

        Runs in every process that met duplicates, possibly at once, so each step is idempotent
        and the choice is the same everywhere: the lowest id, unless it is empty and another copy
        is not.  Copies are first renamed out of the way (``NAME_dup_ID``), then dropped if empty;
        one that holds data is kept under that name and logged, for an operator to merge.
        """
        system = r.db("rethinkdb")
        tables_of = system.table("table_config", identifier_format="uuid")  # "db" as an id: names may repeat
        dbs = sorted(await self._run(
            system.table("db_config").filter({"name": self.db})["id"].coerce_to("array"), conn))
        if len(dbs) > 1:
            sizes = {db_id: await self._run(tables_of.filter({"db": db_id}).count(), conn) for db_id in dbs}
            keep = min(dbs, key=lambda db_id: (sizes[db_id] == 0, db_id))
            for db_id in dbs:
                if db_id != keep:
                    aside = _aside(self.db, db_id)
                    await self._run(system.table("db_config").get(db_id).update({"name": aside}), conn)
                    await self._drop_if_empty(conn, self.db, aside, tables_of.filter({"db": db_id}).count(),
                                              r.db_drop(aside))
            return  # the tables are settled on the next pass, once the database name is unique
        if not dbs:
            return
        await self._run(r.db(self.db).wait(wait_for="ready_for_reads", timeout=30), conn)  # new tables too
        entries = await self._run(tables_of.filter({"db": dbs[0]}).pluck("id", "name").coerce_to("array"), conn)
        by_name: dict[str, list[str]] = collections.defaultdict(list)
        for entry in entries:
            by_name[entry["name"]].append(entry["id"])
        for name, ids in by_name.items():
            if ASIDE.match(name):  # left over by a process that stopped half-way
                await self._drop_if_empty(conn, name, name, r.table(name).count(), r.table_drop(name))
            elif len(ids) > 1:
                await self._settle_table(conn, name, sorted(ids))

    async def _settle_table(self, conn: Any, name: str, ids: list[str]) -> None:
        tables_of = r.db("rethinkdb").table("table_config", identifier_format="uuid")
        # The lowest id keeps the name (so the name never goes missing, which would make other
        # processes create it again); the others are renamed apart, so each can be counted.
        first, *others = ids
        for table_id in others:
            await self._run(tables_of.get(table_id).update({"name": _aside(name, table_id)}), conn)
        sizes = {table_id: await self._run(r.table(_aside(name, table_id)).count(), conn) for table_id in others}
        keep = first
        if not await self._run(r.table(name).count(), conn):  # rather a copy that has data, if one has
            keep = min((table_id for table_id in others if sizes[table_id]), default=first)
        if keep != first:
            await self._run(tables_of.get(first).update({"name": _aside(name, first)}), conn)
            await self._run(tables_of.get(keep).update({"name": name}), conn)
        for table_id in ids:
            if table_id != keep:
                aside = _aside(name, table_id)
                await self._drop_if_empty(conn, name, aside, r.table(aside).count(), r.table_drop(aside))

    async def _drop_if_empty(self, conn: Any, name: str, aside: str, size: Any, drop: Any) -> None:
        """Drop a copy renamed out of the way, if ``size`` (counted under that name, which nothing
        else uses) says it is empty; else leave it for an operator."""
        try:
            if await self._run(size, conn):
                log.error("rethinkdb: a duplicate of %r holds data; kept as %r, merge it by hand", name, aside)
                return
            await self._run(drop, conn)
        except StoreUnavailable as exc:
            if "does not exist" not in str(exc):  # else another process dropped it first
                raise
        else:
            log.info("rethinkdb: dropped %r, an empty duplicate of %r left by a concurrent start", aside, name)

    async def close(self) -> None:
        self._open = False
        for feed in list(self._feeds):
            await feed.aclose()
        connections, self._pool = self._pool, [None] * len(self._pool)
        for conn in connections:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(noreply_wait=False)

    async def ping(self) -> bool:
        """Whether the tables answer (a server that just restarted takes connections before its tables are ready)."""
        try:
            await self._run(r.db(self.db).wait(wait_for="ready_for_writes", timeout=2))
            return True
        except StoreError:
            return False

    # -- documents --------------------------------------------------------

    async def get(self, table: str, id: str) -> Doc | None:
        result: Doc | None = await self._run(r.table(_table_name(table)).get(id))
        return _public(result)

    async def insert(self, table: str, doc: Doc) -> Doc:
        doc_id = doc["id"]  # required: RethinkDB would otherwise invent one
        kind = event_kind(None, doc) if table == "emails" else None
        if kind is not None:
            result, changes = await self._insert_event(doc, kind)
        else:
            result, changes = await self._write(table, r.table(_table_name(table)).insert(
                doc, conflict="error", return_changes=True))
        if result["errors"]:
            if "Duplicate primary key" in result.get("first_error", ""):
                raise Conflict(f"{table}/{doc_id} exists")
            raise StoreError(f"insert into {table}: {result.get('first_error')}")
        new = changes[0].new
        assert new is not None  # an insert's change
        return new

    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        patch = _patch(changes)
        conditions = dict(only_if or {})

        def replace(doc: Any) -> Any:
            # One atomic read-modify-write of the document: a claim with only_if cannot race.
            # replace + merge rather than update: r.literal (no deep merge) is not allowed in an
            # update function's branches, but is in merge's argument.
            matched = r.and_(*(doc[k].default(None).eq(r.expr(v)) for k, v in conditions.items())) \
                if conditions else True
            return r.branch(doc.eq(None), None, matched, doc.merge(patch), r.error(NOT_MATCHED))

        # "always": an update that changes nothing still returns the document (and is logged, as in SQLite)
        result, logged = await self._write(table, r.table(_table_name(table)).get(id).replace(
            replace, return_changes="always"))
        if result["errors"]:
            if result.get("first_error") == NOT_MATCHED:
                return None
            raise StoreError(f"update of {table}/{id}: {result.get('first_error')}")
        return logged[0].new if logged else None

    async def delete(self, table: str, id: str) -> Doc | None:
        _, changes = await self._write(table, r.table(_table_name(table)).get(id).delete(return_changes=True))
        return changes[0].old if changes else None

    def _select(self, table: str, where: dict[str, Any]) -> Any:
        """The documents of ``table`` matching ``where``, through a secondary index when one fits:
        every field of the index has an equality or an :class:`In` in ``where``."""
        selection = r.table(_table_name(table))
        rest = where
        for name, (fields, _) in INDEXES.get(table, {}).items():
            choices = [_index_keys(where[f]) if f in where else None for f in fields]
            if not fields or None in choices:
                continue
            keys = [list(key) if len(fields) > 1 else key[0]
                    for key in itertools.product(*(c for c in choices if c is not None))]
            if len(keys) > MAX_INDEX_KEYS:
                continue
            # each key once (repr tells True from 1, as RethinkDB does), or get_all returns a
            # document once per key it matches
            selection = selection.get_all(*{repr(k): k for k in keys}.values(), index=name)
            rest = {f: c for f, c in where.items() if f not in fields}
            break
        predicate = _predicate(rest)
        return selection if predicate is None else selection.filter(predicate)

    async def find(self, table: str, query: Query) -> list[Doc]:
        query.check()
        selection = self._select(table, query.where)
        order = [r.desc(_sort_key(n)) if desc else r.asc(_sort_key(n)) for n, desc in query.order_by]
        ordered = selection.order_by(*order, r.asc("id"))
        if query.offset:
            ordered = ordered.skip(query.offset)
        if query.limit is not None:
            ordered = ordered.limit(query.limit)
        docs: list[Doc] = await self._run(ordered.coerce_to("array"))  # one reply, no cursor to leak
        return [_public(doc) for doc in docs] if table == "emails" else docs

    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        Query(where or {}).check()
        return int(await self._run(self._select(table, where or {}).count()))

    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        Query(where).check()
        selection = self._select(table, where)
        if table != "emails":
            result = await self._run(selection.delete())
            return int(result["deleted"])
        deleted = 0
        while True:  # in batches: each deleted document is returned (to be checked for events)
            result, _ = await self._write(table, selection.limit(DELETE_BATCH).delete(return_changes=True))
            deleted += int(result["deleted"])
            if result["deleted"] < DELETE_BATCH:
                return deleted

    # -- writes and their events ------------------------------------------

    async def _write(self, table: str, write: Any) -> tuple[Doc, list[Change]]:
        """Run a write made with ``return_changes``; its result and its changes.

        For the emails table the same query also records the changes that are
        events, so those come with their kind and cursor (see :func:`_with_events`).
        """
        if table != "emails":
            result = await self._run(write)
            return result, [Change(table, c["old_val"], c["new_val"]) for c in _real_changes(result)]
        reply = await self._run(_with_events(write))
        kinds: list[str | None] = reply["kinds"]
        events = sum(kind is not None for kind in kinds)
        seq = reply["last"] - events  # the seq before this write's first event
        changes = []
        for entry, kind in zip(reply["entries"], kinds):
            old, new = _public(entry["old_val"]), _public(entry["new_val"])
            if kind is None:
                changes.append(Change(table, old, new))
            else:
                seq += 1
                changes.append(Change(table, old, new, str(seq), kind))
        await self._count_events(events, reply["last"])
        return reply["result"], changes

    async def _insert_event(self, doc: Doc, kind: str) -> tuple[Doc, list[Change]]:
        """Insert an email that is an event, stamped as it is inserted (one write less than
        :func:`_with_events`' stamp after the fact); see :func:`_inserted_with_event`."""
        reply = await self._run(_inserted_with_event(doc, kind))
        seq = reply["seq"]
        changes = [Change("emails", None, _public(c["new_val"]), str(seq), kind) for c in _real_changes(reply["result"])]
        if changes:
            await self._count_events(1, seq)
        return reply["result"], changes

    async def _count_events(self, count: int, last: int) -> None:
        """Note ``count`` new events up to seq ``last``; prune the history now and then."""
        if not count:
            return
        self._events_since_prune += count
        if self._events_since_prune >= min(PRUNE_EVERY, self.history_limit):
            self._events_since_prune = 0
            await self._prune(last - self.history_limit)

    async def _prune(self, upto: int) -> None:
        """Drop the events with seq <= ``upto`` (keeping about history_limit)."""
        if upto <= 0:
            return
        try:
            # the mark first: a history read in between may call itself incomplete, never wrongly complete
            await self._run(r.table(COUNTERS).get(EVENTS).update(
                lambda c: {"pruned": r.expr([c["pruned"].default(0), upto]).max()}))
            await self._run(r.table(EVENTS).between(r.minval, upto, right_bound="closed").delete(durability="soft"))
        except StoreError as exc:  # the write itself succeeded; the next prune catches up
            log.warning("pruning the event history failed: %s", exc)

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
        async def start(conn: Any) -> _Feed:
            # only the stamps, and the server's overflow notices (which a plain filter would drop)
            query = r.table("emails").changes().filter(lambda c: c.has_fields("error") | _is_event(c))
            cursor = await self._run(query, conn)  # the feed is live once this returns
            # read after the feed went live: every seq above it is an event the feed will see
            baseline = int(await self._run(r.table(COUNTERS).get(EVENTS)["seq"], conn))
            return _EventFeed(self, "emails", conn, cursor, baseline)

        return await self._feed(start)

    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        _table_name(table)
        Query(where or {}).check()
        predicate = _predicate(where or {})

        def wanted(change: Any) -> Any:
            keep = r.expr(True) if table != "emails" else ~_is_stamp_only(change)  # stamps are the backend's own
            return keep if predicate is None else keep & predicate(change["new_val"])

        async def start(conn: Any) -> _Feed:
            query = r.table(table).changes().filter(lambda c: c.has_fields("error") | wanted(c))
            return _TableFeed(self, table, conn, await self._run(query, conn))

        return await self._feed(start)

    async def _feed(self, start: Callable[[Any], Any]) -> ChangeFeed:
        """A feed started by ``start(conn)`` on a connection of its own: closing it ends the feed."""
        if not self._open:
            raise StoreUnavailable("the store is closed")
        conn = await self._connect()
        try:
            feed: _Feed = await start(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close(noreply_wait=False)
            raise
        self._feeds.add(feed)
        if not self._open:  # closed while the feed started: it must end like the others
            await feed.aclose()
        return feed


@overload
def _public(doc: Doc) -> Doc: ...
@overload
def _public(doc: None) -> None: ...
@overload
def _public(doc: Doc | None) -> Doc | None: ...


def _public(doc: Doc | None) -> Doc | None:
    """A document as callers see it: without the backend's event stamp."""
    if doc is not None and STAMP in doc:
        return {k: v for k, v in doc.items() if k != STAMP}
    return doc


def _real_changes(result: Doc) -> list[Doc]:
    """The entries of a write's ``changes`` that are writes: not errors, not absent documents."""
    return [c for c in result.get("changes", [])
            if "error" not in c and (c.get("old_val") is not None or c.get("new_val") is not None)]


def _event_kind(old: Any, new: Any) -> Any:
    """:func:`gateway.store.base.event_kind` in ReQL: "receipt", "delivery" or None."""
    direction = new["direction"].default(None)
    return r.branch(
        new.eq(None), None,
        r.and_(old.eq(None), direction.eq("in")), "receipt",
        r.and_(direction.eq("out"), new["status"].default(None).eq("delivered"),
               r.or_(old.eq(None), old["status"].default(None).ne("delivered"))), "delivery",
        None,
    )


def _is_event(change: Any) -> Any:
    """Whether a change of the emails feed carries a new event stamp (a new ``_event.seq``)."""
    seq = change["new_val"][STAMP]["seq"].default(None)
    return r.and_(seq.ne(None), seq.ne(change["old_val"][STAMP]["seq"].default(None)))


def _is_stamp_only(change: Any) -> Any:
    """Whether a change of the emails feed only stamps an event on an email written just before
    (an inserted email is stamped as it is inserted: that change is the caller's write)."""
    return r.and_(change["old_val"].ne(None), _is_event(change))


def _take_seqs(count: Any) -> Any:
    """The last of ``count`` new consecutive event seqs, taken from the counter atomically."""
    bumped = r.table(COUNTERS).get(EVENTS).update(
        lambda counter: {"seq": counter["seq"].add(count)}, return_changes=True)
    return bumped["changes"][0]["new_val"]["seq"]


def _logged_or_error(inserted: Any, then: Any) -> Any:
    """``then``, once the insert into the events table went through; else the query fails."""
    return r.branch(inserted["errors"].eq(0), then, r.error(r.expr("events: ").add(inserted["first_error"])))


def _inserted_with_event(doc: Doc, kind: str) -> Any:
    """Insert an email whose insert is an event: ``{result, seq}``.

    The seq is taken, the event logged, then the email inserted with its stamp.  An id that
    exists already is refused as a plain insert would be, without taking a seq; an insert that
    loses a race for the id anyway takes its event back out of the history (the feed then
    skips that seq after :data:`GAP_TIMEOUT`).
    """
    emails = r.table("emails")
    plain = emails.insert(doc, conflict="error", return_changes=True)
    return emails.get(doc["id"]).eq(None).do(lambda free: r.branch(
        free,
        _take_seqs(1).do(lambda seq: r.table(EVENTS).insert(
            {"id": seq, "owner": doc.get("owner"), "kind": kind, "doc": doc},
        ).do(lambda inserted: _logged_or_error(inserted, emails.insert(
            r.expr(doc).merge({STAMP: {"seq": seq, "kind": kind}}), conflict="error", return_changes=True,
        ).do(lambda result: r.branch(
            result["inserted"].eq(1),
            {"result": result, "seq": seq},
            r.table(EVENTS).get(seq).delete().do(lambda _: {"result": result, "seq": None}),
        ))))),
        plain.do(lambda result: {"result": result, "seq": None}),
    ))


def _with_events(write: Any) -> Any:
    """``write`` to emails followed, in the same query, by the recording of the changes that are events.

    The query returns ``{result, entries, kinds, last}``: the write's own result, its changes
    (as :func:`_real_changes` picks them), the event kind of each (or None), and the seq of
    the last event (the events' seqs are consecutive).  When there are events it takes their
    seqs from the counter, appends them to the events table, and then stamps each email, which
    is what the event feed sees.
    """
    def real(change: Any) -> Any:
        return ~change.has_fields("error") & (change["old_val"].ne(None) | change["new_val"].ne(None))

    def record(result: Any, entries: Any, kinds: Any, events: Any) -> Any:
        count = events.count()
        return _take_seqs(count).do(lambda last: r.range(count).map(lambda i: {
            "id": last.sub(count).add(i).add(1),
            "owner": events.nth(i)["doc"]["owner"].default(None),
            "kind": events.nth(i)["kind"],
            "doc": events.nth(i)["doc"],
        }).coerce_to("array").do(lambda logged: r.table(EVENTS).insert(logged).do(lambda inserted: _logged_or_error(
            inserted,
            logged.for_each(lambda e: r.table("emails").get(e["doc"]["id"]).update(
                {STAMP: r.literal({"seq": e["id"], "kind": e["kind"]})})).do(
                lambda _: {"result": result, "entries": entries, "kinds": kinds, "last": last}),
        ))))

    def events_of(entries: Any, kinds: Any) -> Any:
        return r.range(entries.count()).filter(lambda i: kinds.nth(i).ne(None)).map(
            lambda i: {"kind": kinds.nth(i), "doc": entries.nth(i)["new_val"].without(STAMP)}).coerce_to("array")

    return write.do(lambda result: result["changes"].default([]).filter(real).coerce_to("array").do(
        lambda entries: entries.map(lambda c: _event_kind(c["old_val"], c["new_val"])).coerce_to("array").do(
            lambda kinds: events_of(entries, kinds).do(lambda events: r.branch(
                events.count().eq(0), {"result": result, "entries": entries, "kinds": kinds, "last": 0},
                record(result, entries, kinds, events))))))


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Driver errors as store errors: lost connections and unavailable tables are StoreUnavailable."""
    try:
        yield
    except StoreError:
        raise
    except (ReqlDriverError, ReqlAvailabilityError, OSError) as exc:
        raise StoreUnavailable(f"rethinkdb: {exc}") from exc
    except ReqlRuntimeError as exc:
        if "Connection is closed" in str(exc):
            raise StoreUnavailable(f"rethinkdb: {exc}") from exc
        raise StoreError(f"rethinkdb: {exc}") from exc
    except ReqlError as exc:
        raise StoreError(f"rethinkdb: {exc}") from exc


class _Feed(ChangeFeed):
    """A feed on its own connection: closing that connection ends the feed."""

    def __init__(self, store: RethinkStore, table: str, conn: Any, cursor: Any) -> None:
        self._store = store
        self._table = table
        self._conn = conn
        self._cursor = cursor
        self._closed = False

    async def _next_entry(self, timeout: float | None = None) -> Doc | None:
        """The cursor's next item; None after ``timeout`` seconds; StopAsyncIteration once closed."""
        if self._closed:
            raise StopAsyncIteration
        try:
            item: Doc = await self._cursor.next(wait=True if timeout is None else max(timeout, 0.0))
        except ReqlTimeoutError:
            if self._closed:
                raise StopAsyncIteration from None
            return None
        except (ReqlCursorEmpty, ReqlError, OSError) as exc:
            if self._closed or isinstance(exc, ReqlCursorEmpty):
                raise StopAsyncIteration from None
            await self.aclose()
            raise StoreUnavailable(f"rethinkdb change feed on {self._table}: {exc}") from exc
        if "error" in item:  # the server's queue for this feed overflowed: changes were lost
            await self.aclose()
            raise StoreUnavailable(f"rethinkdb change feed on {self._table}: {item['error']}")
        return item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._store._feeds.discard(self)
        with contextlib.suppress(Exception):
            # a waiting __anext__ then gets "Connection is closed" and stops
            await self._conn.close(noreply_wait=False)


class _TableFeed(_Feed):
    """A table's own changefeed: RethinkDB reports each document's changes in commit order."""

    async def __anext__(self) -> Change:
        while True:
            item = await self._next_entry()
            if item is not None:
                return Change(self._table, _public(item.get("old_val")), _public(item.get("new_val")))


class _EventFeed(_Feed):
    """The event stamps of the emails feed, put back in seq order.

    Seqs are taken just before the emails are stamped, so stamps of concurrent writers can
    arrive out of seq order.  A later event is held until the earlier seqs arrive; while it
    waits, the feed looks the missing seqs up in the history (:data:`GAP_CHECKS`) and reports
    those it finds from there, and after the last look it skips the rest.  A stamp arriving
    after its seq was taken from the history is dropped; one arriving after its seq was skipped
    is still delivered, out of order, rather than lost.  Events with seqs taken before the feed
    started are not reported.
    """

    def __init__(self, store: RethinkStore, table: str, conn: Any, cursor: Any, baseline: int) -> None:
        super().__init__(store, table, conn, cursor)
        self._baseline = baseline  # seqs up to here were taken before the feed started
        self._next = baseline + 1  # the seq to deliver next
        self._held: dict[int, Change] = {}
        self._late: collections.deque[Change] = collections.deque()
        self._waiting_since: float | None = None  # when we began holding events back for self._next
        self._looks = 0  # how many GAP_CHECKS have passed since then
        self._recovered: set[int] = set()  # seqs taken from the history whose stamps have not come
        self._skipped: set[int] = set()

    async def __anext__(self) -> Change:
        loop = asyncio.get_running_loop()
        while True:
            if self._late:
                return self._late.popleft()
            change = self._held.pop(self._next, None)
            if change is not None:
                self._next += 1
                self._waiting_since = None
                return change
            timeout = None
            if self._held:
                if self._waiting_since is None:
                    self._waiting_since, self._looks = loop.time(), 0
                timeout = self._waiting_since + GAP_CHECKS[self._looks] - loop.time()
                if timeout <= 0:
                    await self._recover(min(self._held))
                    self._looks += 1
                    if self._looks == len(GAP_CHECKS) and self._next not in self._held:
                        self._skip(min(self._held))
                    continue
            item = await self._next_entry(timeout)
            if item is None:
                continue
            email = item["new_val"]
            stamp = email[STAMP]
            seq = int(stamp["seq"])
            if seq in self._recovered:  # reported (or about to be) from the history
                self._recovered.discard(seq)
            elif seq >= self._next:
                self._held[seq] = Change(self._table, None, _public(email), str(seq), stamp["kind"])
            elif seq in self._skipped:
                self._skipped.discard(seq)
                log.warning("event feed: seq %d arrived after it was skipped; delivered out of order", seq)
                self._late.append(Change(self._table, None, _public(email), str(seq), stamp["kind"]))
            # else: an event that took its seq before the feed started; not this feed's to report

    async def _recover(self, upto: int) -> None:
        """Hold the events of the missing seqs below ``upto`` that the history has."""
        missing = [seq for seq in range(self._next, upto) if seq not in self._held][:DELETE_BATCH]
        if not missing:
            return
        try:
            entries = await self._store._run(r.table(EVENTS).get_all(*missing).coerce_to("array"))
        except StoreUnavailable as exc:
            await self.aclose()
            raise StoreUnavailable(f"rethinkdb event feed: {exc}") from exc
        for entry in entries:
            seq = int(entry["id"])
            self._held[seq] = Change(self._table, None, entry["doc"], str(seq), entry["kind"])
            self._recovered.add(seq)
        if entries:
            log.info("event feed: %d event(s) of seqs %d-%d taken from the history (their stamps were late)",
                     len(entries), missing[0], missing[-1])
        _forget_below(self._recovered, self._next - GAP_MEMORY)

    def _skip(self, resume: int) -> None:
        log.warning("event feed: seqs %d-%d are in neither the feed nor the history after %.1fs; skipped",
                    self._next, resume - 1, GAP_TIMEOUT)
        self._skipped.update(range(max(self._next, resume - GAP_MEMORY), resume))
        _forget_below(self._skipped, resume - GAP_MEMORY)
        self._next, self._waiting_since = resume, None


def _forget_below(seqs: set[int], floor: int) -> None:
    if len(seqs) > GAP_MEMORY:
        seqs.difference_update([seq for seq in seqs if seq < floor])
