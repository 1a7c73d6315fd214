"""One SockJS session at ``/ws``: tunneled requests, subscribe and unsubscribe.

Every SockJS message is one JSON object with a ``type``.  Requests run
concurrently through the application (see :mod:`gateway.tunnel`) and are
answered as each finishes; ``subscribe``/``unsubscribe`` run one at a time in
the order they came.  Anything malformed gets an ``error`` message and the
session stays open.  The protocol is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
from dataclasses import dataclass, field
from functools import partial
from json.encoder import encode_basestring_ascii as json_string
from typing import Any
from urllib.parse import unquote, urlsplit

import tornado.web
from sockjs.tornado import SockJSConnection

from events.dispatcher import EVENT_TYPES, EventDispatcher
from events.sessions import SessionRegistry
from gateway.auth import InvalidToken
from gateway.state import State
from gateway.tunnel import Tunnel, TunneledResponse

log = logging.getLogger("gateway.ws")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: ``json.dumps(..., separators=(",", ":"))`` without building an encoder per call.
compact_json = json.JSONEncoder(separators=(",", ":")).encode
RATE_LIMITED_BODY = json.dumps(
    {"success": False, "message": "Too many requests in flight on this session", "code": "rate_limited"},
    separators=(",", ":"),
)


#: The bytes JSON writes as themselves, but for ``"`` and ``\\``: any ``json.dumps`` output is made of these only.
PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _response_head(message_id: str, response: TunneledResponse) -> str:
    return (f'{{"type":"response","id":{json_string(message_id)},"status":{response.status:d},'
            f'"headers":{compact_json(response.headers)},"body":')


def response_message(message_id: str, response: TunneledResponse) -> str:
    """The ``response`` message for a tunneled request, as JSON text.

    Byte for byte ``json.dumps({"type": "response", "id": ..., "status": ...,
    "headers": ..., "body": ...}, separators=(",", ":"))``, but assembled from its
    parts: the body, most of the bytes, is escaped by one C call instead of
    going through the generic encoder's per-item machinery.
    """
    return f'{_response_head(message_id, response)}{json_string(response.body.decode("utf-8", "replace"))}}}'


def response_frame_string(message_id: str, response: TunneledResponse) -> str:
    """``json.dumps(response_message(...))``: the message as the JSON string a SockJS frame carries.

    The body ends up escaped twice (a JSON string in the message, which is a
    JSON string in the frame).  When it is printable ASCII only, as whatever
    ``json.dumps`` writes by default is, both escapes are two ``str.replace``
    calls on it, about half the cost of two passes of the C escaper; anything
    else goes the generic way.
    """
    body = response.body
    if body.translate(None, PRINTABLE_ASCII):  # control or non-ASCII bytes: \\uXXXX and friends
        return json_string(response_message(message_id, response))
    head = json_string(_response_head(message_id, response))
    # `\` -> `\\` -> `\\\\`, and `"` -> `\"` -> `\\\"`: both escapes at once
    twice = body.decode("ascii").replace("\\", "\\\\\\\\").replace('"', '\\\\\\"')
    return f'{head[:-1]}\\"{twice}\\"}}"'


class MessageError(Exception):
    """A message that is answered with ``{"type": "error"}`` instead of being run."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class WsContext:
    """What every session of one gateway shares: state, the application, the registry, live sessions."""

    state: State
    registry: SessionRegistry
    dispatcher: EventDispatcher
    prefix: str = "/ws"
    app: tornado.web.Application | None = None
    live: set[GatewayConnection] = field(default_factory=set)


