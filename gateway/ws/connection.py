"""One SockJS session at ``/ws``: it dispatches each parsed message and sends what results.

Requests run concurrently through the application (:mod:`gateway.ws.tunnel`)
and are answered as each finishes; ``subscribe``/``unsubscribe`` run one at a
time in the order they came.  Anything malformed gets an ``error`` message and
the session stays open.  The protocol is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from json.encoder import encode_basestring_ascii as json_string
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import tornado.web
from sockjs.tornado import SockJSConnection

from events.dispatcher import EventDispatcher
from events.subscriptions import SubscriptionRegistry
from gateway.auth import InvalidToken, Tokens
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.sockjs import backlog as session_backlog
from gateway.store import EventLog, StoreError
from gateway.ws import frames
from gateway.ws.messages import MessageError, Request, Subscribe, Unsubscribe, parse
from gateway.ws.tunnel import Tunnel, TunneledResponse

log = logging.getLogger("gateway.ws")

#: The transports as metrics name them (by the handler class that opened the session).
TRANSPORT_NAMES = {
    "WebSocketTransport": "websocket", "RawWebSocketTransport": "raw-websocket", "XhrPollingTransport": "xhr-polling",
    "XhrStreamingTransport": "xhr-streaming", "EventSourceTransport": "eventsource", "HtmlFileTransport": "htmlfile",
    "JSONPTransport": "jsonp-polling",
}


@dataclass
class Endpoint:
    """What every connection of one ``/ws`` endpoint is handed: its dependencies, and the live connections.

    ``app`` is the application tunneled requests run through; the assembly sets it
    once the application (whose routes include this endpoint's) exists.
    """

    config: Config
    tokens: Tokens
    events: EventLog
    registry: SubscriptionRegistry
    dispatcher: EventDispatcher
    metrics: Metrics | None = None
    prefix: str = "/ws"
    app: tornado.web.Application | None = None
    live: set[GatewayConnection] = field(default_factory=set)
    #: The last event message encoded: (the message, its JSON text, that text as a SockJS frame's JSON string).
    _encoded: tuple[dict[str, Any], str, str] | None = field(default=None, repr=False)

    def encoded(self, event: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        """An event message's JSON text and frame string, encoded once for every session it goes to: the
        dispatcher hands each session of an account the same message, one after the other (holding the
        message here keeps its identity from being reused by another)."""
        encoded = self._encoded
        if encoded is None or encoded[0] is not event:
            text = frames.compact_json(event)
            encoded = self._encoded = (event, text, json_string(text))
        return encoded

    def connection(self, session: Any) -> GatewayConnection:
        """The connection of a new SockJS session (the router calls this)."""
        return GatewayConnection(session, self)


class GatewayConnection(SockJSConnection):
    """The server side of one SockJS session."""

    def __init__(self, session: Any, endpoint: Endpoint) -> None:
        super().__init__(session)
        self.endpoint = endpoint
        self.config = endpoint.config
        self.tunnel: Tunnel | None = None
        self.transport = "unknown"  # the SockJS transport that opened the session (metrics)
        self.request_prefix = secrets.token_hex(4)  # tunneled requests' ids: <prefix>.<message id>
        self.pending: set[str] = set()  # ids of the requests running, each answered once
        self.tasks: set[asyncio.Task[None]] = set()
        self.control = asyncio.Lock()  # subscribe/unsubscribe run in arrival order

    def on_open(self, info: Any) -> None:
        host = info.headers.get("Host") or f"{self.config.host}:{self.config.port}"
        assert self.endpoint.app is not None, "the endpoint's application is set before it serves"
        self.tunnel = Tunnel(self.endpoint.app, info.ip, host)
        handler = getattr(self.session, "handler", None)
        self.transport = TRANSPORT_NAMES.get(type(handler).__name__, type(handler).__name__)
        self.endpoint.live.add(self)
        log.debug("session opened from %s", info.ip)

    def on_close(self) -> None:
        self.endpoint.live.discard(self)
        self.endpoint.registry.unbind(self)
        if self.tunnel is not None:
            self.tunnel.close()  # their handlers see on_connection_close; their responses are dropped
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()
        self.pending.clear()

    # -- sending ------------------------------------------------------------

    @property
    def running_requests(self) -> int:
        """Tunneled requests started and not yet answered."""
        return len(self.tunnel.open) if self.tunnel is not None else 0

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(frames.compact_json(message))

    def binding_ended(self, reason: str) -> None:
        self.send_json({"type": "unsubscribed", "reason": reason})

    def send_event(self, event: dict[str, Any]) -> None:
        """Send an event, or close the session if its client is not keeping up."""
        if self.is_closed:
            return
        backlog = session_backlog(self.session)
        if backlog > self.config.ws_max_queue:
            log.warning("closing a session whose client fell %d bytes behind", backlog)
            if self.endpoint.metrics is not None:
                self.endpoint.metrics.queue_overflows.inc()
            self.endpoint.registry.unbind(self)  # no further event, even before the close completes
            self.session.close(4000, "Outgoing queue overflow: reconnect and subscribe with since=<last cursor>")
            return
        _, text, frame_string = self.endpoint.encoded(event)
        session = self.session
        if session.send_expects_json:  # what send() does, without encoding the message again
            session.send_jsonified_now(frame_string)
        else:
            session.send_message(text)

    def respond(self, message_id: str, json_body: bool, response: TunneledResponse) -> None:
        """Send a tunneled request's response (called by the tunnel when the handler finishes);
        with ``json_body``, a JSON body as a JSON value."""
        self.pending.discard(message_id)
        if self.is_closed:
            return
        session = self.session
        as_value = json_body and frames.is_json(response)
        if session.send_expects_json:
            session.send_jsonified(frames.json_body_frame_string(message_id, response) if as_value
                                   else frames.response_frame_string(message_id, response))
        else:
            session.send_message(frames.json_body_message(message_id, response) if as_value
                                 else frames.response_message(message_id, response))

    # -- receiving ----------------------------------------------------------

    def on_message(self, raw: Any) -> None:
        try:
            self.dispatch(raw)
        except Exception:  # a bug of ours, not the client's: the session stays usable all the same
            log.exception("a /ws message could not be handled")
            self.send_json(frames.error("internal_error", "The message could not be handled"))

    def dispatch(self, raw: Any) -> None:
        """Parse one message and run it; a malformed one is answered with an ``error``."""
        try:
            message = parse(raw, self.config.ws_max_message, self.endpoint.prefix)
        except MessageError as exc:
            reply = frames.error(exc.code, str(exc), exc.id)
            if exc.ordered:
                self.start(self.in_order(self._send_async(reply)))
            else:
                self.send_json(reply)
            return
        if isinstance(message, Request):
            self.request(message)
        elif isinstance(message, Subscribe):
            self.start(self.in_order(self.subscribe(message)))
        else:
            self.start(self.in_order(self.unsubscribe(message)))

    async def _send_async(self, reply: dict[str, Any]) -> None:
        self.send_json(reply)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def in_order(self, work: Coroutine[Any, Any, None]) -> None:
        async with self.control:
            await work

    # -- request ------------------------------------------------------------

    def request(self, message: Request) -> None:
        """Start a request, or answer 429 at once when the session is at its limit."""
        assert self.tunnel is not None
        if message.id in self.pending:
            self.send_json(frames.error("duplicate_id", "A request with this id is still running on this session",
                                        message.id))
            return
        if self.running_requests >= self.config.ws_max_inflight:
            self.send_json(frames.rate_limited(message.id, message.json_body))
            return
        self.pending.add(message.id)
        headers = message.headers
        if not any(name.lower() == "x-request-id" for name, _ in headers):  # carried into the request and its log
            headers = [*headers, ("X-Request-Id", f"{self.request_prefix}.{message.id}"[:64])]
        try:
            rest = self.tunnel.start(message.method, message.target, headers, message.body,
                                     partial(self.respond, message.id, message.json_body))
        except Exception:
            log.exception("tunneled %s %s failed", message.method, message.target)
            self.request_failed(message.id)
            return
        if rest is not None:
            self.start(self.finish_request(rest, message))

    async def finish_request(self, rest: Any, message: Request) -> None:
        """Await what :meth:`Tunnel.start` left to do (a streamed request body)."""
        try:
            await rest
        except asyncio.CancelledError:
            return  # the session closed while the request ran
        except Exception:
            log.exception("tunneled %s %s failed", message.method, message.target)
            self.request_failed(message.id)

    def request_failed(self, message_id: str) -> None:
        self.pending.discard(message_id)
        self.send_json(frames.error("internal_error", "The request could not be run", message_id))

    # -- subscriptions ------------------------------------------------------

    async def subscribe(self, message: Subscribe) -> None:
        """Bind this session to the token's account; with ``since``, replay what it missed first.

        ``subscribed`` carries the account's newest cursor, which every later event comes after,
        so a client that drops before its first event resumes from there.  When the store is away
        meanwhile, the session is closed with code 4002: the client reconnects (with backoff) and
        resumes from the last cursor it got, as after any drop.
        """
        try:
            await self._subscribe(message)
        except StoreError as exc:
            log.warning("subscribe failed, the session is closed: %s", exc)
            self.session.close(4002, "Store unavailable: reconnect and subscribe with since=<last cursor>")

    async def _subscribe(self, message: Subscribe) -> None:
        try:
            identity = await self.endpoint.tokens.verify(message.token)
        except InvalidToken:
            self.send_json(frames.error("invalid_token", "Invalid token", message.id))
            return
        account_id = identity.account["id"]
        newest = None
        if message.since is not None:
            newest = await self.endpoint.events.latest_event_cursor(account_id)
            if not self.issued(account_id, message.since, newest):
                self.send_json(frames.error("invalid_cursor", "Field 'since' is not a cursor this server issued",
                                            message.id))
                return
        if self.is_closed:
            return
        binding = self.endpoint.registry.bind(self, account_id, identity.token["id"],
                                              float(identity.token["exp"]), message.events, message.detail)
        reply: dict[str, Any] = {"type": "subscribed"}
        if message.id is not None:
            reply["id"] = message.id

        def announce(cursor: str, recovered: bool | None) -> None:
            self.send_json({**reply, "cursor": cursor} if recovered is None
                           else {**reply, "cursor": cursor, "recovered": recovered})

        await self.endpoint.dispatcher.attach(binding, message.since, announce, newest)

    def issued(self, account_id: str, cursor: str, newest: str) -> bool:
        """Whether ``cursor`` is one this server issued for the account: well formed, the account's,
        and not past its ``newest`` event."""
        events = self.endpoint.events
        try:
            return bool(events.cursor_key(cursor, account_id) <= events.cursor_key(newest))
        except ValueError:
            return False

    async def unsubscribe(self, message: Unsubscribe) -> None:
        if self.endpoint.registry.unbind(self) is None:
            self.send_json(frames.error("not_subscribed", "Not subscribed", message.id))
            return
        reply: dict[str, Any] = {"type": "unsubscribed"}
        if message.id is not None:
            reply["id"] = message.id
        self.send_json(reply)
