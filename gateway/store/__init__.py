"""Storage backends behind one interface; :func:`store_from_url` picks one by URL.

Only the backends (:mod:`gateway.store.sqlite`, :mod:`gateway.store.rethink`)
know SQL or ReQL.  Everything else speaks the roles in :mod:`gateway.store.base`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.store.base import Change, ChangeFeed, Documents, EventLog, History, Store
from gateway.store.documents import (Conflict, Contains, Doc, In, Query, StoreError, StoreUnavailable, Substring, matches,
                                    public)
from gateway.store.schema import INDEXES, OWNED_TABLES, TABLES

__all__ = [
    "INDEXES", "OWNED_TABLES", "TABLES", "Change", "ChangeFeed", "Conflict", "Contains", "Doc", "Documents",
    "EventLog", "History", "In", "Query", "Store", "StoreError", "StoreUnavailable", "Substring", "matches", "public",
    "sqlite_path", "store_from_url",
]


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:PATH`` (or ``sqlite://PATH``) store URL, else None."""
    if not url.startswith("sqlite:"):
        return None
    path = url[len("sqlite:"):]
    return path[2:] if path.startswith("//") else path


def store_from_url(url: str, history_limit: int = 100_000,
                   listed: Mapping[str, Sequence[str]] | None = None) -> Store:
    """The backend for a store URL (``sqlite:PATH`` or ``rethinkdb://HOST:PORT/DB``), keeping about
    ``history_limit`` events; not yet opened.  ValueError for a URL it cannot use.

    ``listed`` (table -> the fields a list leaves out): the views :meth:`Documents.find_listed`
    gives, which SQLite keeps; RethinkDB keeps none (its callers find and encode the documents).
    """
    path = sqlite_path(url)
    if path is not None:
        from gateway.store.sqlite import SQLiteStore

        return SQLiteStore(path, history_limit, listed)
    if url.startswith("rethinkdb://"):
        from gateway.store.rethink import RethinkStore

        return RethinkStore.from_url(url, history_limit)
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:PATH or rethinkdb://HOST:PORT/DB")
