"""The store interface that handlers and events speak to.

Documents are JSON-shaped dicts with a string ``id``.  Queries are built from
:class:`Query` with plain equality plus the :class:`In` and :class:`Contains`
operators, so no SQL or ReQL leaks out of the backends.  Every backend passes
the contract suite in ``tests/test_store_contract.py``.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import Any

#: The tables every backend provides.
TABLES: tuple[str, ...] = ("accounts", "usernames", "tokens", "emails", "threads", "labels", "contacts")

#: Field names a query may name; keeps backends free of injection worries.
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

Doc = dict[str, Any]


class StoreError(Exception):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; retrying later may work."""


class Conflict(StoreError):
    """A document with that id already exists."""


@dataclass(frozen=True)
class In:
    """Matches documents whose field equals one of ``values``."""

    values: tuple[Any, ...]

    def __init__(self, values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Contains:
    """Matches documents whose array field contains ``value``."""

    value: Any


@dataclass
class Query:
    """Which documents of a table, in what order, which page.

    ``where`` maps field names to a value (equality), :class:`In` or
    :class:`Contains`.  ``order_by`` is a list of ``(field, descending)``;
    ties are broken by ``id`` so paging is stable.
    """

    where: dict[str, Any] = field(default_factory=dict)
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0

    def check(self) -> None:
        for name in list(self.where) + [name for name, _ in self.order_by]:
            if not FIELD_NAME.match(name):
                raise ValueError(f"bad field name {name!r}")


#: Tables whose changes are kept in a history, each with a cursor.
HISTORY_TABLES: tuple[str, ...] = ("emails",)


@dataclass(frozen=True)
class Change:
    """One write to a watched table: ``old`` is None for an insert, ``new`` for a delete.

    For :data:`HISTORY_TABLES`, ``cursor`` is the change's position in the
    table's history: an opaque string, and cursors of one table compare in
    commit order with :meth:`Store.cursor_key`.
    """

    table: str
    old: Doc | None
    new: Doc | None
    cursor: str | None = None

    @property
    def owner(self) -> str | None:
        doc = self.new if self.new is not None else self.old
        return doc.get("owner") if doc else None


@dataclass
class History:
    """Changes after a cursor, in commit order; ``complete`` is False when older ones were already pruned."""

    changes: list[Change]
    complete: bool


class ChangeFeed(abc.ABC):
    """An open change feed: iterate it for :class:`Change` items; ``aclose()`` drops it."""

    def __aiter__(self) -> "ChangeFeed":
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Change:
        """The next change; ``StopAsyncIteration`` when the store closes."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop the feed and release what it holds."""


class Store(abc.ABC):
    """What handlers and events may ask of storage."""

    #: Whether other gateway processes may use the same store at once (then claims expire, see mail_out).
    shared: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; open change feeds end."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """Whether the store answers right now."""

    @abc.abstractmethod
    async def get(self, table: str, id: str) -> Doc | None:
        """The document with that id, or None."""

    @abc.abstractmethod
    async def insert(self, table: str, doc: Doc) -> Doc:
        """Store a new document (it must have an ``id``); :class:`Conflict` if the id is taken."""

    @abc.abstractmethod
    async def update(self, table: str, id: str, changes: Doc, only_if: dict[str, Any] | None = None) -> Doc | None:
        """Merge ``changes`` into the document's top-level fields; the new document, or None.

        With ``only_if`` (field -> value), the update applies atomically only
        when the document's fields have those values (a claim); else None.
        """

    @abc.abstractmethod
    async def delete(self, table: str, id: str) -> Doc | None:
        """Remove the document; the removed document, or None if absent."""

    @abc.abstractmethod
    async def find(self, table: str, query: Query) -> list[Doc]:
        """The documents matching ``query``, ordered and paged."""

    @abc.abstractmethod
    async def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        """How many documents match ``where``."""

    @abc.abstractmethod
    async def delete_where(self, table: str, where: dict[str, Any]) -> int:
        """Remove every matching document; how many were removed."""

    @abc.abstractmethod
    async def history(self, table: str, owner: str, after: str | None, limit: int) -> History:
        """Up to ``limit`` changes of the owner's documents committed after cursor ``after``
        (None: the oldest kept), in commit order.  Raises ValueError for a malformed cursor."""

    @abc.abstractmethod
    async def latest_cursor(self, table: str) -> str | None:
        """The cursor of the newest change of ``table`` so far (None before the first)."""

    @abc.abstractmethod
    def cursor_key(self, cursor: str) -> Any:
        """A sort key for a cursor of this store: keys compare in commit order."""

    @abc.abstractmethod
    async def changes(self, table: str = "emails") -> ChangeFeed:
        """A feed of every write to ``table`` committed after this returns, in commit order.

        Each call opens an independent feed; it ends when the store closes.
        """
