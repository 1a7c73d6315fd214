"""The SQLite store's schema: tables by versioned migrations, indexes made from the one declaration,
and the event rule's SQL mirror (the migration that converted older logs uses it)."""

from __future__ import annotations

import logging
import sqlite3

from gateway.store.schema import INDEXES, TABLES

log = logging.getLogger("gateway.store.sqlite")


#: The tables whose rows may keep their listed view, encoded, beside the document (a ``listed`` column).
LISTED_TABLES: tuple[str, ...] = ("emails",)


def json_field(name: str) -> str:
    """A document field in SQL (documents are JSON text in ``doc``)."""
    return f"json_extract(doc, '$.{name}')"


#: :func:`events.model.event_kind` in SQL, over the JSON text columns ``old`` and ``new``
#: (used by migration 3; ``tests/test_event_rule.py`` holds it to the rule).
EVENT_KIND_SQL = (
    "CASE"
    " WHEN new IS NULL THEN NULL"
    " WHEN old IS NULL AND json_extract(new, '$.direction') = 'in' THEN 'receipt'"
    " WHEN json_extract(new, '$.direction') IS NOT 'out' THEN NULL"
    " WHEN json_extract(new, '$.status') = 'delivered'"
    "  AND (old IS NULL OR json_extract(old, '$.status') IS NOT 'delivered') THEN 'delivery'"
    " WHEN json_extract(new, '$.status') = 'failed'"
    "  AND (old IS NULL OR json_extract(old, '$.status') IS NOT 'failed') THEN 'failed'"
    " WHEN json_extract(new, '$.status') = 'queued' AND old IS NOT NULL"
    "  AND coalesce(json_extract(new, '$.attempts'), 0) > coalesce(json_extract(old, '$.attempts'), 0)"
    "  THEN 'deferred' END"
)


#: Indexes of this backend only, for order: an account's email list (``/emails``, newest first) reads
#: its page in ``created`` order from the index instead of sorting every one of the account's emails
#: (a page of a 5,000-email mailbox: 8.7 ms without it, 65 µs with it, on this project's machine);
#: newest first and ties by ascending id, the list's own order, so SQLite does not sort even the
#: page's rows by id (a 20-email page of a 40-email mailbox: 37 -> 17 µs).  A field written
#: ``-name`` is descending; ``id`` is the row's id column (the document's id).
#: A thread's emails are read in ``created`` order too: with no index that also gives that order,
#: SQLite's planner (which has no statistics) read them from ``owner_created``, the account's whole
#: mailbox (4.3 ms for a 3,000-email one, against 36 µs): so that index ends with ``created``, and
#: ``owner_thread``, which it begins with, is not made (:func:`index_statements`).
ORDER_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    "emails": {
        "owner_created_id": ("owner", "-created", "id"),
        "owner_thread_created": ("owner", "thread", "created"),
    },
}


#: Indexes of :data:`~gateway.store.schema.INDEXES` that SQLite keeps for some rows only (partial
#: indexes): table -> index name -> the fields and values a row has to be in it.  Every query that reads
#: the index asks for those values too, and SQLite uses the partial index for them (it compares a bound
#: parameter's value with the index's ``WHERE``).  ``emails``' ``status``: only the delivery queue
#: reads it, for outbound emails (``{"direction": "out", "status": ...}``), so an inbound email, which
#: is most of what is stored, writes no page of it.
PARTIAL_INDEXES: dict[str, dict[str, dict[str, str]]] = {
    "emails": {"status": {"direction": "out"}},
}


#: Indexes an older version made and this one does not: dropped on open (every stored row writes them).
RETIRED_INDEXES = ("emails_owner_created", "emails_status")


def index_term(field: str) -> str:
    """An index's term for a field of :data:`ORDER_INDEXES` (``-name``: descending; ``id``: the id column)."""
    name = field.removeprefix("-")
    term = "id" if name == "id" else json_field(name)
    return f"{term} DESC" if field.startswith("-") else term


def index_name(table: str, name: str) -> str:
    """The SQLite name of a declared index: ``TABLE_NAME``, and for a partial one (:data:`PARTIAL_INDEXES`)
    the values it keeps after it (``emails_status_out``), so the full index of an older version is not
    taken for it."""
    values = PARTIAL_INDEXES.get(table, {}).get(name)
    return "_".join((table, name, *values.values())) if values else f"{table}_{name}"


def partial_clause(table: str, name: str) -> str:
    """The ``WHERE`` of a partial index (:data:`PARTIAL_INDEXES`), or nothing."""
    values = PARTIAL_INDEXES.get(table, {}).get(name)
    if not values:
        return ""
    assert all("'" not in value for value in values.values()), "values are SQL string literals"
    return " WHERE " + " AND ".join(f"{json_field(field)} = '{value}'" for field, value in values.items())


def declared_indexes() -> dict[str, dict[str, tuple[str, ...]]]:
    """Table -> index name -> fields: :data:`~gateway.store.schema.INDEXES` and :data:`ORDER_INDEXES`."""
    tables: dict[str, dict[str, tuple[str, ...]]] = {}
    for declared in (INDEXES, ORDER_INDEXES):
        for table, indexes in declared.items():
            tables.setdefault(table, {}).update(indexes)
    return tables


