"""Subscriptions: which subscribers (SockJS sessions) are bound to which account, and ending
bindings when their token stops being valid.

A subscriber binds with a token (``subscribe``); it stays bound until it
unsubscribes, rebinds, closes, or the token expires, is revoked or its account
is deleted.  The last three are noticed here: a timer per binding for expiry,
and the store's change feeds on ``tokens`` and ``accounts`` for revocations
and deletions made anywhere (this process, another one, plain HTTP or a
tunnel), so the session is told at once.  After a store outage every binding
is checked again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from events.model import Event
from gateway.store import Change, Documents
from gateway.store.follow import Follower

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What can be bound (a SockJS session's connection): it gets events, and is told when its binding ends."""

    def send_event(self, event: dict[str, Any]) -> None:
        """Deliver one event message."""

    def binding_ended(self, reason: str) -> None:
        """The binding was ended by the server (``expired``, ``revoked`` or ``account_deleted``)."""


@dataclass(eq=False)
class Binding:
    """One subscriber bound to one account through one token."""

    subscriber: Subscriber
    account_id: str
    token_id: str
    expires: float
    events: frozenset[str] | None = None
    #: How much of each event's email to send (:data:`events.model.DETAIL_LEVELS`).
    detail: str = "summary"
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    #: The last event cursor sent (or passed over, or started from), and its sort key: nothing at
    #: or before it is sent again.
    cursor: str | None = None
    last_key: Any = None
    #: While a replay runs, live events wait here as (key, event).
    held: list[tuple[Any, Event]] | None = field(default=None, repr=False)
    #: While an event waits for one it skipped (see events.dispatcher): when to read the history instead.
    gap: asyncio.TimerHandle | None = field(default=None, repr=False)


class SubscriptionRegistry:
    """Bindings by subscriber and by account (many per account, many accounts per process).

    It follows the store's ``tokens`` and ``accounts`` feeds once :meth:`start` ran.
    """

    def __init__(self, store: Documents) -> None:
        self.store = store
        self._by_subscriber: dict[Subscriber, Binding] = {}
        self._by_account: dict[str, dict[Subscriber, Binding]] = {}
        self.followers = [
            Follower(lambda: store.changes("tokens"), "token feed").add(
                "bindings", self._token_changed, self._recheck_all),
            Follower(lambda: store.changes("accounts"), "account feed").add(
                "bindings", self._account_changed, self._recheck_all),
        ]

    # -- bindings -----------------------------------------------------------

    def bind(self, subscriber: Subscriber, account_id: str, token_id: str, expires: float,
             events: frozenset[str] | None = None, detail: str = "summary") -> Binding:
        """Bind (or rebind) a subscriber; it is ended with ``expired`` when the token's ``exp`` passes."""
        self.unbind(subscriber)
        binding = Binding(subscriber, account_id, token_id, expires, events, detail)
        loop = asyncio.get_running_loop()
        binding.timer = loop.call_at(loop.time() + max(0.0, expires - time.time()), self.end, binding, "expired")
        self._by_subscriber[subscriber] = binding
        self._by_account.setdefault(account_id, {})[subscriber] = binding
        return binding

    def unbind(self, subscriber: Subscriber) -> Binding | None:
        """Forget a subscriber's binding (it unsubscribed or closed); the binding, if it had one."""
        binding = self._by_subscriber.pop(subscriber, None)
        if binding is None:
            return None
        for timer in (binding.timer, binding.gap):
            if timer is not None:
                timer.cancel()
        sessions = self._by_account.get(binding.account_id)
        if sessions is not None:
            sessions.pop(subscriber, None)
            if not sessions:
                del self._by_account[binding.account_id]
        return binding

    def end(self, binding: Binding, reason: str) -> None:
        """End a binding from the server side and tell its subscriber why."""
        if self._by_subscriber.get(binding.subscriber) is not binding:
            return  # already unbound or rebound
        self.unbind(binding.subscriber)
        log.info("binding to account %s ended: %s", binding.account_id, reason)
        binding.subscriber.binding_ended(reason)

    def binding(self, subscriber: Subscriber) -> Binding | None:
        return self._by_subscriber.get(subscriber)

    def bindings(self, account_id: str) -> list[Binding]:
        """Every binding of an account in this process."""
        return list(self._by_account.get(account_id, {}).values())

    def accounts(self) -> list[str]:
        """The accounts with at least one binding here."""
        return list(self._by_account)

    def counts(self) -> dict[str, int]:
        return {"subscribers": len(self._by_subscriber), "accounts": len(self._by_account)}

    # -- watching the store -------------------------------------------------

    async def start(self) -> None:
        """Watch token revocations and account deletions; live when this returns."""
        for follower in self.followers:
            await follower.start()

    async def stop(self) -> None:
        for follower in self.followers:
            await follower.stop()

    async def _token_changed(self, change: Change) -> None:
        if change.old is None or change.new is not None:
            return
        token = change.old
        ended = [b for b in self.bindings(token.get("owner", "")) if b.token_id == token["id"]]
        if not ended:
            return
        # Deleting an account also deletes its tokens: name the real cause.
        reason = "revoked" if await self.store.get("accounts", token["owner"]) else "account_deleted"
        for binding in ended:
            self.end(binding, reason)

    async def _account_changed(self, change: Change) -> None:
        if change.old is not None and change.new is None:
            for binding in self.bindings(change.old["id"]):
                self.end(binding, "account_deleted")

    async def _recheck_all(self) -> None:
        """After a feed outage: end the bindings whose token or account went away meanwhile."""
        for binding in list(self._by_subscriber.values()):
            if await self.store.get("accounts", binding.account_id) is None:
                self.end(binding, "account_deleted")
            elif await self.store.get("tokens", binding.token_id) is None:
                self.end(binding, "revoked")
