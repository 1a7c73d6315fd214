"""Documents as rows of the SQLite store: the JSON text stored and read back, ``where`` as SQL, and
the one write transaction every write runs in."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Iterator, overload

from gateway import jsontext
from gateway.store.documents import Contains, Doc, In, Substring
from gateway.store.sqlite_schema import json_field


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (the connection is in autocommit mode otherwise).

    Only inside the synchronous function :meth:`~gateway.store.sqlite.SQLiteStore._run` calls: with no await between
    ``BEGIN`` and ``COMMIT`` no other task's statement can join it.  One already open would mean
    that rule was broken, so it is refused rather than joined.
    """
    if db.in_transaction:
        raise RuntimeError("a write transaction is open already: another task's write would join it")
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def json_text(value: Any) -> str:
    """JSON as stored: compact, by :func:`gateway.jsontext.dumps` (orjson: non-ASCII characters as
    they are; what it refuses, with ``\\uXXXX`` escapes), which is 6-8x faster than the standard
    library's encoder. Rows written before, with escapes, read back the same."""
    return jsontext.dumps(value).decode()


def dump(doc: Doc | None) -> str | None:
    """A document (or None) as stored."""
    return None if doc is None else json_text(doc)


@overload
def load(text: str) -> Doc: ...
@overload
def load(text: None) -> None: ...
@overload
def load(text: str | None) -> Doc | None: ...


def load(text: str | None) -> Doc | None:
    """A stored document (or None) read back."""
    return None if text is None else jsontext.loads(text)


def _bindable(value: Any) -> Any:
    # json_extract returns JSON objects/arrays as text; compare like with like.
    return json_text(value) if isinstance(value, (dict, list)) else value


def where_sql(table: str, where: dict[str, Any]) -> tuple[str, list[Any]]:
    """``where`` as an SQL ``WHERE`` clause (or nothing) on ``table``'s documents, and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, cond in where.items():
        if isinstance(cond, In):
            if not cond.values:
                clauses.append("0")
                continue
            clauses.append(f"{json_field(name)} IN ({','.join('?' * len(cond.values))})")
            params.extend(_bindable(v) for v in cond.values)
        elif isinstance(cond, Contains):
            clauses.append(f"EXISTS (SELECT 1 FROM json_each({table}.doc, '$.{name}') WHERE value = ?)")
            params.append(_bindable(cond.value))
        elif isinstance(cond, Substring):  # a scan of the rows the other conditions leave
            clauses.append(f"json_type({table}.doc, '$.{name}') = 'text' AND instr({json_field(name)}, ?) > 0")
            params.append(cond.value)
        elif cond is None:
            clauses.append(f"{json_field(name)} IS NULL")
        else:
            clauses.append(f"{json_field(name)} = ?")
            params.append(_bindable(cond))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
