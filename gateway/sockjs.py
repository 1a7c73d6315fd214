"""The project's SockJS layer: sockjs-tornado's router with the project's transports.

``/ws`` and ``gateway conformance`` are both built from :class:`Router` and
:func:`router_settings`, so the conformance suite measures what users get.
``/ws/info`` says ``cookie_needed: false`` (the router gets ``jsessionid:
False``); the transport fixes are in :mod:`gateway.sockjs_transports`.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from sockjs.tornado import SockJSRouter, session
from sockjs.tornado.util import bytes_to_str

from gateway.config import Config
from gateway.sockjs_transports import OVERRIDES


def router_settings(config: Config, **extra: Any) -> dict[str, Any]:
    """The sockjs-tornado settings a gateway runs with (``extra`` on top)."""
    return {
        "jsessionid": False,
        "disconnect_delay": config.ws_disconnect_delay,
        "heartbeat_delay": config.ws_heartbeat,
        "sockjs_url": config.ws_sockjs_url,
        # Queue what a session sends during one loop iteration into one frame:
        # many concurrent responses then cost one write instead of one each.
        "immediate_flush": False,
        **extra,
    }


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
                self.server.io_loop.add_callback(self.flush)
                self._pending_flush = True
        if stats:
            self.stats.on_pack_sent(1)

    def flush(self) -> None:
        """Send everything queued as one frame, if a transport is attached."""
        self._pending_flush = False
        handler = self.handler
        if handler is None or not handler.active or not self.send_queue:
            return
        handler.send_pack(f"a[{','.join(self.send_queue)}]")
        self.send_queue = []
        self.queued_chars = 0


class Router(SockJSRouter):
    """A SockJS router whose URL table uses the project's fixed handlers.

    Create it inside the running event loop (sockjs-tornado takes the current
    loop at construction).  ``context`` is there for the connections, as
    ``self.session.server.context``.
    """

    _transport_urls: list[tuple[str, type, dict[str, Any]]]  # the stock URL table, set by its __init__

    def __init__(self, connection: type, prefix: str, settings: dict[str, Any], context: Any = None) -> None:
        super().__init__(connection, prefix, settings, session_kls=Session)
        self.context = context
        self._transport_urls = [
            (pattern, OVERRIDES.get(handler, handler), kwargs) for pattern, handler, kwargs in self._transport_urls
        ]

    def stop(self) -> None:
        """Stop the sweeper that expires idle polling sessions."""
        self._sessions_cleanup.stop()