class GatewayConnection(SockJSConnection):
    """The server side of one SockJS session."""

    context: WsContext

    def on_open(self, info: Any) -> None:
        self.context = self.session.server.context
        self.config = self.context.state.config
        host = info.headers.get("Host") or f"{self.config.host}:{self.config.port}"
        assert self.context.app is not None
        self.tunnel = Tunnel(self.context.app, info.ip, host)
        self.inflight: set[asyncio.Task[None]] = set()
        self.control = asyncio.Lock()  # subscribe/unsubscribe run in arrival order
        self.context.live.add(self)
        log.debug("session opened from %s", info.ip)

    def on_close(self) -> None:
        self.context.live.discard(self)
        self.context.registry.unbind(self)
        self.tunnel.close()  # their responses are dropped
        for task in list(self.inflight):
            task.cancel()
        self.inflight.clear()

    # -- sending ------------------------------------------------------------

    @property
    def running_requests(self) -> int:
        """Tunneled requests started and not yet answered."""
        return len(self.tunnel.open)

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(compact_json(message))

    def send_error(self, code: str, message: str, message_id: Any = None) -> None:
        error: dict[str, Any] = {"type": "error", "error": message, "code": code}
        if message_id is not None:
            error["id"] = message_id
        self.send_json(error)

    def binding_ended(self, reason: str) -> None:
        self.send_json({"type": "unsubscribed", "reason": reason})

    def send_event(self, event: dict[str, Any]) -> None:
        """Send an event, or close the session if its client is not keeping up."""
        if self.is_closed:
            return
        backlog = self.backlog()
        if backlog > self.config.ws_max_queue:
            log.warning("closing a session whose client fell %d bytes behind", backlog)
            self.context.registry.unbind(self)  # no further event, even before the close completes
            self.session.close(4000, "Outgoing queue overflow: reconnect and subscribe with since=<last cursor>")
            return
        self.send_json(event)

    def backlog(self) -> int:
        """Bytes sent to this session that its client has not taken yet.

        That is what the socket could not send yet, plus the session's queue
        while no transport is attached (a polling client that stopped polling).
        The queue of an attached transport is flushed every loop turn: not a backlog.
        """
        handler = self.session.handler
        connection = getattr(handler, "ws_connection", None)
        stream = getattr(connection, "stream", None) or getattr(getattr(handler, "request", None), "connection", None)
        stream = getattr(stream, "stream", stream)
        # tornado's IOStream keeps its unsent byte count in a private field
        unsent = getattr(stream, "_write_buffer_size", 0)
        if handler is None or not handler.active:
            unsent += getattr(self.session, "queued_chars", 0)  # raw websocket sessions queue nothing
        return unsent

    # -- receiving ----------------------------------------------------------

    def on_message(self, raw: str) -> None:
        message_id = None
        try:
            if len(raw) > self.config.ws_max_message:
                raise MessageError("too_large", f"Message exceeds {self.config.ws_max_message} bytes")
            try:
                message = json.loads(raw)
            except ValueError:
                raise MessageError("invalid_json", "Message is not valid JSON") from None
            if not isinstance(message, dict):
                raise MessageError("invalid_message", "Message must be a JSON object")
            message_id = message.get("id")
            kind = message.get("type")
            if kind is None:
                raise MessageError("missing_field", "Missing field: type")
            if kind == "request":
                self.request(message)
            elif kind in ("subscribe", "unsubscribe"):
                self.start(self.in_order(self.handle_subscribe(message) if kind == "subscribe"
                                         else self.handle_unsubscribe(message)))
            else:
                raise MessageError("unknown_type", f"Unknown message type: {str(kind)[:64]!r}")
        except MessageError as exc:
            self.send_error(exc.code, str(exc), message_id if isinstance(message_id, str) else None)

    def start(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def in_order(self, work: Any) -> None:
        async with self.control:
            await work

    # -- request ------------------------------------------------------------

    def request(self, message: dict[str, Any]) -> None:
        """Check a request message and start it, or answer 429 at once when the session is at its limit."""
        method, target, headers, body = self.parse_request(message)
        if self.running_requests >= self.config.ws_max_inflight:
            self.send_json({"type": "response", "id": message["id"], "status": 429,
                            "headers": {"Content-Type": ["application/json; charset=utf-8"]},
                            "body": RATE_LIMITED_BODY})
            return
        message_id = message["id"]
        try:
            rest = self.tunnel.start(method, target, headers, body, partial(self.respond, message_id))
        except Exception:
            log.exception("tunneled %s %s failed", method, target)
            self.request_failed(message_id)
            return
        if rest is not None:
            self.start(self.finish_request(rest, message_id, method, target))

    async def finish_request(self, rest: Any, message_id: str, method: str, target: str) -> None:
        """Await what :meth:`Tunnel.start` left to do (a streamed request body)."""
        try:
            await rest
        except asyncio.CancelledError:
            return  # the session closed while the request ran
        except Exception:
            log.exception("tunneled %s %s failed", method, target)
            self.request_failed(message_id)

    def request_failed(self, message_id: str) -> None:
        self.send_error("internal_error", "The request could not be run", message_id)

    def respond(self, message_id: str, response: TunneledResponse) -> None:
        """Send a tunneled request's response (called by the tunnel when the handler finishes)."""
        if self.is_closed:
            return
        session = self.session
        if session.send_expects_json:
            session.send_jsonified(response_frame_string(message_id, response))
        else:
            session.send_message(response_message(message_id, response))

    def parse_request(self, message: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes]:
        """Check a request message; its method, target, header list and body bytes."""
        for name in ("id", "method", "path"):
            if name not in message:
                raise MessageError("missing_field", f"Missing field: {name}")
            if not isinstance(message[name], str):
                raise MessageError("invalid_field", f"Field '{name}' must be a string")
        unknown = set(message) - {"type", "id", "method", "path", "body", "headers"}
        if unknown:
            raise MessageError("unknown_field", f"Unknown field: {', '.join(sorted(unknown))}")
        method = message["method"].upper()
        if method not in METHODS:
            raise MessageError("invalid_field", f"Field 'method' must be one of {', '.join(sorted(METHODS))}")
        target = message["path"]
        self.check_path(target)
        body = message.get("body", "")
        if body is None:
            body = ""
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
        if not isinstance(body, str):
            raise MessageError("invalid_field", "Field 'body' must be a string, an object or an array")
        return method, target, self.parse_headers(message.get("headers", {})), body.encode("utf-8")

    def check_path(self, target: str) -> None:
        if not target.startswith("/") or target.startswith("//") or any(c in target for c in " \t\r\n\x00"):
            raise MessageError("invalid_field", "Field 'path' must be an absolute path such as /emails?limit=20")
        path = posixpath.normpath(unquote(urlsplit(target).path))
        prefix = self.context.prefix
        if path == prefix or path.startswith(prefix + "/"):
            raise MessageError("forbidden_path", f"Paths under {prefix} cannot be tunneled")

    @staticmethod
    def parse_headers(headers: Any) -> list[tuple[str, str]]:
        if not isinstance(headers, dict):
            raise MessageError("invalid_headers", "Field 'headers' must map names to a string or a list of strings")
        pairs: list[tuple[str, str]] = []
        for name, value in headers.items():
            values = value if isinstance(value, list) else [value]
            if not HEADER_NAME.match(name) or not all(isinstance(v, str) for v in values) \
                    or any("\r" in v or "\n" in v or "\x00" in v for v in values):
                raise MessageError("invalid_headers", f"Header {name[:64]!r} must be a valid name with string values")
            pairs.extend((name, v) for v in values)
        return pairs

    # -- subscribe ----------------------------------------------------------

    async def handle_subscribe(self, message: dict[str, Any]) -> None:
        message_id = message.get("id") if isinstance(message.get("id"), str) else None
        token, since, kinds = message.get("token"), message.get("since"), message.get("events")
        if "token" not in message:
            self.send_error("missing_field", "Missing field: token", message_id)
            return
        if since is not None and not isinstance(since, str):
            self.send_error("invalid_field", "Field 'since' must be a cursor string", message_id)
            return
        if kinds is not None and (not isinstance(kinds, list) or not kinds or not set(kinds) <= EVENT_TYPES):
            self.send_error("invalid_field", "Field 'events' must list some of: delivery, receipt", message_id)
            return
        if since is not None:
            try:
                self.context.state.store.cursor_key(since)
            except ValueError:
                self.send_error("invalid_cursor", "Field 'since' is not a cursor this server issued", message_id)
                return
        try:
            session = await self.context.state.tokens.verify(token if isinstance(token, str) else "")
        except InvalidToken:
            self.send_error("invalid_token", "Invalid token", message_id)
            return
        if self.is_closed:
            return
        binding = self.context.registry.bind(self, session.account["id"], session.token["id"],
                                             float(session.token["exp"]), frozenset(kinds) if kinds else None)
        reply: dict[str, Any] = {"type": "subscribed"}
        if message_id is not None:
            reply["id"] = message_id
        if since is None:
            self.send_json(reply)
            return

        def announce(recovered: bool) -> None:
            self.send_json({**reply, "recovered": recovered})

        await self.context.dispatcher.resume(binding, since, announce)

    async def handle_unsubscribe(self, message: dict[str, Any]) -> None:
        message_id = message.get("id") if isinstance(message.get("id"), str) else None
        if self.context.registry.unbind(self) is None:
            self.send_error("not_subscribed", "Not subscribed", message_id)
            return
        reply: dict[str, Any] = {"type": "unsubscribed"}
        if message_id is not None:
            reply["id"] = message_id
        self.send_json(reply)
