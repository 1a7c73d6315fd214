"""Change feeds on RethinkDB: a table's own ``.changes()``, and the event feed built from the emails table's stamps."""

from __future__ import annotations

from typing import Any, Callable

from rethinkdb.errors import ReqlCursorEmpty, ReqlError, ReqlTimeoutError

from gateway.store.base import Change, ChangeFeed
from gateway.store.documents import Doc, StoreUnavailable
from gateway.store.ordering import SeqOrder
from gateway.store.rethink.pool import Pool, close_quietly, r
from gateway.store.rethink.recording import EVENTS, STAMP, public


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
        self._on_close(self)
        await close_quietly(self._conn)  # a waiting __anext__ then gets "Connection is closed" and stops


class TableFeed(Feed):
    """A table's own changefeed: RethinkDB reports each document's changes in commit order."""

    async def __anext__(self) -> Change:
        while True:
            item = await self._next_entry()
            if item is not None:
                return Change(self._table, public(item.get("old_val")), public(item.get("new_val")))


class EventFeed(Feed):
    """The event stamps of the emails feed, put back in seq order by :class:`~gateway.store.ordering.SeqOrder`,
    which takes from the history an event whose stamp never comes."""

    def __init__(self, conn: Any, cursor: Any, on_close: Callable[[Feed], None], pool: Pool, baseline: int) -> None:
        super().__init__("emails", conn, cursor, on_close)
        self._pool = pool
        self._order = SeqOrder(self._receive, self._lookup, baseline)

    async def __anext__(self) -> Change:
        return await self._order.next()

    async def _receive(self, timeout: float | None) -> tuple[int, Change] | None:
        item = await self._next_entry(timeout)
        if item is None:
            return None
        email = item["new_val"]
        stamp = email[STAMP]
        seq = int(stamp["seq"])
        return seq, Change(self._table, None, public(email), str(seq), stamp["kind"])

    async def _lookup(self, seqs: list[int]) -> list[tuple[int, Change]]:
        try:
            entries = await self._pool.run(r.table(EVENTS).get_all(*seqs).coerce_to("array"))
        except StoreUnavailable as exc:
            await self.aclose()
            raise StoreUnavailable(f"rethinkdb event feed: {exc}") from exc
        return [(int(e["id"]), Change(self._table, None, e["doc"], str(e["id"]), e["kind"])) for e in entries]
