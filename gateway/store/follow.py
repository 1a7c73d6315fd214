"""Following a change feed across store outages.

A feed ends when the store goes away (a RethinkDB restart, a dropped
connection).  :class:`Follower` reopens it with capped exponential backoff and
then calls the reader's ``on_resume``, so the reader can catch up on what
happened while the feed was down (from history, or by re-reading state);
anything it sees twice it must recognise (cursors, idempotent checks).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from gateway.store.base import Change, ChangeFeed, Store, StoreError

log = logging.getLogger(__name__)

FIRST_RETRY = 0.1
MAX_RETRY = 5.0


class Follower:
    """Calls ``on_change`` for every change of ``table``, for as long as it runs."""

    def __init__(self, store: Store, table: str, on_change: Callable[[Change], Awaitable[None]],
                 on_resume: Callable[[], Awaitable[None]] | None = None, name: str = "") -> None:
        self.store = store
        self.table = table
        self.on_change = on_change
        self.on_resume = on_resume
        self.name = name or f"{table} feed"
        self.connected = asyncio.Event()
        self._feed: ChangeFeed | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Open the feed (live when this returns) and follow it in the background."""
        self._feed = await self.store.changes(self.table)
        self.connected.set()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._feed is not None:
            await self._feed.aclose()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                assert self._feed is not None
                async for change in self._feed:
                    try:
                        await self.on_change(change)
                    except StoreError as exc:
                        log.warning("%s: store error while handling a change: %s", self.name, exc)
                    except Exception:
                        log.exception("%s: handling a change failed", self.name)
            except StoreError as exc:
                log.warning("%s lost: %s", self.name, exc)
            if self._stopping:
                return
            self.connected.clear()
            await self._reopen()

    async def _reopen(self) -> None:
        delay = FIRST_RETRY
        while not self._stopping:
            try:
                self._feed = await self.store.changes(self.table)
            except StoreError as exc:
                log.info("%s: store still unavailable (%s); retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            log.info("%s: reconnected", self.name)
            self.connected.set()
            if self.on_resume is not None:
                try:
                    await self.on_resume()
                except StoreError as exc:  # gone again: the feed will end and we come back here
                    log.warning("%s: catching up failed: %s", self.name, exc)
                except Exception:
                    log.exception("%s: catching up failed", self.name)
            return
