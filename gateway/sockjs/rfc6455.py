"""RFC 6455 websocket frames read and written by an asyncio Protocol, under Tornado's WebSocketHandler.

Tornado's ``WebSocketProtocol13`` reads each frame with three or four awaited
``IOStream.read_bytes`` calls, each registering and unregistering the socket
with the selector, and wraps each write in a task: about half of a SockJS echo
server's time (docs/benchmarks.md).  :class:`FrameProtocol` lets Tornado do the
HTTP side of the upgrade (the handler's checks, the 101 response, the access
log), then moves the socket from its ``IOStream`` to an asyncio transport: each
socket read is parsed for every frame it holds in one call, and each message
is one ``transport.write``.  No coroutine waits per connection.

Kept as Tornado does it: the handshake's checks and answers; aborting the
connection (no close frame) on reserved bits, unknown opcodes, invalid UTF-8,
fragmented or oversized control frames and broken fragmentation; close 1009
then abort for a message over the handler's ``max_message_size``; echoing the
client's close code; waiting 5 s for the client's close frame after ours.
Added: an unmasked client frame is refused (RFC 6455 section 5.1: close 1002);
reading pauses while the transport's write buffer is over its high-water mark
(a client that does not read its answers cannot make the server buffer more)
and resumes when the server closes.  Not offered: permessage-deflate (never
negotiated) and Tornado's own pings (``websocket_ping_interval``); a handler
asking for either keeps Tornado's protocol (:func:`~gateway.sockjs.rfc6455_upgrade.suits`).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, cast

from tornado import gen
from tornado.concurrent import future_add_done_callback
from tornado.escape import json_encode
from tornado.util import _websocket_mask as websocket_mask  # the C one of tornado.speedups when built
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from gateway.sockjs.rfc6455_upgrade import answer_upgrade, suits, take_socket

CLOSE_TIMEOUT = 5.0  # seconds the client has to answer our close frame (Tornado's figure)
# why reading is paused (bits): the client is not reading what we write; a handler's coroutine runs
_WRITE_BACKLOG = 1
_HANDLER = 2


def frame(first_byte: int, payload: bytes) -> bytes:
    """One unmasked frame (a server's): FIN and opcode byte, length, payload."""
    length = len(payload)
    if length < 126:
        return bytes((first_byte, length)) + payload
    if length < 0x10000:
        return struct.pack("!BBH", first_byte, 126, length) + payload
    return struct.pack("!BBQ", first_byte, 127, length) + payload


class FrameProtocol(asyncio.Protocol):
    """A handler's websocket (its ``ws_connection``) after the upgrade: the same methods Tornado's
    ``WebSocketProtocol13`` offers the handler, on an asyncio transport."""

    __slots__ = ("handler", "transport", "max_size", "client_terminated", "server_terminated", "close_code",
                 "close_reason", "selected_subprotocol", "_pending", "_pending_size", "_need", "_fragments",
                 "_fragment_opcode", "_waiting", "_paused", "_drain", "_notified")

    def __init__(self, handler: WebSocketHandler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.max_size: int = handler.max_message_size
        self.client_terminated = False
        self.server_terminated = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.selected_subprotocol: str | None = None
        #: Bytes of a frame that has not fully arrived, and how many it takes before parsing is worth it.
        self._pending: list[bytes] | None = None
        self._pending_size = 0
        self._need = 0
        self._fragments: bytearray | None = None  # a fragmented message's payload so far
        self._fragment_opcode = 0
        self._waiting: asyncio.TimerHandle | None = None  # after our close frame: the client's, or abort
        self._paused = 0
        self._drain: list[asyncio.Future[None]] | None = None  # write_message futures waiting for resume_writing
        self._notified = False  # the handler was told the connection closed

    # -- the upgrade ----------------------------------------------------------

    async def accept_connection(self, handler: WebSocketHandler) -> None:
        """Answer the upgrade as Tornado does, then take the socket over from Tornado's stream."""
        answered, self.selected_subprotocol = answer_upgrade(handler)
        if not answered:
            return
        taken = await take_socket(handler)
        if taken is None:
            self._closed()
            return
        sock, early = taken
        if early:
            self._pending, self._pending_size = [early], len(early)  # parsed in connection_made, before any later read
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: self, sock)
        except OSError:
            sock.close()
            self._closed()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses, but alike
        handler = self.handler
        if self._call(handler.open, *handler.open_args, **handler.open_kwargs):
            return  # a coroutine: frames are read once it is done
        if self._pending is not None and not self.client_terminated:
            self.data_received(b"")

    # -- reading --------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need or self._paused & _HANDLER:
                return
            data = b"".join(self._pending)
            self._pending, self._pending_size = None, 0
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Handle every whole frame in ``data``; keep the rest for the next read."""
        pos, end = 0, len(data)
        while not self.client_terminated:
            available = end - pos
            if available < 6:  # the shortest client frame: two bytes, the mask
                self._keep(data, pos, 6)
                return
            first, second = data[pos], data[pos + 1]
            if not second & 0x80:
                self._fail(1002, "client frames must be masked")
                return
            length = second & 0x7F
            opcode = first & 0x0F
            if first & 0x70 or (opcode & 0x8 and (length > 125 or not first & 0x80)) or opcode not in (0, 1, 2, 8, 9, 10):
                self._abort()  # reserved bits (no extension), a control frame fragmented or long, an unknown opcode
                return
            start = pos + 6
            if length == 126:
                start += 2
                if available < 8:
                    self._keep(data, pos, 8)
                    return
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                start += 8
                if available < 14:
                    self._keep(data, pos, 14)
                    return
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
            if length + (len(self._fragments) if self._fragments is not None else 0) > self.max_size:
                self.close(1009, "message too big")
                self._abort()
                return
            stop = start + length
            if stop > end:
                self._keep(data, pos, stop - pos)
                return
            payload = websocket_mask(data[start - 4:start], data[start:stop])
            pos = stop
            if self._frame(first, opcode, payload):  # a handler's coroutine runs: the rest waits for it
                self._keep(data, pos, 0)
                return

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        """Keep ``data[pos:]``, a frame not all here, until ``need`` bytes of it are."""
        if pos < len(data) or need == 0:
            rest = data[pos:] if pos else data
            self._pending, self._pending_size, self._need = [rest], len(rest), need

    def _frame(self, first: int, opcode: int, payload: bytes) -> bool:
        """One whole frame; True when a handler returned a coroutine (reading waits for it)."""
        if opcode & 0x8:
            return self._control(opcode, payload)
        if opcode == 0:
            if self._fragments is None:
                self._abort()  # nothing to continue
                return False
            self._fragments += payload
            if not first & 0x80:
                return False
            opcode, payload, self._fragments = self._fragment_opcode, bytes(self._fragments), None
        elif self._fragments is not None:
            self._abort()  # a new message before the last one ended
            return False
        elif not first & 0x80:
            self._fragment_opcode, self._fragments = opcode, bytearray(payload)
            return False
        if opcode == 2:
            return self._call(self.handler.on_message, payload)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self._abort()
            return False
        return self._call(self.handler.on_message, text)

    def _control(self, opcode: int, payload: bytes) -> bool:
        if opcode == 0x8:
            self.client_terminated = True
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            if len(payload) > 2:
                self.close_reason = payload[2:].decode("utf-8", "replace")
            self.close(self.close_code)  # echo the client's code (RFC 6455 section 5.5.1)
            return False
        if opcode == 0x9:
            if not self.server_terminated and self.transport is not None:
                self.transport.write(frame(0x8A, payload))
            self._call(self.handler.on_ping, payload)
            return False
        return self._call(self.handler.on_pong, payload)

    def _call(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Run a handler method as Tornado does (an exception is logged and aborts the connection);
        True when it returned a coroutine, which reading waits for."""
        try:
            result = callback(*args, **kwargs)
        except Exception:
            self.handler.log_exception(*sys.exc_info())
            self._abort()
            return False
        if result is None:
            return False
        self._pause(_HANDLER)

        def done(future: asyncio.Future[Any]) -> None:
            try:
                future.result()
            except (Exception, asyncio.CancelledError):
                self.handler.log_exception(*sys.exc_info())
                self._abort()
            self._resume(_HANDLER)
            if self._pending is not None and not self.client_terminated:
                self.data_received(b"")

        future_add_done_callback(gen.convert_yielded(result), done)
        return True

    # -- flow control ---------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self._pause(_WRITE_BACKLOG)

    def resume_writing(self) -> None:
        self._resume(_WRITE_BACKLOG)
        self._wake()

    def _wake(self) -> None:
        waiters, self._drain = self._drain, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def unsent(self) -> int:
        """Bytes written that the socket has not taken yet."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    # -- writing: what Tornado's WebSocketProtocol13 offers the handler ------------

    def send(self, message: str | bytes, binary: bool = False) -> None:
        """Write one message (``write_message`` without its future); WebSocketClosedError once closing."""
        transport = self.transport
        if self.server_terminated or self.client_terminated or transport is None or transport.is_closing():
            raise WebSocketClosedError()
        transport.write(frame(0x82 if binary else 0x81, message.encode() if isinstance(message, str) else message))

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> asyncio.Future[None]:
        """Tornado's: the future is done at once, or, while the client is not reading, when it reads again."""
        self.send(json_encode(message) if isinstance(message, dict) else message, binary)
        future = asyncio.get_running_loop().create_future()
        if self._paused & _WRITE_BACKLOG:
            if self._drain is None:
                self._drain = []
            self._drain.append(future)
        else:
            future.set_result(None)
        return future

    def write_ping(self, data: bytes) -> None:
        if len(data) > 125:
            raise ValueError("control frame payloads may not exceed 125 bytes")
        if self.transport is None or self.transport.is_closing():
            raise WebSocketClosedError()
        self.transport.write(frame(0x89, data))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send a close frame (once), then close when the client answered, or abort after 5 s."""
        transport = self.transport
        if not self.server_terminated:
            if transport is not None and not transport.is_closing():
                if code is None and reason is not None:
                    code = 1000  # normal closure
                payload = b"" if code is None else struct.pack(">H", code)
                if reason is not None:
                    payload += reason.encode()
                if len(payload) > 125:
                    raise ValueError("control frame payloads may not exceed 125 bytes")
                transport.write(frame(0x88, payload))
            self.server_terminated = True
        if transport is None:
            return
        if self.client_terminated:
            if self._waiting is not None:
                self._waiting.cancel()
                self._waiting = None
            transport.close()  # after what is buffered is sent
        elif self._waiting is None:
            self._waiting = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._abort)
            self._resume(_WRITE_BACKLOG)  # the client's close frame must be read

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` and stop reading (a protocol error of the client's)."""
        self.client_terminated = True
        self.close(code, reason)

    def is_closing(self) -> bool:
        transport = self.transport
        return self.client_terminated or self.server_terminated or transport is None or transport.is_closing()

    def set_nodelay(self, value: bool) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))

    @property
    def stream(self) -> FrameProtocol:
        """sockjs-tornado's ``open`` calls ``ws_connection.stream.set_nodelay``: this object has it."""
        return self

    # -- closing --------------------------------------------------------------

    def _abort(self) -> None:
        """Drop the connection at once (what is unsent is lost)."""
        self.client_terminated = self.server_terminated = True
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        if self.transport is not None:
            self.transport.abort()

    def on_connection_close(self) -> None:
        """The handler's ``on_connection_close``, as Tornado's protocol: abort."""
        self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_terminated = self.server_terminated = True
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None
        self._wake()
        self._closed()

    def _closed(self) -> None:
        if not self._notified:
            self._notified = True
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)
