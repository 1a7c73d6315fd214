"""Delivers the store's events to the subscribers bound to their account.

It follows the store's event feed (:meth:`~gateway.store.EventLog.event_feed`),
never the handlers: the store itself picks the writes that are events (by the
rule in :mod:`events.model`), so no other change reaches this process.  Each
event carries its cursor and is sent to every subscriber bound to the account,
at most once and in cursor order.

Resuming (``subscribe`` with ``since``): live events for the binding are held
back while its history after ``since`` is replayed; then the held events
newer than the last replayed one follow.  History and feed share cursors, so
there is no gap and no duplicate even for events that happen during the replay.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from events.model import Event
from events.subscriptions import Binding, SubscriptionRegistry
from gateway.metrics import Metrics
from gateway.store import Change, EventLog, History
from gateway.store.follow import Follower

log = logging.getLogger(__name__)

REPLAY_PAGE = 500


class EventDispatcher:
    """Follows the store's event feed and delivers events to the registry's bindings."""

    def __init__(self, store: EventLog, registry: SubscriptionRegistry, metrics: Metrics | None = None) -> None:
        self.store = store
        self.registry = registry
        self.metrics = metrics
        self.feed = Follower(store.event_feed, "event feed").add("events", self._changed, self._catch_up)
        #: The newest cursor seen; after an outage, events after it are read from history.
        self.last_cursor: str | None = None

    async def start(self) -> None:
        """Note where the feed starts, and follow it (live when this returns)."""
        self.last_cursor = await self.store.latest_event_cursor()
        await self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()

    async def _changed(self, change: Change) -> None:
        if change.cursor is not None:
            self.last_cursor = change.cursor
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

    async def _catch_up(self) -> None:
        """After the feed was down: the events of bound accounts that happened meanwhile, in order."""
        since = newest = self.last_cursor
        for account_id in self.registry.accounts():
            async for page in self._history(account_id, since):
                for change in page.changes:
                    self.route(change)
                last = page.changes[-1].cursor if page.changes else None
                if last is not None and (newest is None or self.store.cursor_key(last) > self.store.cursor_key(newest)):
                    newest = last
        self.last_cursor = newest
        log.info("event feed caught up from cursor %s to %s", since, newest)

    async def _history(self, account_id: str, after: str | None) -> AsyncIterator[History]:
        """The account's changes after cursor ``after``, page by page."""
        while True:
            page = await self.store.event_history(account_id, after, REPLAY_PAGE)
            yield page
            if len(page.changes) < REPLAY_PAGE:
                return
            after = page.changes[-1].cursor

    def deliver(self, binding: Binding, event: Event, key: Any) -> None:
        """Send one live event to one binding, or hold it back while the binding replays."""
        if binding.held is not None:
            binding.held.append((key, event))
        else:
            self._send(binding, event, key)

    def _send(self, binding: Binding, event: Event, key: Any) -> None:
        """Send, unless sent (or replayed past) already or not a kind the binding asked for."""
        if binding.last_key is not None and key <= binding.last_key:
            return
        binding.last_key = key
        if binding.events is None or event.kind in binding.events:
            binding.subscriber.send_event(event.rendered(binding.detail))
            if self.metrics is not None:
                self.metrics.events.labels(event.kind).inc()

    async def resume(self, binding: Binding, since: str, announce: Any) -> None:
        """Replay the binding's events after cursor ``since``, then go live.

        ``announce(recovered)`` is called once the first page of history is
        read, before any replayed event is sent.  Raises ValueError for a
        malformed cursor (before anything is held back).
        """
        binding.last_key = self.store.cursor_key(since)
        binding.held = []
        try:
            first = True
            async for page in self._history(binding.account_id, since):
                if first:
                    announce(page.complete)
                    first = False
                if self.registry.binding(binding.subscriber) is not binding:
                    return  # unsubscribed, rebound or closed during the replay
                for change in page.changes:
                    event = change.event()
                    if event is not None:
                        self._send(binding, event, self.store.cursor_key(event.cursor))
        finally:
            held, binding.held = binding.held or [], None
        for key, message in held:
            self._send(binding, message, key)
