"""One subscription of the client: the events of one account, once and in order across reconnects,
moved to a fresh token before the bound one expires."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.client.messages import GatewayError, token_expiry

if TYPE_CHECKING:
    from gateway.client.connection import Client

log = logging.getLogger("gateway.client")


class Subscription:
    """The events of one account: iterate it.  ``cursor`` is the last one delivered; ``resyncs``
    counts the times the server could not replay what was missed (reload your state then);
    ``ended`` is the reason it ended for good (``revoked``, ``account_deleted``, ...), else None."""

    def __init__(self, client: Client, token: str, since: str | None, events: list[str] | None,
                 get_token: Callable[[], Awaitable[str]] | None, detail: str | None = None) -> None:
        self.client = client
        self.token = token
        self.cursor = since
        self.events = events
        self.detail = detail
        self.get_token = get_token
        self.resyncs = 0
        self.ended: str | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._renewal: asyncio.TimerHandle | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def _deliver(self, event: dict[str, Any]) -> None:
        cursor = event.get("cursor")
        if not isinstance(cursor, str):
            return
        if self.cursor is not None and _cursor_key(cursor) <= _cursor_key(self.cursor):
            return  # had it (a replay overlapping what came live)
        self.cursor = cursor
        self._queue.put_nowait(event)

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            if self._renewal is not None:
                self._renewal.cancel()
            self._queue.put_nowait(None)

    def _schedule_renewal(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
        expires = token_expiry(self.token)
        if self.get_token is None or expires is None:
            return
        left = expires - time.time()
        lead = min(60.0, max(1.0, left / 10))
        self._renewal = asyncio.get_running_loop().call_later(
            max(0.0, left - lead), lambda: self.client._spawn(self._renew()))

    async def _renew(self) -> None:
        assert self.get_token is not None
        try:
            self.token = await self.get_token()
        except Exception as exc:  # noqa: BLE001 - whatever the caller's function raised ends it
            log.warning("token renewal failed: %s", exc)
            self._end("expired")
            return
        await self.bind()

    async def bind(self) -> None:
        """Send ``subscribe`` with this token and the last cursor, and take the answer."""
        message: dict[str, Any] = {"type": "subscribe", "token": self.token}
        if self.cursor is not None:
            message["since"] = self.cursor
        if self.events:
            message["events"] = self.events
        if self.detail:
            message["detail"] = self.detail
        try:
            answer = await self.client._control(message)
        except GatewayError:
            return  # dropped: bound again once reopened
        if self is not self.client._subscription or self.ended is not None:
            return
        if answer.get("type") == "subscribed":
            if self.cursor is None:
                self.cursor = answer.get("cursor")
            if answer.get("recovered") is False:
                self.resyncs += 1
            self._schedule_renewal()
        elif answer.get("code") == "invalid_cursor":
            self.cursor = None
            self.resyncs += 1
            await self.bind()
        else:
            self._end(answer.get("code", "error"))

    async def unsubscribe(self) -> None:
        """Stop; the iteration ends."""
        self._end("unsubscribed")
        self.client._subscription = None
        with contextlib.suppress(GatewayError):
            await self.client._control({"type": "unsubscribe"})


def _cursor_key(cursor: str) -> tuple[int, int | str]:
    """One account's cursors in order: numbers when all digits (SQLite's), else as text (RethinkDB's
    sort so, and after every all-digit one)."""
    return (0, int(cursor)) if cursor.isdigit() else (1, cursor)

