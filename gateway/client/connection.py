"""The client's one session to a gateway: requests, queued under the server's in-flight limit and
answered by id, and control messages, over a websocket reopened after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import HTTPClientError
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketError,
    websocket_connect,
)

from gateway.client.messages import GatewayError, Reply, reply_of
from gateway.client.subscription import Subscription

log = logging.getLogger("gateway.client")

#: Methods that change nothing: sent again after a reconnect (as is anything with an Idempotency-Key).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The event kinds the server pushes (its events.model.EVENT_KINDS; this package knows nothing of the server's).
EVENT_KINDS = frozenset({"receipt", "delivery", "deferred", "failed"})


@dataclass
class _Call:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    future: asyncio.Future[Reply]

    @property
    def retryable(self) -> bool:
        return self.method in SAFE_METHODS or any(h.lower() == "idempotency-key" for h in self.headers)


class Client:
    """One session to a gateway (its base URL), reopened after a drop with full-jitter backoff."""

    def __init__(self, url: str, timeout: float = 30.0, backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        base = url.rstrip("/").removesuffix("/ws")
        self.url = base.replace("http", "ws", 1) + "/ws/websocket"
        self.timeout = timeout
        self.backoff = backoff
        self.state = "connecting"
        self._ws: WebSocketClientConnection | None = None
        self._opened = asyncio.Event()
        self._ids = itertools.count(1)
        self._inflight: dict[str, _Call] = {}
        self._queue: list[_Call] = []
        self._control_waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._limit = 32
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (and keep reconnecting in the background); returns once the session is open."""
        self._runner = asyncio.ensure_future(self._run())
        await self._opened.wait()

    async def close(self) -> None:
        """Close for good: every call still waiting fails with ``closed``."""
        self.state = "closed"
        if self._runner is not None:
            self._runner.cancel()
        if self._ws is not None:
            self._ws.close()
        for call in [*self._inflight.values(), *self._queue]:
            if not call.future.done():
                call.future.set_exception(GatewayError("closed", "The client was closed",
                                                       outcome_unknown=call in self._inflight.values()
                                                       and not call.retryable))
        self._inflight.clear()
        self._queue.clear()
        if self._subscription is not None:
            self._subscription._end("closed")
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the connection ----------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while self.state != "closed":
            try:
                self._ws = await websocket_connect(self.url)
            except (OSError, HTTPClientError, WebSocketError):  # down, or a balancer answering 502 for it
                await asyncio.sleep(random.random() * min(self.backoff[1], self.backoff[0] * 2 ** min(attempt, 30)))
                attempt += 1
                continue
            attempt = 0
            self.state = "open"
            self._opened.set()
            self._spawn(self._on_open())
            while True:
                text = await self._ws.read_message()
                if text is None:
                    break
                self._received(text if isinstance(text, str) else text.decode())
            self._dropped()

    async def _on_open(self) -> None:
        self._pump()
        with contextlib.suppress(GatewayError):
            root = await self.request("GET", "/", timeout=10)
            limit = (root.body or {}).get("limits", {}).get("ws_max_inflight") if isinstance(root.body, dict) else None
            if isinstance(limit, int) and limit > 0:
                self._limit = limit
                self._pump()
        if self._subscription is not None and self._subscription.ended is None:
            await self._subscription.bind()

    def _dropped(self) -> None:
        self._ws = None
        if self.state == "closed":
            return
        self.state = "reconnecting"
        self._opened.clear()
        again = []
        for call in self._inflight.values():
            if call.retryable:
                again.append(call)
            elif not call.future.done():
                call.future.set_exception(GatewayError(
                    "closed", "The session dropped before the answer came: the outcome is unknown", True))
        self._inflight.clear()
        self._queue[:0] = again
        for waiting in self._control_waiting.values():
            if not waiting.done():
                waiting.set_exception(GatewayError("closed", "The session dropped"))
        self._control_waiting.clear()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        try:
            self._ws.write_message(json.dumps(message))
        except WebSocketClosedError:
            pass  # the read loop sees the close and reconnects

    def _received(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        kind, message_id = message.get("type"), message.get("id")
        call = self._inflight.pop(message_id, None) if kind in ("response", "error") else None
        if call is not None:
            if call.future.done():
                pass
            elif kind == "response":
                call.future.set_result(reply_of(message))
            else:
                call.future.set_exception(GatewayError(message.get("code", "error"), message.get("error", "")))
            self._pump()
        elif message_id in self._control_waiting:
            waiting = self._control_waiting.pop(message_id)
            if not waiting.done():
                waiting.set_result(message)
        elif kind in EVENT_KINDS and self._subscription is not None:
            self._subscription._deliver(message)
        elif kind == "unsubscribed" and self._subscription is not None:
            subscription = self._subscription
            if message.get("reason") == "expired" and subscription.get_token is not None:
                self._spawn(subscription._renew())
            elif message.get("reason"):
                subscription._end(message["reason"])

    # -- requests ----------------------------------------------------------

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> Reply:
        """Run one API request; raises :class:`GatewayError` for an ``error`` answer, a timeout or a close."""
        if self.state == "closed":
            raise GatewayError("closed", "The client is closed")
        sent_headers = dict(headers or {})
        if body is not None and not any(h.lower() == "content-type" for h in sent_headers):
            sent_headers["Content-Type"] = "application/json"
        call = _Call(method.upper(), path, body, sent_headers, asyncio.get_running_loop().create_future())
        self._queue.append(call)
        self._pump()
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that comes as
            # the answer does (it returns the answer), and a caller's cancelled task then runs on
            async with asyncio.timeout(timeout or self.timeout):
                return await asyncio.shield(call.future)
        except TimeoutError:
            sent = self._forget(call)
            unknown = sent and call.method not in SAFE_METHODS
            raise GatewayError("timeout", "No answer in time" + (": the outcome is unknown" if unknown else ""),
                               unknown) from None
        except asyncio.CancelledError:
            # nobody waits for it now (shield dropped its callback): a late answer, or close(), would
            # otherwise leave an exception on its future that is never retrieved
            self._forget(call)
            raise

    def _forget(self, call: _Call) -> bool:
        """Stop tracking a call nobody waits for (its answer, if one comes, is dropped); whether it was sent."""
        sent = any(c is call for c in self._inflight.values())
        self._inflight = {i: c for i, c in self._inflight.items() if c is not call}
        if call in self._queue:
            self._queue.remove(call)
        return sent

    def _pump(self) -> None:
        while self.state == "open" and self._ws is not None and self._queue and len(self._inflight) < self._limit:
            call = self._queue.pop(0)
            message_id = f"r{next(self._ids)}"
            self._inflight[message_id] = call
            # a JSON body comes as a JSON value (docs/protocol.md): one decode instead of two
            message: dict[str, Any] = {"type": "request", "id": message_id, "method": call.method, "path": call.path,
                                       "accept_json_body": True}
            if call.body is not None:
                message["body"] = call.body
            if call.headers:
                message["headers"] = call.headers
            self._send(message)

    # -- the subscription --------------------------------------------------

    async def subscribe(self, token: str, since: str | None = None, events: list[str] | None = None,
                        get_token: Callable[[], Awaitable[str]] | None = None,
                        detail: str | None = None) -> Subscription:
        """Subscribe to the token's account (replacing an earlier subscription); returns once bound.

        ``events`` picks kinds of :data:`EVENT_KINDS`; ``detail`` (``summary``, ``message`` or
        ``full``) how much of each email an event carries (see docs/protocol.md).

        ``get_token`` returns a fresh token: it is called before the bound one expires, and the
        subscription moves to it, resuming after the last cursor (no gap, no duplicate).
        """
        if self._subscription is not None:
            self._subscription._end("replaced")
        subscription = self._subscription = Subscription(self, token, since, events, get_token, detail)
        await subscription.bind()
        if subscription.ended is not None:
            raise GatewayError(subscription.ended, f"The subscription was refused: {subscription.ended}")
        return subscription

    async def _control(self, message: dict[str, Any]) -> dict[str, Any]:
        await self._opened.wait()
        message_id = f"c{next(self._ids)}"
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._control_waiting[message_id] = waiting
        self._send({**message, "id": message_id})
        return await waiting
