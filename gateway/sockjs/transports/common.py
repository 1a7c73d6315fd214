"""What several transports share: headers, one-frame polls, HTTP/1.0 streams, heartbeats."""

from __future__ import annotations

import logging
import re
from typing import Any

from sockjs.tornado.router import SockJSRouter
from tornado.web import RequestHandler

from gateway.jsontext import loads_as_json

MAX_ENTROPY = 2**32 - 1
EVENTSOURCE_ESCAPES = str.maketrans({"%": "%25", "\r": "%0D", "\n": "%0A", "\x00": "%00"})
#: An htmlfile frame is a JS string in an inline <script>: "</script>" or "<!--" in a message
#: must not end or bend the script.  In a JS string these escapes mean the same characters.
HTMLFILE_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})

LOG = logging.getLogger("tornado.general")

# SockJS protocol: responses that must never be cached or altered by proxies.
# ``no-transform`` stops proxies (and e.g. mobile carriers' compressors) from
# rewriting or buffering streamed bodies; sockjs-node sends exactly this value.
NO_CACHE_CONTROL = "no-store, no-cache, no-transform, must-revalidate, max-age=0"

# jsonp and htmlfile callbacks are reflected into a script: only these
# characters are allowed, anything else is rejected (protocol: 500).
INVALID_CALLBACK_RE = re.compile(r"[^a-zA-Z0-9\-_.]")


def decode_messages(text: str) -> Any:
    """A frame's JSON from a client (usually a list of message strings), as ``json.loads`` reads it
    (errors included: ``ValueError``; ``RecursionError`` for arrays nested thousands deep): by orjson
    when it is a string or a list of strings, about a seventh of the cost (2.2 -> 0.3 µs for a
    tunneled request's frame)."""
    return loads_as_json(text, _strings)


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(type(item) is str for item in value))


def callback_error(callback: str | None) -> str | None:
    """Return the protocol's error text for a bad ``c`` parameter, or None.

    Read ``c`` with ``get_argument(..., strip=False)``: Tornado strips
    whitespace by default, turning ``c=%20`` into a "missing" callback.
    """
    if not callback:
        return '"callback" parameter required'
    if INVALID_CALLBACK_RE.search(callback):
        return 'invalid "callback" parameter'
    return None


# ---------------------------------------------------------------------------
# Mixins shared by several transports
# ---------------------------------------------------------------------------


def client_address(request: Any, trusted_proxies: frozenset[str]) -> str:
    """The address of the client behind a request: the peer's, or, when the peer is a trusted
    proxy, the nearest address in ``X-Forwarded-For`` that is not one (else ``X-Real-Ip``)."""
    peer: str = request.remote_ip
    if peer not in trusted_proxies:
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    real: str = request.headers.get("X-Real-Ip", "").strip()
    return real or peer


def origin_allowed(handler: Any) -> bool:
    """Whether the request's ``Origin`` (if any) may use SockJS: same-origin always (the iframe
    transports), else as the router's ``allowed_origins`` setting says (None: any)."""
    origin = handler.request.headers.get("Origin")
    allowed = handler.server.settings.get("allowed_origins")
    if origin is None or allowed is None:
        return True
    origin = origin.lower().rstrip("/")
    return origin in allowed or origin.split("://", 1)[-1] == handler.request.host.lower()


class OriginMixin(RequestHandler):
    """CORS for the SockJS endpoints, restricted to the allowed origins.

    Stock echoes any ``Origin`` back as allowed.  Here a page of another origin gets
    no ``Access-Control-Allow-Origin`` (so it cannot read the answer), its preflight
    gets 403, and its request is refused with 403 before it does anything (an
    ``xhr_send`` is a simple request: it needs no preflight).
    """

    server: Any

    def preflight(self) -> None:
        if origin_allowed(self):
            super().preflight()  # type: ignore[misc]

    def verify_origin(self) -> bool:
        return origin_allowed(self)

    def prepare(self) -> None:
        super().prepare()
        if self.request.method != "OPTIONS" and not origin_allowed(self) and not self._finished:
            self.set_status(403)
            self.finish()


