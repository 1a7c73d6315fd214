"""Server side of the hixie-76 WebSocket draft, which Tornado dropped in 3.0.

Only the SockJS protocol suite's ``Websocket.test_haproxy`` still speaks it
(HAProxy forwards the 8-byte key3 nonce only after the upgrade, so the 101
headers must be written before reading it); browsers moved on around 2012.
Selected by :class:`gateway.sockjs.transports.websocket.WebSocketFixesMixin`.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from typing import Any

from tornado import httputil, iostream
from tornado.concurrent import Future
from tornado.escape import utf8
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol


class WebSocketProtocol76(WebSocketProtocol):
    """Server side of draft-hixie-thewebsocketprotocol-76 (hixie-76).

    Tornado dropped hixie-76 in 3.0, answering such handshakes with 426.
    The sockjs-protocol suite still checks it (``Websocket.test_haproxy``):
    the server must write the 101 response headers *before* reading the
    8-byte key3 nonce, which HAProxy only forwards after the upgrade.

    Framing: text frames are ``0x00 <utf-8> 0xFF``; ``0xFF 0x00`` closes.
    Length-prefixed (binary) frames are not supported and abort the
    connection.  Close codes and reasons do not exist in this draft.
    """

    CLOSE_TIMEOUT = 5.0  # seconds to wait for the client's closing frame

    def __init__(self, handler: WebSocketHandler) -> None:
        super().__init__(handler)
        self._waiting: object | None = None

    @staticmethod
    def challenge_response(key1: str, key2: str, key3: bytes) -> bytes:
        """md5 of the two key numbers (digits / spaces) and the nonce."""

        def key_number(key: str) -> int:
            digits = int("".join(c for c in key if c.isdigit()) or "0")
            spaces = key.count(" ")
            if spaces == 0 or digits % spaces or digits // spaces > 0xFFFFFFFF:
                raise ValueError("Invalid Sec-WebSocket-Key")
            return digits // spaces

        return hashlib.md5(struct.pack(">II", key_number(key1), key_number(key2)) + key3).digest()

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        request = handler.request
        key1 = request.headers.get("Sec-WebSocket-Key1", "")
        key2 = request.headers.get("Sec-WebSocket-Key2", "")
        try:
            self.challenge_response(key1, key2, b"\0" * 8)  # validate early
        except ValueError:
            handler.set_status(400)
            handler.finish("Invalid hixie-76 WebSocket keys")
            return

        scheme = "wss" if request.protocol == "https" else "ws"
        handler.clear_header("Content-Type")
        handler.set_status(101, "WebSocket Protocol Handshake")
        handler.set_header("Upgrade", "WebSocket")
        handler.set_header("Connection", "Upgrade")
        handler.set_header("Sec-WebSocket-Origin", request.headers.get("Origin", "null"))
        handler.set_header("Sec-WebSocket-Location", f"{scheme}://{request.host}{request.uri}")
        handler.finish()
        self.stream = handler._detach_stream()

        try:
            key3 = await self.stream.read_bytes(8)
            self.stream.write(self.challenge_response(key1, key2, key3))
        except iostream.StreamClosedError:
            self._abort()
            handler.on_ws_connection_close(None, None)
            return

        try:
            open_result = handler.open(*handler.open_args, **handler.open_kwargs)
            if open_result is not None:
                await open_result
        except Exception:  # noqa: BLE001 - same as Tornado's WebSocketProtocol13: log, abort
            handler.log_exception(*sys.exc_info())
            self._abort()
            return

        await self._receive_frame_loop()

    async def _receive_frame_loop(self) -> None:
        assert self.stream is not None
        try:
            while not self.client_terminated:
                frame_type = (await self.stream.read_bytes(1))[0]
                if frame_type == 0x00:
                    data = await self.stream.read_until(b"\xff")
                    result = self._run_callback(self.handler.on_message, data[:-1].decode("utf-8"))
                    if result is not None:
                        await result
                elif frame_type == 0xFF:
                    await self.stream.read_bytes(1)  # the 0x00 of 0xFF 0x00
                    self.client_terminated = True
                    self.close()
                else:
                    # Length-prefixed frames: unsupported by this server.
                    self._abort()
        except (iostream.StreamClosedError, UnicodeDecodeError):
            self._abort()
        finally:
            self.handler.on_ws_connection_close(None, None)

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> Future[None]:
        if binary:
            raise ValueError("hixie-76 WebSocket does not support binary frames")
        if self.stream is None or self.is_closing():
            raise WebSocketClosedError()
        try:
            return self.stream.write(b"\x00" + utf8(message) + b"\xff")  # type: ignore[arg-type]
        except iostream.StreamClosedError:
            raise WebSocketClosedError() from None

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.stream is None:
            return
        if not self.server_terminated:
            if not self.stream.closed():
                try:
                    self.stream.write(b"\xff\x00")
                except iostream.StreamClosedError:
                    pass
            self.server_terminated = True
        if self.client_terminated:
            if self._waiting is not None:
                self.stream.io_loop.remove_timeout(self._waiting)
                self._waiting = None
            self.stream.close()
        elif self._waiting is None:
            self._waiting = self.stream.io_loop.add_timeout(
                self.stream.io_loop.time() + self.CLOSE_TIMEOUT, self._abort
            )

    def is_closing(self) -> bool:
        return self.stream is None or self.stream.closed() or self.client_terminated or self.server_terminated

    @property
    def selected_subprotocol(self) -> str | None:
        return None

    def write_ping(self, data: bytes) -> None:
        raise ValueError("hixie-76 WebSocket has no ping frames")

    def _process_server_headers(self, key: str | bytes, headers: httputil.HTTPHeaders) -> None:
        raise NotImplementedError("client side of hixie-76 is not implemented")

    def start_pinging(self) -> None:
        pass  # no ping frames in hixie-76

    def set_nodelay(self, x: bool) -> None:
        assert self.stream is not None
        self.stream.set_nodelay(x)
