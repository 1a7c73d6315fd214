"""Storage backends behind one interface; :func:`open_store` picks one by URL."""

from __future__ import annotations

from gateway.store.base import TABLES, Change, ChangeFeed, Conflict, Contains, Doc, In, Query, Store, StoreError, StoreUnavailable

__all__ = [
    "TABLES", "Change", "ChangeFeed", "Conflict", "Contains", "Doc", "In", "Query", "Store", "StoreError",
    "StoreUnavailable", "store_from_url",
]


def store_from_url(url: str) -> Store:
    """The backend for a store URL (``sqlite:PATH``); not yet opened."""
    if url.startswith("sqlite:"):
        from gateway.store.sqlite import SQLiteStore

        path = url[len("sqlite:"):]
        return SQLiteStore(path[2:] if path.startswith("//") else path)
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:PATH or rethinkdb://HOST:PORT/DB")
