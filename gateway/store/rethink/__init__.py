"""The RethinkDB backend, split by concern (see :mod:`gateway.store.rethink.store`)."""

from __future__ import annotations

from gateway.store.rethink.pool import r
from gateway.store.rethink.store import RethinkStore

__all__ = ["RethinkStore", "r"]
