"""The embedded store: one SQLite file in WAL mode.

Each table holds ``(id, doc)`` rows with the document as JSON; queries use
SQLite's JSON functions, with expression indexes on the fields that are
filtered most.  An email write that is an event
(:func:`events.model.event_kind`) is also logged to ``changelog`` in
the same transaction; its seq is the event's cursor.

SQL runs inline on the event loop, one statement or transaction at a time: a
query here takes tens of microseconds, far less than handing it to a thread
and back (which measured 0.9-1.5 ms at p50 under load, and cost GIL handoffs
on every call).  Writes are applied in one order, which is also the order the
change feed reports them.  The loop still never waits on the disk: in WAL
mode with ``synchronous=NORMAL`` a commit does not fsync; only checkpoints
do, and those run on a thread of their own (:class:`Checkpointer`).

Durability: WAL with ``synchronous=NORMAL`` keeps every committed write across
a crash of the process (the OS still holds it); a power loss may drop the last
few transactions.  ``synchronous=FULL`` is one option away if that matters.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any, Callable, Sequence, TypeVar

import orjson

from events.model import event_kind
from gateway.store.base import Change, ChangeFeed, History, Store, seq_cursor
from gateway.store.documents import Conflict, Doc, Query, StoreError, StoreUnavailable, matches, public
from gateway.store.schema import TABLES
from gateway.store.sqlite_checkpoint import Checkpointer
from gateway.store.sqlite_rows import dump, json_text, load, transaction, where_sql
from gateway.store.sqlite_schema import LISTED_TABLES, NEXT_SEQ_SQL, connect, json_field

log = logging.getLogger(__name__)
T = TypeVar("T")
#: An event's row in the log, with its seq (:data:`~gateway.store.sqlite_schema.NEXT_SEQ_SQL`).
LOG_EVENT_SQL = f"INSERT INTO changelog (seq, tbl, owner, old, new, kind) VALUES ({NEXT_SEQ_SQL}, ?, ?, ?, ?, ?)"
#: Rows given their listed view per transaction when a database is opened (:meth:`SQLiteStore._fill_listed`).
FILL_BATCH = 500


class SQLiteStore(Store):
    """The default store, in one SQLite file (``:memory:`` works for tests).

    With ``listed`` (table -> the fields a list leaves out, besides ``owner``), each row of those
    tables keeps its listed view, encoded, beside the document: written with it, and made on open
    for rows that lack it (rows written before, or by a store without ``listed``, which leaves it
    NULL) or whose view was made for other fields.  :meth:`find_listed` then reads a page without
    decoding its documents.  A document orjson cannot encode keeps no view (its page is found and
    encoded as before), so a page joined from views is byte for byte what encoding it would give.
    """

    backend = "sqlite"

    def __init__(self, path: str, history_limit: int = 100_000,
                 listed: Mapping[str, Sequence[str]] | None = None) -> None:
        self.path = path
        self.history_limit = history_limit
        self.listed = {table: tuple(hidden) for table, hidden in (listed or {}).items()}
        unknown = set(self.listed) - set(LISTED_TABLES)
        if unknown:
            raise ValueError(f"no listed views for {', '.join(sorted(unknown))}: only {', '.join(LISTED_TABLES)}")
        self._events_since_prune = 0
        self._db: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._feeds: dict[str, set[_Feed]] = {t: set() for t in TABLES}
        self._event_feeds: set[_Feed] = set()

    # -- plumbing ---------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # fn runs whole, without awaiting: its transaction is the only thing on the connection
        if self._db is None:
            raise StoreUnavailable("the store is closed")
        try:
            return fn(self._db)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:  # a constraint or trigger refused the write: it left nothing behind
            raise StoreError(f"sqlite: {exc}") from exc

    def _log(self, db: sqlite3.Connection, table: str, old: Doc | None, new: Doc | None,
             new_text: str | None = None) -> Change:
        """Record an event (inside the write's transaction) and give it its cursor; other writes pass.
        ``new_text``: ``new`` as stored, when the caller has it (not encoded again)."""
        kind = event_kind(old, new) if table == "emails" else None
        if kind is None:
            return Change(table, old, new)
        seq = db.execute(
            LOG_EVENT_SQL,
            (table, new["owner"] if new else None, dump(old), new_text if new_text is not None else dump(new), kind),
        ).lastrowid
        assert seq is not None  # an INSERT's rowid
        self._events_since_prune += 1
        if self._events_since_prune >= min(1000, self.history_limit):  # keep about the last history_limit
            self._events_since_prune = 0
            upto = seq - self.history_limit
            db.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'events_pruned'", (upto,))
            db.execute("DELETE FROM changelog WHERE seq <= ?", (upto,))
        return Change(table, old, new, str(seq), kind)

    def _publish(self, change: Change) -> None:
        """Called right after a commit, so feed order is commit order (and cursor order)."""
        for feed in list(self._feeds[change.table]):
            if feed.where is None or matches(change.new, feed.where):
                feed.queue.put_nowait(change)
        if change.kind is not None:
            for feed in list(self._event_feeds):
                feed.queue.put_nowait(change)

    @staticmethod
    def _read(db: sqlite3.Connection, table: str, id: str) -> Doc | None:
        row = db.execute(f"SELECT doc FROM {table} WHERE id = ?", (id,)).fetchone()
        return load(row[0]) if row else None

    def _listed_view(self, table: str, doc: Doc) -> bytes | None:
        """``doc``'s listed view, encoded; None without ``listed`` for its table, or if orjson refuses
        it (its encoding would then be :mod:`json`'s, with escapes throughout the page: not joinable)."""
        hidden = self.listed.get(table)
        if hidden is None:
            return None
        try:
            return orjson.dumps(public(doc, *hidden))
        except TypeError:  # orjson.JSONEncodeError
            return None

    def _insert_row(self, db: sqlite3.Connection, table: str, id: str, text: str, doc: Doc) -> None:
        """``INSERT`` one row (``doc`` as ``text``), with its listed view where its table keeps one."""
        if table in LISTED_TABLES:
            db.execute(f"INSERT INTO {table} (id, doc, listed) VALUES (?, ?, ?)",
                       (id, text, self._listed_view(table, doc)))
        else:
            db.execute(f"INSERT INTO {table} (id, doc) VALUES (?, ?)", (id, text))

    def _fill_listed(self, db: sqlite3.Connection) -> None:
        """Give every row of a ``listed`` table its view: all of them anew if they were made for other
        fields (``meta`` records which), else those that have none."""
        for table, hidden in self.listed.items():
            name, fields = f"listed {table}", ",".join(hidden)
            with transaction(db):
                row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
                if row is None or row[0] != fields:
                    db.execute(f"UPDATE {table} SET listed = NULL")
                    db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, fields))
            missing = db.execute(f"SELECT count(*) FROM {table} WHERE listed IS NULL").fetchone()[0]
            if missing >= FILL_BATCH:  # (read from the partial index of such rows: no row is read for it)
                log.info("sqlite: making the listed view of %d %s (once, after an upgrade)", missing, table)
            last = ""
            while missing:  # in batches, by id: a large mailbox is neither read at once nor one long transaction
                with transaction(db):
                    rows = db.execute(f"SELECT id, doc FROM {table} WHERE listed IS NULL AND id > ? ORDER BY id "
                                      "LIMIT ?", (last, FILL_BATCH)).fetchall()
                    db.executemany(f"UPDATE {table} SET listed = ? WHERE id = ?",
                                   [(self._listed_view(table, load(text)), id) for id, text in rows])
                if len(rows) < FILL_BATCH:
                    break
                last = rows[-1][0]

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        try:
            db = connect(self.path)
            try:
                self._fill_listed(db)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self.path}: {exc}") from exc
        self._db = db
        if self.path != ":memory:":
            self._checkpointer = Checkpointer(self.path)

    async def close(self) -> None:
        db, self._db = self._db, None
        for feed in [*self._event_feeds, *(f for feeds in self._feeds.values() for f in feeds)]:
            feed.queue.put_nowait(None)
        self._event_feeds.clear()
        for feeds in self._feeds.values():
            feeds.clear()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if db is not None:
            db.close()

    async def ping(self) -> bool:
        try:
            return await self._run(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)
        except StoreUnavailable:
            return False

    # -- documents --------------------------------------------------------

    async def get(self, table: str, id: str) -> Doc | None:
        return await self._run(lambda db: self._read(db, table, id))

    async def insert(self, table: str, doc: Doc) -> Doc:
        text = json_text(doc)

        def insert(db: sqlite3.Connection) -> Doc:
            new = load(text)
            with transaction(db):
                try:
                    self._insert_row(db, table, doc["id"], text, new)
                except sqlite3.IntegrityError:
                    raise Conflict(f"{table}/{doc['id']} exists") from None
                change = self._log(db, table, None, new, text)
            self._publish(change)
            return new

        return await self._run(insert)

    async def insert_with(self, table: str, doc: Doc, *others: tuple[str, Doc],
                          before: Sequence[tuple[str, Doc]] = ()) -> list[str]:
        """As :meth:`Documents.insert_with`, in one transaction: one commit instead of one per
        document.  A taken id fails just its own ``INSERT`` (SQLite undoes that statement, not the
        transaction), so ``before`` and the others are skipped one by one as separate inserts
        would be; a taken ``doc`` commits what ``before`` inserted, then raises :class:`Conflict`.
        Any other failure (an event that cannot be logged) undoes all of it."""
        rows = [(t, d["id"], json_text(d), d) for t, d in (*before, (table, doc), *others)]
        main = len(before)

        def insert_with(db: sqlite3.Connection) -> list[str]:
            changes: list[Change] = []
            taken: list[str] = []
            conflict = False
            with transaction(db):
                for n, (row_table, id, text, row_doc) in enumerate(rows):
                    try:
                        # the view from the document given: it encodes as what ``text`` reads back as
                        self._insert_row(db, row_table, id, text, row_doc)
                    except sqlite3.IntegrityError:
                        if n == main:
                            conflict = True  # the others are not inserted; what went in before stays
                            break
                        if n > main:
                            taken.append(row_table)
                        continue
                    if row_table == "emails" or self._feeds.get(row_table):  # else no one reads the change
                        changes.append(self._log(db, row_table, None, load(text), text))
            for change in changes:
                self._publish(change)
            if conflict:
                raise Conflict(f"{table}/{doc['id']} exists")
            return taken

        return await self._run(insert_with)

    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        def update(db: sqlite3.Connection) -> Doc | None:
            with transaction(db):  # the read and the write see no other writer in between
                old = self._read(db, table, id)
                if old is None or any(old.get(k) != v for k, v in (only_if or {}).items()):
                    return None
                text = json_text({**old, **changes, "id": id})
                new = load(text)  # a copy of its own, as stored
                if table in LISTED_TABLES:
                    db.execute(f"UPDATE {table} SET doc = ?, listed = ? WHERE id = ?",
                               (text, self._listed_view(table, new), id))
                else:
                    db.execute(f"UPDATE {table} SET doc = ? WHERE id = ?", (text, id))
                change = self._log(db, table, old, new, text)
            self._publish(change)
            return new

        return await self._run(update)

    async def delete(self, table: str, id: str) -> Doc | None:
        def delete(db: sqlite3.Connection) -> Doc | None:
            with transaction(db):
                row = db.execute(f"DELETE FROM {table} WHERE id = ? RETURNING doc", (id,)).fetchone()
                if row is None:
                    return None
                old = load(row[0])
                change = self._log(db, table, old, None)
            self._publish(change)
            return old

        return await self._run(delete)

    @staticmethod
    def _find_sql(table: str, query: Query, column: str) -> tuple[str, list[Any]]:
        """The ``SELECT`` of ``column`` for the rows of ``query``, in its order and page, and its parameters."""
        query.check()
        where, params = where_sql(table, query.where)
        order = [f"{json_field(name)} {'DESC' if desc else 'ASC'}" for name, desc in query.order_by]
        sql = f"SELECT {column} FROM {table}{where} ORDER BY {', '.join(order + ['id ASC'])}"
        if query.limit is not None or query.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if query.limit is None else query.limit, query.offset]
        return sql, params

    async def find(self, table: str, query: Query) -> list[Doc]:
        sql, params = self._find_sql(table, query, "doc")
        return await self._run(lambda db: [load(r[0]) for r in db.execute(sql, params)])

    async def find_listed(self, table: str, query: Query) -> list[bytes] | None:
        if table not in self.listed:
            return None
        sql, params = self._find_sql(table, query, "listed")

        def find_listed(db: sqlite3.Connection) -> list[bytes] | None:
            views = [row[0] for row in db.execute(sql, params)]
            return None if None in views else views  # a row without one: the caller finds the page

        return await self._run(find_listed)

    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        Query(where or {}).check()
        clause, params = where_sql(table, where or {})
        return await self._run(lambda db: db.execute(f"SELECT count(*) FROM {table}{clause}", params).fetchone()[0])

    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        Query(where).check()
        clause, params = where_sql(table, where)

        def delete_where(db: sqlite3.Connection) -> int:
            with transaction(db):
                rows = db.execute(f"DELETE FROM {table}{clause} RETURNING doc", params).fetchall()
                changes = [self._log(db, table, load(text), None) for (text,) in rows]
            for change in changes:
                self._publish(change)
            return len(rows)

        return await self._run(delete_where)

    # -- events and change feeds -------------------------------------------

    async def latest_event_cursor(self, owner: str) -> str:
        """The newest cursor of all: one sequence counts every owner's events."""
        seq = await self._run(lambda db: db.execute("SELECT max(seq) FROM changelog").fetchone()[0])
        return str(seq or 0)

    def cursor_key(self, cursor: str, owner: str | None = None) -> int:
        """The seq of a cursor (a decimal number); ValueError for anything else."""
        seq = seq_cursor(cursor)
        if seq is None:
            raise ValueError(f"malformed cursor {cursor[:40]!r}")
        return seq

    async def event_history(self, owner: str, after: str | None, limit: int) -> History:
        start = 0 if after is None else self.cursor_key(after)

        def history(db: sqlite3.Connection) -> History:
            rows = db.execute(
                "SELECT seq, old, new, kind FROM changelog WHERE tbl = 'emails' AND owner = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (owner, start, limit),
            ).fetchall()
            pruned = db.execute("SELECT value FROM meta WHERE name = 'events_pruned'").fetchone()[0]
            changes = [Change("emails", load(old), load(new), str(seq), kind) for seq, old, new, kind in rows]
            return History(changes, complete=after is None or pruned <= start)

        return await self._run(history)

    async def event_feed(self) -> ChangeFeed:
        if self._db is None:
            raise StoreUnavailable("the store is closed")
        return _Feed(self._event_feeds)

    async def changes(self, table: str, where: dict[str, Any] | None = None) -> ChangeFeed:
        if table not in self._feeds:
            raise ValueError(f"unknown table {table!r}")
        if where:
            Query(where).check()
        if self._db is None:
            raise StoreUnavailable("the store is closed")
        return _Feed(self._feeds[table], where or None)


class _Feed(ChangeFeed):
    """An in-process feed: each commit is posted into its queue (filtered by ``where``)."""

    def __init__(self, feeds: set[_Feed], where: dict[str, Any] | None = None) -> None:
        self._feeds = feeds
        self.where = where
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue()
        feeds.add(self)

    async def __anext__(self) -> Change:
        change = await self.queue.get()
        if change is None:
            self._feeds.discard(self)
            raise StopAsyncIteration
        return change

    async def aclose(self) -> None:
        self._feeds.discard(self)
