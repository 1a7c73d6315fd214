"""The websocket transports: SockJS-framed and raw, with hixie-76 for the protocol suite."""

from __future__ import annotations

from typing import Any

from sockjs.tornado.transports import rawwebsocket, websocket
from sockjs.tornado.util import bytes_to_str
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol

from gateway.sockjs.hixie76 import WebSocketProtocol76
from gateway.sockjs.rfc6455 import FrameProtocol
from gateway.sockjs.rfc6455_upgrade import suits
from gateway.sockjs.transports.common import LOG, decode_messages


class WebSocketFixesMixin(WebSocketHandler):
    """Shared by the SockJS and raw websocket transports.

    * Non-GET requests: ``sockjs.tornado.websocket.SockJSWebSocketHandler.
      _execute`` answers 405 with a text body (and Tornado's default
      ``text/html`` Content-Type); the protocol wants a bodiless 405 with an
      ``Allow`` header and no Content-Type.  ``_execute`` is the only hook
      that runs before the stock one, so it is overridden the same way.
    * hixie-76: selected in ``get_websocket_protocol`` when the request has
      ``Sec-WebSocket-Key1/2`` and no ``Sec-WebSocket-Version``.
    * Version 13: frames are read and written by :class:`gateway.sockjs.rfc6455.FrameProtocol`
      on an asyncio transport instead of Tornado's ``IOStream`` (a frame costs one parse, not
      three or four awaited reads), and ``send_pack`` writes to it without a future.
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
        connection = self.ws_connection
        try:
            if isinstance(connection, FrameProtocol):
                connection.send(message, binary)
            else:
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
        if suits(self):
            return FrameProtocol(self)  # type: ignore[return-value]  # the same interface, on asyncio
        return super().get_websocket_protocol()


class WebSocketTransport(WebSocketFixesMixin, websocket.WebSocketTransport):
    """``/<server>/<session>/websocket``.

    Stock ``on_message`` logs a full ``LOG.exception`` traceback when the
    client sends invalid JSON - a client error the protocol answers by
    dropping the connection (``Websocket.test_broken_json``).  Decoding
    errors are now logged at debug level; errors raised by the application's
    ``on_message`` are still logged with a traceback.
    """

    #: Each frame goes to the socket as it is sent (``Session.send_jsonified_now`` may skip the queue).
    sends_at_once = True

    def on_message(self, message: str | bytes) -> None:
        # SockJS requires that empty messages are ignored.
        if not message or not self.session:
            return

        try:
            msg = decode_messages(bytes_to_str(message))
        except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
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