class ClientBoundMixin(RequestHandler):
    """For the polling and streaming transports: a session belongs to the address that opened it.

    SockJS lets anyone who knows a session id poll it or send through it; on the
    polling transports the id is the session's only secret.  Here a request for
    an existing session from any other client address is answered 404, as for an
    unknown session.  Behind proxies the address is the one they report, when the
    router's ``trusted_proxies`` setting names them.
    """

    server: Any

    def client_address(self) -> str:
        return client_address(self.request, self.server.settings.get("trusted_proxies", frozenset()))

    def prepare(self) -> None:
        super().prepare()
        if self._finished:
            return
        session_id = self.path_kwargs.get("session_id")
        session = self.server.get_session(session_id) if session_id else None
        owner = getattr(session, "client_address", None)
        if owner is not None and owner != self.client_address():
            LOG.info("a request for a session of another client address was refused")
            self.set_status(404)
            self.finish()

    def _attach_session(self, session_id: str, start_heartbeat: bool = False) -> bool:
        attached: bool = super()._attach_session(session_id, start_heartbeat)  # type: ignore[misc]
        session = getattr(self, "session", None)
        if attached and session is not None and getattr(session, "client_address", "") is None:
            session.client_address = self.client_address()  # the first client to attach owns it
        return attached


class NoTransformMixin(RequestHandler):
    """Overrides ``sockjs.tornado.basehandler.BaseHandler.disable_cache``.

    Stock value lacks ``no-transform``; the suite's ``verify_not_cached``
    requires the exact sockjs-node value.
    """

    def disable_cache(self) -> None:
        self.set_header("Cache-Control", NO_CACHE_CONTROL)


class SinglePollResponseMixin:
    """For polling transports (xhr, jsonp) that answer with one frame.

    ``sockjs.tornado.session.Session.close()`` calls ``handler.send_pack()``
    with the close frame whenever a handler is attached, even when that
    handler already wrote its one frame (``active`` is False) and committed
    a ``Content-Length``.  That happens when the application closes the
    session in ``on_open``: the open frame is written, then the close frame
    overflows the declared length, Tornado raises ``HTTPOutputError`` (an
    "Uncaught exception" in the log) and the client never gets a complete
    response.  Dropping the extra frame is safe: the session is CLOSED, so
    the next poll receives the close frame from ``Session.set_handler``.
    """

    active: bool

    def send_pack(self, message: str, binary: bool = False) -> None:
        # ``active`` is sockjs-tornado's own flag: True until this handler
        # has written its frame (set to False by the stock send_pack).
        if not self.active:
            LOG.debug("Polling response already sent, dropping frame %.20r", message)
            return
        super().send_pack(message, binary)  # type: ignore[misc]


class Http10StreamingMixin(RequestHandler):
    """For streaming transports (xhr_streaming, eventsource, htmlfile).

    A streaming response has neither Content-Length nor (in HTTP/1.0)
    chunked encoding, so the end of the body is signalled only by closing
    the connection.  ``StreamingTransportBase.initialize`` tries to force that
    with ``request.connection.no_keep_alive = True``, an attribute Tornado
    >= 4 no longer reads: an HTTP/1.0 client sending ``Connection:
    Keep-Alive`` keeps the socket open forever and never sees the end of the
    response.  Tornado's HTTP1Connection decides at request-parse time via
    its ``_disconnect_on_finish`` flag (private, present since Tornado 4.0);
    setting it makes Tornado close the socket once the response is flushed.
    """

    def initialize(self, server: SockJSRouter) -> None:
        super().initialize(server)
        if self.request.version != "HTTP/1.1":
            connection = self.request.connection
            if hasattr(connection, "_disconnect_on_finish"):
                connection._disconnect_on_finish = True  # type: ignore[union-attr]


class StreamingMixin:
    """For the streaming transports: heartbeats, and (eventsource, htmlfile) opening the stream.

    Stock xhr_streaming, eventsource and htmlfile attach to their session with
    ``start_heartbeat=False`` and nothing starts it later, so an idle stream
    carried no ``h`` frame at all, and proxies that drop quiet connections cut
    it.  (The polling transports start one themselves when a poll waits.)
    """

    def begin_stream(self, content_type: str) -> None:
        """The headers every stream starts with (before anything that may still fail)."""
        handler: Any = self
        handler.preflight()
        handler.handle_session_cookie()
        handler.disable_cache()
        handler.set_header("Content-Type", content_type)

    def _attach_session(self, session_id: str, start_heartbeat: bool = False) -> bool:
        return super()._attach_session(session_id, True)  # type: ignore[misc,no-any-return]

    def start_stream(self, session_id: str, prelude: str) -> None:
        """Send the prelude, then attach to the session and send what it has queued."""
        handler: Any = self
        handler.write(prelude)
        handler.flush()
        if not self._attach_session(session_id):
            handler.finish()
            return
        if handler.session:
            handler.session.flush()
