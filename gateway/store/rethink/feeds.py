"""Change feeds on RethinkDB: a table's own ``.changes()``, and the event feed built from the emails table's stamps."""

from __future__ import annotations

from typing import Any, Callable

from rethinkdb.errors import ReqlCursorEmpty, ReqlError

from gateway.store.base import Change, ChangeFeed
from gateway.store.documents import Doc, StoreUnavailable
from gateway.store.rethink.cursors import cursor as event_cursor
from gateway.store.rethink.pool import close_quietly
from gateway.store.rethink.recording import STAMP, public


class Feed(ChangeFeed):
    """A feed on its own connection: closing that connection ends the feed.

    ``on_close`` is told once, so the store can forget the feed.
    """

    def __init__(self, table: str, conn: Any, cursor: Any, on_close: Callable[["Feed"], None]) -> None:
        self._table = table
        self._conn = conn
        self._cursor = cursor
        self._on_close = on_close
        self._closed = False

    async def _next_entry(self) -> Doc:
        """The cursor's next item; StopAsyncIteration once closed."""
        if self._closed:
            raise StopAsyncIteration
        try:
            item: Doc = await self._cursor.next(wait=True)
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
        self._on_close(self)
        await close_quietly(self._conn)  # a waiting __anext__ then gets "Connection is closed" and stops


class TableFeed(Feed):
    """A table's own changefeed: RethinkDB reports each document's changes in commit order."""

    async def __anext__(self) -> Change:
        item = await self._next_entry()
        return Change(self._table, public(item.get("old_val")), public(item.get("new_val")))


class EventFeed(Feed):
    """The event stamps of the emails feed (see :mod:`~gateway.store.rethink.recording`)."""

    def __init__(self, conn: Any, cursor: Any, on_close: Callable[[Feed], None]) -> None:
        super().__init__("emails", conn, cursor, on_close)

    async def __anext__(self) -> Change:
        email = (await self._next_entry())["new_val"]
        stamp, owner = email[STAMP], email["owner"]
        return Change("emails", None, public(email), event_cursor(owner, stamp["seq"]), stamp["kind"])
