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

from gateway.store.base import Change, ChangeFeed
from gateway.store.documents import StoreError

log = logging.getLogger(__name__)

FIRST_RETRY = 0.1
MAX_RETRY = 5.0


OnChange = Callable[[Change], Awaitable[None]]
OnResume = Callable[[], Awaitable[None]]


OpenFeed = Callable[[], Awaitable[ChangeFeed]]


class Follower:
    """One feed shared by its readers: each reader's ``on_change`` gets every change, and its
    ``on_resume`` is called after an outage, for as long as the follower runs.

    ``open_feed`` opens the feed, e.g. ``store.event_feed`` or
    ``lambda: store.changes("emails", where)``; ``name`` is what the logs call it.
    """

    def __init__(self, open_feed: OpenFeed, name: str) -> None:
        self.open_feed = open_feed
        self.name = name
        self.readers: list[tuple[str, OnChange, OnResume | None]] = []
        self._feed: ChangeFeed | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Whether the feed is open now (False while the store is away and it is being reopened).
        self.live = False
        #: How many times the feed was opened: a reader that keeps state can tell it was reopened
        #: (and may have missed changes meanwhile) even if it never saw it down.
        self.opened = 0
        #: Called after each reopening (metrics count them).
        self.on_reconnect: Callable[[str], None] | None = None

    def add(self, reader: str, on_change: OnChange, on_resume: OnResume | None = None, *,
            first: bool = False) -> "Follower":
        """Register a reader (before :meth:`start`); readers get each change in turn, ``first`` ones
        before the rest (a cache whose invalidation the others' effects must not overtake)."""
        entry = (reader, on_change, on_resume)
        if first:
            self.readers.insert(0, entry)
        else:
            self.readers.append(entry)
        return self

    async def start(self) -> None:
        """Open the feed (live when this returns) and follow it in the background."""
        self._feed = await self.open_feed()
        self.opened += 1
        self.live = True
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self.live = False
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
                    for reader, on_change, _ in self.readers:  # one reader's failure is not another's
                        try:
                            await on_change(change)
                        except StoreError as exc:
                            log.warning("%s (%s): store error while handling a change: %s", self.name, reader, exc)
                        except Exception:
                            log.exception("%s (%s): handling a change failed", self.name, reader)
            except StoreError as exc:
                log.warning("%s lost: %s", self.name, exc)
            self.live = False
            if self._stopping:
                return
            await self._reopen()

    async def _reopen(self) -> None:
        delay = FIRST_RETRY
        while not self._stopping:
            try:
                self._feed = await self.open_feed()
            except StoreError as exc:
                log.info("%s: store still unavailable (%s); retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
                continue
            log.info("%s: reconnected", self.name)
            self.opened += 1
            self.live = True
            if self.on_reconnect is not None:
                self.on_reconnect(self.name)
            for reader, _, on_resume in self.readers:
                if on_resume is None:
                    continue
                try:
                    await on_resume()
                except StoreError as exc:  # gone again: the feed will end and we come back here
                    log.warning("%s (%s): catching up failed: %s", self.name, reader, exc)
                except Exception:
                    log.exception("%s (%s): catching up failed", self.name, reader)
            return


class FeedGuard:
    """Whether what a cache kept from the store may be used: while every feed it watches is live and
    has not been reopened since the entries were made (a reopened feed may have missed changes).

    ``clear`` empties the cache; :meth:`trusted` calls it whenever that stops holding.  A cache
    notes every invalidation with :meth:`invalidated`, and keeps what it read from the store only
    if :attr:`invalidations` is what it was before the read (the read did not straddle one).
    """

    def __init__(self, clear: Callable[[], None]) -> None:
        self.clear = clear
        self.feeds: list[Follower] = []
        self._epoch: tuple[int, ...] | None = None
        #: Bumped by every invalidation (and every loss of trust).
        self.invalidations = 0

    def trusted(self) -> bool:
        """Whether kept entries may be used now (clearing them all when not)."""
        if not self.feeds:
            return False
        live = all(feed.live for feed in self.feeds)
        epoch = tuple(feed.opened for feed in self.feeds)
        if live and epoch == self._epoch:
            return True
        self.clear()
        self.invalidations += 1
        self._epoch = epoch if live else None
        return live

    def invalidated(self) -> None:
        """Note that an entry was dropped: a store read in progress must not keep what it read."""
        self.invalidations += 1
