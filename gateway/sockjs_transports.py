"""The project's fixes to sockjs-tornado 1.0.7's transports, so it speaks the SockJS protocol.

Nothing in the installed ``sockjs.tornado`` package is edited: every fix is a
subclass of one of its handler classes, and :data:`OVERRIDES` maps each stock
class to its replacement for :class:`gateway.sockjs.Router`'s URL table.
With them the public sockjs-protocol suite passes 68/68 (``docs/protocol.md``
says how to run it); ``tests/test_sockjs_conformance.py`` keeps each fix.

* ``Cache-Control`` of non-cacheable responses gains ``no-transform``.
* xhr-polling and jsonp-polling answer each request with exactly one frame
  (a close frame sent from ``on_open`` used to overflow the committed
  ``Content-Length``: ``HTTPOutputError`` in the log and a hung client).
* jsonp: ``/**/`` prefix before the callback; jsonp and htmlfile callbacks
  are validated (they are reflected into a script: an injection hole).
* eventsource: ``Content-Type: text/event-stream`` without a charset.
* HTTP/1.0 streaming: the connection closes when a streaming response ends.
* xhr_send keeps ``text/plain`` on its 204; jsonp_send client errors are not
  logged as server errors.
* iframe page of the current protocol; ``/info`` entropy within 32 bits.
* htmlfile frames escaped for their inline ``<script>``; heartbeats on the
  streaming transports.
* websocket: bodiless 405 with ``Allow: GET`` for non-GET; broken JSON drops
  the connection without a traceback; a send to a closing websocket ends the
  session instead of raising ``WebSocketClosedError``; raw ``/websocket`` closes with the
  session's code and reason; hixie-76 (:mod:`gateway.hixie76`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs

from sockjs.tornado import proto, static
from sockjs.tornado.router import SockJSRouter
from sockjs.tornado.transports import eventsource, htmlfile, jsonp, rawwebsocket, websocket, xhr, xhrstreaming
from sockjs.tornado.transports.htmlfile import HTMLFILE_HEAD
from sockjs.tornado.util import asynchronous, bytes_to_str
from tornado.escape import utf8
from tornado.web import RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from gateway.hixie76 import WebSocketProtocol76

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


def _callback_error(callback: str | None) -> str | None:
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


# ---------------------------------------------------------------------------
# Polling transports
# ---------------------------------------------------------------------------


class XhrPollingTransport(NoTransformMixin, SinglePollResponseMixin, xhr.XhrPollingTransport):
    """``/<server>/<session>/xhr``: no-transform; one frame per response."""


class XhrSendHandler(NoTransformMixin, xhr.XhrSendHandler):
    """``/<server>/<session>/xhr_send``.

    * no-transform.
    * The protocol wants ``Content-Type: text/plain`` even on the 204 (else
      Firefox tries to parse the empty body as XML and logs an error), and
      the stock handler sets it - but Tornado >= 5's ``finish()`` strips
      Content-Type from 204 responses.  Flushing the headers before Tornado's
      automatic ``finish()`` keeps it (no body, no Content-Length needed:
      a 204 never has a body).
    """

    def post(self, session_id: str) -> None:
        super().post(session_id)
        if self.get_status() == 204:
            self.flush()


class JsonpCommentPrefixMixin(jsonp.JSONPTransport):
    """jsonp frame as ``/**/callback("<frame>");``.

    The leading empty comment defends against Rosetta-Flash style attacks
    (a response body that starts with attacker-chosen bytes can be loaded
    as a SWF); sockjs-node sends it and the suite requires it.  The stock
    ``send_pack`` builds the body inline, so it is replaced.
    """

    callback: str

    def send_pack(self, message: str, binary: bool = False) -> None:
        if binary:
            raise ValueError("binary not supported for JSONPTransport")

        self.active = False
        body = utf8(f"/**/{self.callback}({proto.json_encode(message)});\r\n")
        try:
            self.set_header("Content-Type", "application/javascript; charset=UTF-8")
            # Length of the encoded body (stock uses len() of the str).
            self.set_header("Content-Length", len(body))
            self.write(body)
            self.flush().add_done_callback(self.send_complete)
        except OSError:
            # Connection dropped: close the session on the next tick instead
            # of propagating the error (same as stock).
            if self.session is not None:
                self.session.delayed_close()


class JSONPTransport(NoTransformMixin, SinglePollResponseMixin, JsonpCommentPrefixMixin):
    """``/<server>/<session>/jsonp?c=<callback>``.

    no-transform; one frame per response; ``/**/`` prefix; and the callback,
    reflected into a script, is validated: missing -> 500 ``"callback"
    parameter required``, outside ``[a-zA-Z0-9-_.]`` -> 500 ``invalid
    "callback" parameter`` (stock accepts anything).
    """

    def get(self, session_id: str) -> Awaitable[None] | None:
        error = _callback_error(self.get_argument("c", None, strip=False))
        if error:
            self.handle_session_cookie()
            self.disable_cache()
            self.set_status(500)
            self.finish(error)
            return None
        # Stock ``get`` re-reads ``c`` into ``self.callback`` and attaches.
        return super().get(session_id)


class JSONPSendHandler(NoTransformMixin, jsonp.JSONPSendHandler):
    """``/<server>/<session>/jsonp_send``.

    * no-transform.
    * A form body without a ``d`` field is a client error (500 "Payload
      expected."), but stock logs it with ``LOG.exception`` - an ERROR line
      with a bogus ``NoneType: None`` traceback.  Client errors are now
      logged at debug level; only a failing application ``on_message`` is
      logged as an error.
    * The form is parsed with ``parse_qs`` and the media type is compared
      without parameters, so ``d`` need not be the first field and
      ``application/x-www-form-urlencoded; charset=UTF-8`` is accepted (stock
      requires the exact string and ``d=`` at offset 0).
    """

    def post(self, session_id: str) -> None:
        self.preflight()
        self.handle_session_cookie()
        self.disable_cache()

        session = self._get_session(session_id)
        if session is None or session.is_closed:
            self.set_status(404)
            return

        data = bytes_to_str(self.request.body)
        media_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type == "application/x-www-form-urlencoded":
            data = parse_qs(data).get("d", [""])[0]

        if not data:
            LOG.debug("jsonp_send: payload expected")
            self.set_status(500)
            self.write("Payload expected.")
            return

        try:
            messages = proto.json_decode(data)
        except ValueError:
            LOG.debug("jsonp_send: broken JSON encoding")
            self.set_status(500)
            self.write("Broken JSON encoding.")
            return

        try:
            session.on_messages(messages)
        except Exception:
            LOG.exception("jsonp_send: on_message() failed")
            session.close()
            self.set_status(500)
            self.write("Message handler failed.")
            return

        # 200 with a body rather than 204: Konqueror mishandles 204 here.
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.write("ok")


# ---------------------------------------------------------------------------
# Streaming transports
# ---------------------------------------------------------------------------


class XhrStreamingTransport(NoTransformMixin, Http10StreamingMixin, StreamingMixin, xhrstreaming.XhrStreamingTransport):
    """``/<server>/<session>/xhr_streaming``: no-transform; HTTP/1.0 close; heartbeats."""


class EventSourceTransport(NoTransformMixin, Http10StreamingMixin, StreamingMixin, eventsource.EventSourceTransport):
    """``/<server>/<session>/eventsource``.

    Stock sends ``text/event-stream; charset=UTF-8``; the protocol (and the
    suite) expects plain ``text/event-stream`` - the EventSource spec fixes
    the encoding to UTF-8, a charset parameter is redundant.  The header is
    set inside the stock ``get`` before the prelude is flushed, so ``get``
    is re-implemented.
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        # sockjs-client passes every eventsource message through decodeURI (as
        # sockjs-node encodes them): a raw '%' would be mangled or throw, and a
        # line break would end the event early.
        super().send_pack(message.translate(EVENTSOURCE_ESCAPES), binary)

    @asynchronous
    def get(self, session_id: str) -> None:
        self.begin_stream("text/event-stream")
        self.start_stream(session_id, "\r\n")  # the prelude: a new line, for an old Opera bug


class HtmlFileTransport(NoTransformMixin, Http10StreamingMixin, StreamingMixin, htmlfile.HtmlFileTransport):
    """``/<server>/<session>/htmlfile?c=<callback>``.

    Stock ``get`` has no validation (any ``c`` is accepted after stripping
    ``[\\W_]``), which the suite rejects, and the stripping mangles real
    sockjs-client callbacks such as ``_jp.abc123`` into ``jpabc123``.  The
    callback is validated like jsonp's and then used verbatim (it can only
    contain ``[a-zA-Z0-9-_.]``, so no HTML escaping is needed).
    """

    def send_pack(self, message: str, binary: bool = False) -> None:
        """Stock ``send_pack``, with the frame escaped for the inline script it is written into
        (stock writes ``</script>`` from a message as it is: the rest of the frame became markup)."""
        if binary:
            raise ValueError("binary frames are not supported by the htmlfile transport")
        self.active = False
        try:
            self.notify_sent(len(message))
            self.write(f"<script>\np({proto.json_encode(message).translate(HTMLFILE_ESCAPES)});\n</script>\r\n")
            self.flush().add_done_callback(self.send_complete)
        except IOError:
            # the connection dropped: close the session instead of raising all the way up
            self.session.delayed_close()
            self._detach()

    @asynchronous
    def get(self, session_id: str) -> None:
        self.begin_stream("text/html; charset=UTF-8")
        callback = self.get_argument("c", None, strip=False)
        error = _callback_error(callback)
        if error:
            self.set_status(500)
            self.finish(error)
            return

        self.start_stream(session_id, HTMLFILE_HEAD % callback)  # padded to > 1 KiB so IE starts rendering


# ---------------------------------------------------------------------------
# Static handlers
# ---------------------------------------------------------------------------

# Current SockJS protocol iframe page (sockjs-node >= 0.3.x serving
# sockjs-client 1.x).  The stock template is the SockJS 0.3 one
# (``_sockjs_onload`` callback, inline script before the src script).
IFRAME_TEXT = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="%s"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


class IFrameHandler(static.IFrameHandler):
    """``/iframe[0-9-.a-z_]*.html`` with the current protocol's template."""

    def get(self) -> None:
        data = utf8(IFRAME_TEXT % self.server.settings["sockjs_url"])
        etag = hashlib.md5(data).hexdigest()

        if etag in (self.request.headers.get("If-None-Match") or ""):
            # 304 must not carry a body nor a Content-Type.
            self.clear_header("Content-Type")
            self.set_status(304)
            return

        self.enable_cache()
        self.set_header("Etag", etag)
        self.write(data)


class InfoHandler(NoTransformMixin, static.InfoHandler):
    """``/info``: no-transform, and an ``entropy`` within 0..2^32-1 (stock draws up to ``sys.maxsize``)."""

    def get(self) -> None:
        self.preflight()
        self.disable_cache()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(json.dumps({
            "websocket": self.server.websockets_enabled,
            "cookie_needed": self.server.cookie_needed,
            "origins": ["*:*"],
            "entropy": random.randint(0, MAX_ENTROPY),
        }))


# ---------------------------------------------------------------------------
# WebSocket transports
# ---------------------------------------------------------------------------


class WebSocketFixesMixin(WebSocketHandler):
    """Shared by the SockJS and raw websocket transports.

    * Non-GET requests: ``sockjs.tornado.websocket.SockJSWebSocketHandler.
      _execute`` answers 405 with a text body (and Tornado's default
      ``text/html`` Content-Type); the protocol wants a bodiless 405 with an
      ``Allow`` header and no Content-Type.  ``_execute`` is the only hook
      that runs before the stock one, so it is overridden the same way.
    * hixie-76: selected in ``get_websocket_protocol`` when the request has
      ``Sec-WebSocket-Key1/2`` and no ``Sec-WebSocket-Version``.
    """

    server: Any  # the SockJS router, set by the stock transports' initialize()

    async def _execute(self, transforms: list[Any], *args: bytes, **kwargs: bytes) -> None:
        if self.request.method != "GET":
            self._transforms = transforms
            self.set_status(405)
            self.set_header("Allow", "GET")
            self.clear_header("Content-Type")
            self.finish()
            return
        await super()._execute(transforms, *args, **kwargs)

    def send_pack(self, message: str, binary: bool = False) -> None:
        # Stock catches only IOError, but Tornado 6 raises WebSocketClosedError (not an IOError)
        # for a websocket that is closing: it escaped into heartbeats and event fan-out.
        try:
            self.write_message(message, binary)
        except (OSError, WebSocketClosedError):
            self.server.io_loop.add_callback(self.on_close)

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        headers = self.request.headers
        if (
            "Sec-WebSocket-Version" not in headers
            and "Sec-WebSocket-Key1" in headers
            and "Sec-WebSocket-Key2" in headers
        ):
            return WebSocketProtocol76(self)
        return super().get_websocket_protocol()


class WebSocketTransport(WebSocketFixesMixin, websocket.WebSocketTransport):
    """``/<server>/<session>/websocket``.

    Stock ``on_message`` logs a full ``LOG.exception`` traceback when the
    client sends invalid JSON - a client error the protocol answers by
    dropping the connection (``Websocket.test_broken_json``).  Decoding
    errors are now logged at debug level; errors raised by the application's
    ``on_message`` are still logged with a traceback.
    """

    def on_message(self, message: str | bytes) -> None:
        # SockJS requires that empty messages are ignored.
        if not message or not self.session:
            return

        try:
            msg = proto.json_decode(bytes_to_str(message))
        except ValueError:
            LOG.debug("WebSocket: broken JSON from client, aborting connection")
            self.abort_connection()
            return

        try:
            self.session.on_messages(msg if isinstance(msg, list) else (msg,))
        except Exception:
            LOG.exception("WebSocket")
            self.abort_connection()


class RawWebSocketTransport(WebSocketFixesMixin, rawwebsocket.RawWebSocketTransport):
    """``/websocket`` (raw, unframed).

    Stock ``session_closed`` calls ``self.close()`` without a code, so the
    client sees no close reason; the protocol wants the session's close
    code and reason (3000 "Go away!") in the WebSocket close frame.
    """

    def session_closed(self) -> None:
        code, reason = self.session.get_close_reason() if self.session else (3000, "Go away!")
        try:
            self.close(code, reason)
        except OSError:
            pass
        finally:
            self._detach()


#: sockjs-tornado's handler classes and the project's replacements.
OVERRIDES: dict[type, type] = {
    xhr.XhrPollingTransport: XhrPollingTransport,
    xhr.XhrSendHandler: XhrSendHandler,
    jsonp.JSONPTransport: JSONPTransport,
    jsonp.JSONPSendHandler: JSONPSendHandler,
    xhrstreaming.XhrStreamingTransport: XhrStreamingTransport,
    eventsource.EventSourceTransport: EventSourceTransport,
    htmlfile.HtmlFileTransport: HtmlFileTransport,
    websocket.WebSocketTransport: WebSocketTransport,
    rawwebsocket.RawWebSocketTransport: RawWebSocketTransport,
    static.IFrameHandler: IFrameHandler,
    static.InfoHandler: InfoHandler,
}
