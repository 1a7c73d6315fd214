"""Delivers the store's events to the subscribers bound to their account.

It follows the store's event feed (:meth:`~gateway.store.EventLog.event_feed`),
never the handlers: the store itself picks the writes that are events (by the
rule in :mod:`events.model`), so no other change reaches this process.  Each
event carries its cursor and is sent to every subscriber bound to the account,
at most once and in cursor order.  Cursors are per account: a binding
remembers the last one it was sent (or passed over), and nothing at or before
it is sent again.

Binding (:meth:`EventDispatcher.attach`): live events for the binding are held
back while its starting point is read (the account's newest cursor) and, with
``since``, while its history after ``since`` is replayed; then the held events
newer than the last replayed one follow.  History and feed share cursors, so
there is no gap and no duplicate even for events that happen during the replay.

A store whose cursors are consecutive per account (``EventLog.consecutive``)
may report an account's events out of order.  An event that skips one is held
back until the ones in between arrive, or for at most :data:`GAP_WAIT` seconds;
then those are read from the history (where each is before any later event of
its account is reported) and everything is sent in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

from events.model import Event
from events.subscriptions import Binding, SubscriptionRegistry
from gateway.metrics import Metrics
from gateway.store import Change, EventLog, History, StoreError
from gateway.store.follow import Follower

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
#: How long an event that skipped one waits for it on the feed before the history is read.
GAP_WAIT = 0.05

#: ``announce(cursor, recovered)``: the binding's starting cursor, and with ``since`` whether the replay is whole.
Announce = Callable[[str, "bool | None"], None]


class EventDispatcher:
    """Follows the store's event feed and delivers events to the registry's bindings."""

    def __init__(self, store: EventLog, registry: SubscriptionRegistry, metrics: Metrics | None = None) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.feed = Follower(store.event_feed, "event feed").add("events", self._changed, self._catch_up)
        self._refills: set[asyncio.Task[None]] = set()
        #: The delivered-events counter of each kind, looked up once (``labels`` takes a lock and
        #: checks its arguments on every call, and it was called for every event sent)
        self._delivered: dict[str, Any] = {}
        #: Events sent and not yet added to those counters, by kind: added once per event routed (or
        #: replay) rather than once per session, since ``inc`` takes a lock (0.4 us a call)
        self._uncounted: dict[str, int] = {}

    async def start(self) -> None:
        """Follow the feed (live when this returns)."""
        await self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()
        for task in list(self._refills):
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)

    async def _changed(self, change: Change) -> None:
        self.route(change)

    def route(self, change: Change) -> None:
        event = change.event()
        if event is not None and self.metrics is not None:
            lag = event.age()
            if lag is not None:
                self.metrics.event_lag.observe(lag)
        if event is not None and event.owner is not None:
            key = self.store.cursor_key(event.cursor)
            for binding in self.registry.bindings(event.owner):
                self.deliver(binding, event, key)
            self._count()

    def _count(self) -> None:
        """Add the events sent since the last call to the delivered-events counters."""
        uncounted = self._uncounted
        if not uncounted:
            return
        if self.metrics is not None:
            for kind, sent in uncounted.items():
                counter = self._delivered.get(kind)
                if counter is None:
                    counter = self._delivered[kind] = self.metrics.events.labels(kind)
                counter.inc(sent)
        uncounted.clear()

    async def _catch_up(self) -> None:
        """After the feed was down: each bound account's events after the earliest cursor its bindings
        reached, in order (each binding skips what it had)."""
        accounts = self.registry.accounts()
        for account_id in accounts:
            reached = [(b.last_key, b.cursor) for b in self.registry.bindings(account_id) if b.cursor is not None]
            if not reached:
                continue
            since = min(reached, key=lambda position: position[0])[1]
            async for page in self._history(account_id, since):
                for change in page.changes:
                    self.route(change)
        log.info("event feed caught up on %d bound account(s)", len(accounts))

    async def _history(self, account_id: str, after: str | None) -> AsyncIterator[History]:
        """The account's changes after cursor ``after``, page by page."""
        while True:
            page = await self.store.event_history(account_id, after, REPLAY_PAGE)
            yield page
            if len(page.changes) < REPLAY_PAGE:
                return
            after = page.changes[-1].cursor

    def deliver(self, binding: Binding, event: Event, key: Any) -> None:
        """Send one live event to one binding, or hold it back while the binding replays (or an
        earlier event of the account is on its way)."""
        if binding.held is not None:
            binding.held.append((key, event))
            if binding.gap is not None:
                self._send_what_follows(binding)
        elif self.store.consecutive and binding.last_key is not None and key > binding.last_key + 1:
            binding.held = [(key, event)]
            binding.gap = asyncio.get_running_loop().call_later(GAP_WAIT, self._fill_gap, binding)
        else:
            self._send(binding, event, key)

    def _send_what_follows(self, binding: Binding) -> None:
        """While waiting for a skipped event: send the held ones that now follow on, in order; once
        none is left, stop waiting."""
        held = binding.held or []
        held.sort(key=lambda item: item[0])
        while held and held[0][0] <= binding.last_key + 1:
            key, event = held.pop(0)
            self._send(binding, event, key)
        if not held and binding.gap is not None:
            binding.gap.cancel()
            binding.gap = binding.held = None

    def _fill_gap(self, binding: Binding) -> None:
        """The skipped events did not come on the feed in time: read them from the history."""
        binding.gap = None
        task = asyncio.ensure_future(self._replay_gap(binding))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    def _send(self, binding: Binding, event: Event, key: Any) -> None:
        """Send, unless sent (or replayed past) already or not a kind the binding asked for."""
        if binding.last_key is not None and key <= binding.last_key:
            return
        binding.last_key, binding.cursor = key, event.cursor
        if binding.events is None or event.kind in binding.events:
            binding.subscriber.send_event(event.rendered(binding.detail))
            self._uncounted[event.kind] = self._uncounted.get(event.kind, 0) + 1  # (see _count)

    async def _replay(self, binding: Binding, after: str | None, announce: Callable[[bool], None] | None = None) -> None:
        """Send the binding's events after cursor ``after`` from the history (``announce(complete)``
        once the first page is read), then what was held back meanwhile, in cursor order."""
        try:
            first = True
            async for page in self._history(binding.account_id, after):
                if first and announce is not None:
                    announce(page.complete)
                first = False
                if self.registry.binding(binding.subscriber) is not binding:
                    return  # unsubscribed, rebound or closed during the replay
                for change in page.changes:
                    event = change.event()
                    if event is not None:
                        self._send(binding, event, self.store.cursor_key(event.cursor))
        finally:
            held = self._take_held(binding)
        for key, event in held:
            self._send(binding, event, key)
        self._count()

    def _release(self, binding: Binding) -> None:
        """Deliver, in cursor order, what was held back for the binding."""
        for key, event in self._take_held(binding):
            self.deliver(binding, event, key)
        self._count()

    @staticmethod
    def _take_held(binding: Binding) -> list[tuple[Any, Event]]:
        """What was held back for the binding, in cursor order; it holds nothing back from now on."""
        held, binding.held = binding.held or [], None
        return sorted(held, key=lambda item: item[0])

    async def _replay_gap(self, binding: Binding) -> None:
        try:
            await self._replay(binding, binding.cursor)
        except StoreError as exc:  # what was held is sent anyway (the gap stays: the store is away)
            log.warning("reading the events an event skipped failed: %s", exc)

    async def attach(self, binding: Binding, since: str | None, announce: Announce, newest: str | None = None) -> None:
        """Start a new binding: after ``since`` (its history replayed first), or after the
        account's newest event.  ``announce(cursor, recovered)`` is called before any event is
        sent, with the account's newest cursor (with ``since``, ``newest`` if given: the one read
        when ``since`` was checked) and, with ``since``, whether the history reached back to it.
        Raises ValueError for a malformed ``since`` (before anything is held back).
        """
        start_key = None if since is None else self.store.cursor_key(since, binding.account_id)
        binding.held = []
        try:
            if newest is None or since is None:  # without since: read after binding, so nothing falls between
                newest = await self.store.latest_event_cursor(binding.account_id)
        except BaseException:
            binding.held = None
            raise
        if since is None:
            binding.last_key, binding.cursor = self.store.cursor_key(newest), newest
            announce(newest, None)
            self._release(binding)
            return
        binding.last_key, binding.cursor = start_key, since
        await self._replay(binding, since, lambda complete: announce(newest, complete))