def index_statements() -> list[str]:
    """``CREATE INDEX`` for every index :func:`declared_indexes` names, as :func:`index_name` on the
    fields' JSON values (for some rows only: :data:`PARTIAL_INDEXES`); run on every open (each is IF NOT EXISTS, so a database made before an index
    was declared gets it on its next open).

    An index whose fields begin another index of its table (``emails``: ``owner``, which
    ``owner_created_id`` and two more begin with) is not made, and dropped from a database made
    before: SQLite reads that prefix of the longer index as well, and every stored row would
    otherwise write one more index page.  So are :data:`RETIRED_INDEXES`.
    """
    statements = [f"DROP INDEX IF EXISTS {name}" for name in RETIRED_INDEXES]
    for table, indexes in declared_indexes().items():
        for name, fields in indexes.items():
            if any(other[:len(fields)] == fields and len(other) > len(fields) for other in indexes.values()):
                statements.append(f"DROP INDEX IF EXISTS {index_name(table, name)}")
            else:
                statements.append(f"CREATE INDEX IF NOT EXISTS {index_name(table, name)} ON {table} "
                                  f"({', '.join(index_term(f) for f in fields)}){partial_clause(table, name)}")
    return statements


#: Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran.
#: The secondary indexes are not here: :func:`index_statements` makes them from the schema.
MIGRATIONS: list[list[str]] = [
    [f"CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, doc TEXT NOT NULL)" for t in TABLES],
    [
        # The change history of emails, written in the transaction of each write:
        # seq is the cursor, so history and feed agree on one commit order.
        "CREATE TABLE IF NOT EXISTS changelog (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
        "owner TEXT, old TEXT, new TEXT)",
        "CREATE INDEX IF NOT EXISTS changelog_owner ON changelog (tbl, owner, seq)",
    ],
    [
        # The changelog keeps events only (see events.model.event_kind), each with its kind; the
        # highest pruned seq is kept in meta, so history can tell pruned from never logged.
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
        "INSERT OR IGNORE INTO meta VALUES ('events_pruned', (SELECT coalesce(min(seq) - 1, 0) FROM changelog))",
        "ALTER TABLE changelog ADD COLUMN kind TEXT",
        f"UPDATE changelog SET kind = {EVENT_KIND_SQL}",
        "DELETE FROM changelog WHERE kind IS NULL",
    ],
    [
        "CREATE TABLE IF NOT EXISTS idempotency (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    ],
    [
        "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    ],
    [
        # each email's listed view, encoded (SQLiteStore's ``listed``): a list page joins these
        # instead of decoding and encoding its rows; NULL until written (filled on open)
        *(f"ALTER TABLE {table} ADD COLUMN listed BLOB" for table in LISTED_TABLES),
    ],
    [
        # the rows without a listed view, so opening a database finds them without reading every row
        # (:meth:`SQLiteStore._fill_listed`); a row written with its view adds nothing to it
        *(f"CREATE INDEX IF NOT EXISTS {table}_unlisted ON {table} (id) WHERE listed IS NULL"
          for table in LISTED_TABLES),
    ],
    [
        # changelog without AUTOINCREMENT, whose counter (a row of sqlite_sequence) was one more page
        # every event wrote; seqs are still never given twice (:data:`NEXT_SEQ_SQL`): the highest the
        # counter gave is kept in meta (rows after the highest kept may have been deleted by migration 3)
        "CREATE TABLE changelog_new (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, owner TEXT, old TEXT, new TEXT, "
        "kind TEXT)",
        "INSERT INTO changelog_new (seq, tbl, owner, old, new, kind) SELECT seq, tbl, owner, old, new, kind FROM changelog",
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('events_given', "
        "(SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'changelog'))",
        "DROP TABLE changelog",
        "ALTER TABLE changelog_new RENAME TO changelog",
        "CREATE INDEX IF NOT EXISTS changelog_owner ON changelog (tbl, owner, seq)",
    ],
]

#: The seq of the next event: after the highest in ``changelog``, and after any it ever held, so a
#: cursor a client has is never given to another event, even once pruning emptied the table (the
#: highest pruned is meta's ``events_pruned``) or for rows of an older version's counter
#: (``events_given``, migration 8).  SQLite's rowid alone would take the highest in the table.
#: (Two lookups by name: 1.5 us an insert, where one ``IN`` with an aggregate took 3.)
#: (SQL's ``max`` of a NULL is NULL: hence each ``coalesce``.)
NEXT_SEQ_SQL = ("max(coalesce((SELECT max(seq) FROM changelog), 0), "
                "coalesce((SELECT value FROM meta WHERE name = 'events_pruned'), 0), "
                "coalesce((SELECT value FROM meta WHERE name = 'events_given'), 0)) + 1")


def connect(path: str) -> sqlite3.Connection:
    """The connection, with the schema migrated to the latest version."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        _prepare(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: str) -> None:
    """Set the connection up, migrate the schema, and make the declared indexes."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    # checkpoints (the only fsyncs) run on the checkpointer's thread, not in a commit on the loop
    db.execute("PRAGMA wal_autocheckpoint=0")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        for statement in statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
        log.info("sqlite %s: schema migrated to version %d", path, number)
    for statement in index_statements():
        db.execute(statement)
