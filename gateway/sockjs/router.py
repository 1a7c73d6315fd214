"""sockjs-tornado's router and session with the project's transports and fixes.

``/ws`` and ``gateway conformance`` are both built from :class:`Router`, with
the same settings, so the conformance suite measures what users get.
``/ws/info`` says ``cookie_needed: false`` when the router gets ``jsessionid:
False``; the transport fixes are in :mod:`gateway.sockjs.transports`.  This
package knows nothing else of the project's.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as json_string
from typing import Any, Callable

from sockjs.tornado import SockJSRouter, session
from sockjs.tornado.util import bytes_to_str

from gateway.sockjs.transports import OVERRIDES


class Session(session.Session):
    """sockjs-tornado's session with its send queue kept as a list of messages.

    Stock appends every message to a ``str`` attribute (``send_queue += msg``),
    which copies the whole queue each time: with ``immediate_flush`` off, the
    16-27 tunneled responses of ~15 KB that share a frame were copied over and
    over, 1-3 MB per frame.  Here the frame is joined once when it is flushed.  ``send_queue``
    stays falsy when empty, which is all the stock transports ask of it.
    """

    send_queue: list[str]  # type: ignore[assignment]
    _pending_flush: bool  # set by the stock __init__

    def __init__(self, conn: Any, server: Any, session_id: str, expiry: float | None = None) -> None:
        super().__init__(conn, server, session_id, expiry)
        self.send_queue = []
        #: Characters in ``send_queue`` (with the commas that will join them): kept as it
        #: changes, since a stalled poller's queue is measured on every event sent to it.
        self.queued_chars = 0
        #: The client address that opened it (polling and streaming transports): only it may use it.
        self.client_address: str | None = None

    def on_messages(self, msg_list: Any) -> None:
        """Stock ``on_messages``, for a frame that is not a list too (xhr_send with ``{"a":1}`` or
        ``123``): that is one message, which the connection answers as malformed, instead of a
        TypeError that stock turns into a 500 and a closed session."""
        super().on_messages(msg_list if isinstance(msg_list, list) else [msg_list])

    def send_message(self, msg: str | bytes, stats: bool = True, binary: bool = False) -> None:
        """Stock ``send_message`` (the message as a JSON string), with the string escaper
        called directly rather than through the generic encoder."""
        self.send_jsonified(json_string(bytes_to_str(msg)), stats)

    def send_jsonified(self, msg: str | bytes, stats: bool = True) -> None:
        """Queue a message that is already a JSON string (stock semantics, list queue)."""
        text: str = bytes_to_str(msg)
        handler = self.handler
        if self._immediate_flush and handler is not None and handler.active and not self.send_queue:
            handler.send_pack(f"a[{text}]")
        else:
            self.queued_chars += len(text) + (1 if self.send_queue else 0)
            self.send_queue.append(text)
            if self._immediate_flush:
                self.flush()
            elif not self._pending_flush:
                # the asyncio loop's own call_soon: Tornado's add_callback wraps each callback (a
                # partial, then its _run_callback), 2.1 against 0.4 us, once per session per event
                self.server.io_loop.asyncio_loop.call_soon(self.flush)
                self._pending_flush = True
        if stats:
            self.stats.on_pack_sent(1)

    def send_jsonified_now(self, msg: str) -> None:
        """:meth:`send_jsonified`, written at once when a websocket that takes frames as they come
        is attached and nothing waits in the queue (the order stays the same); else queued as usual.
        For messages that come one at a time (events): nothing to gather them with, so no turn of
        the loop to wait for (the queue, its callback and its join, ten times an email in a fan-out)."""
        handler = self.handler
        if handler is not None and handler.active and not self.send_queue and getattr(handler, "sends_at_once", False):
            handler.send_pack(f"a[{msg}]")
            self.stats.on_pack_sent(1)
        else:
            self.send_jsonified(msg)

    def flush(self) -> None:
        """Send everything queued as one frame, if a transport is attached."""
        self._pending_flush = False
        handler = self.handler
        if handler is None or not handler.active or not self.send_queue:
            return
        handler.send_pack(f"a[{','.join(self.send_queue)}]")
        self.send_queue = []
        self.queued_chars = 0


def backlog(session: Any) -> int:
    """Bytes sent to a session that its client has not taken yet (any session: a raw
    ``/websocket`` one is sockjs-tornado's own ``RawSession``, which queues nothing).

    That is what the socket could not send yet, plus the queue while no
    transport is attached (a polling client that stopped polling).  The
    queue of an attached transport is flushed every loop turn: not a backlog.
    """
    handler = session.handler
    connection = getattr(handler, "ws_connection", None)
    unsent_of = getattr(connection, "unsent", None)  # a FrameProtocol's transport
    if unsent_of is not None:
        unsent: int = unsent_of()
    else:
        stream = getattr(connection, "stream", None) or getattr(getattr(handler, "request", None), "connection", None)
        stream = getattr(stream, "stream", stream)
        # tornado's IOStream keeps its unsent byte count in a private field; this is the one reader of it
        unsent = getattr(stream, "_write_buffer_size", 0)
    if handler is None or not handler.active:
        unsent += getattr(session, "queued_chars", 0)
    return unsent


class Router(SockJSRouter):
    """A SockJS router whose URL table uses the project's fixed handlers.

    ``connection`` makes the connection of each new session: called with the
    session, as sockjs-tornado calls a connection class, so a factory that
    hands the connection what it needs works as well as a class.  Create the
    router inside the running event loop (sockjs-tornado takes the current
    loop at construction).
    """

    _transport_urls: list[tuple[str, type, dict[str, Any]]]  # the stock URL table, set by its __init__

    def __init__(self, connection: Callable[[Any], Any], prefix: str, settings: dict[str, Any]) -> None:
        super().__init__(connection, prefix, settings, session_kls=Session)
        self._transport_urls = [
            (pattern, OVERRIDES.get(handler, handler), kwargs) for pattern, handler, kwargs in self._transport_urls
        ]

    def stop(self) -> None:
        """Stop the sweeper that expires idle polling sessions."""
        self._sessions_cleanup.stop()
