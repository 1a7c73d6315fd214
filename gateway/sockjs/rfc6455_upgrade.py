"""The HTTP side of a websocket upgrade served by :class:`~gateway.sockjs.rfc6455.FrameProtocol`:
which requests it serves, the handshake answered as Tornado answers it, and the socket taken
from Tornado's stream once the 101 is out."""

from __future__ import annotations

import socket

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13


def suits(handler: WebSocketHandler) -> bool:
    """Whether :class:`~gateway.sockjs.rfc6455.FrameProtocol` serves this handler's request:
    version 13, no Tornado pings, no compression."""
    return (handler.request.headers.get("Sec-WebSocket-Version") == "13" and not handler.ping_interval
            and handler.get_compression_options() is None)


def answer_upgrade(handler: WebSocketHandler) -> tuple[bool, str | None]:
    """Answer the upgrade as Tornado does: whether it was accepted (101; else 400 was answered), and
    the subprotocol chosen."""
    headers = handler.request.headers
    if not all(headers.get(name) for name in ("Host", "Sec-Websocket-Key", "Sec-Websocket-Version")):
        handler.set_status(400)
        handler.finish("Missing/Invalid WebSocket headers")
        return False, None
    offered = headers.get("Sec-WebSocket-Protocol")
    subprotocols = [s.strip() for s in offered.split(",")] if offered else []
    selected = handler.select_subprotocol(subprotocols)
    if selected:
        assert selected in subprotocols
        handler.set_header("Sec-WebSocket-Protocol", selected)
    handler.clear_header("Content-Type")
    handler.set_status(101)
    handler.set_header("Upgrade", "websocket")
    handler.set_header("Connection", "Upgrade")
    handler.set_header("Sec-WebSocket-Accept", WebSocketProtocol13.compute_accept_value(headers["Sec-Websocket-Key"]))
    handler.finish()
    return True, selected


async def take_socket(handler: WebSocketHandler) -> tuple[socket.socket, bytes] | None:
    """Once the 101 is out, the connection's socket (a duplicate: Tornado's stream is closed) and what
    the client sent after its handshake; None when the connection went away first."""
    # RequestHandler.detach, not WebSocketHandler._detach_stream: that one also sets seven guard
    # methods on the handler (1.5 KiB of instance dict per open websocket)
    stream = handler.detach()
    request = handler.request
    request.connection = request.server_connection = None  # nor keep Tornado's connection and its stream
    try:
        await stream.write(b"")  # the 101 is out (at once, nearly always): from here the socket is ours alone
        # what the client sent right after its handshake, read along with it (tornado keeps no public way to it)
        early = stream._consume(stream._read_buffer_size)
        sock = stream.socket.dup()
    except (StreamClosedError, OSError):
        stream.close()
        return None
    stream.close()  # Tornado lets go of its descriptor; the duplicate keeps the connection
    return sock, early
