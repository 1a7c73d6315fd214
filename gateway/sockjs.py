"""The project's SockJS layer: sockjs-tornado's router with the project's transports.

``/ws`` and ``gateway conformance`` are both built from :class:`Router` and
:func:`router_settings`, so the conformance suite measures what users get.
``/ws/info`` says ``cookie_needed: false`` (the router gets ``jsessionid:
False``); the transport fixes are in :mod:`gateway.sockjs_transports`.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from sockjs.tornado import SockJSRouter

from gateway.config import Config
from gateway.sockjs_transports import OVERRIDES


def router_settings(config: Config, **extra: Any) -> dict[str, Any]:
    """The sockjs-tornado settings a gateway runs with (``extra`` on top)."""
    return {
        "jsessionid": False,
        "disconnect_delay": config.ws_disconnect_delay,
        "heartbeat_delay": config.ws_heartbeat,
        # Queue what a session sends during one loop iteration into one frame:
        # many concurrent responses then cost one write instead of one each.
        "immediate_flush": False,
        **extra,
    }


class Router(SockJSRouter):
    """A SockJS router whose URL table uses the project's fixed handlers.

    Create it inside the running event loop (sockjs-tornado takes the current
    loop at construction).  ``context`` is there for the connections, as
    ``self.session.server.context``.
    """

    def __init__(self, connection: type, prefix: str, settings: dict[str, Any], context: Any = None) -> None:
        super().__init__(connection, prefix, settings)
        self.context = context
        self._transport_urls = [
            (pattern, OVERRIDES.get(handler, handler), kwargs) for pattern, handler, kwargs in self._transport_urls
        ]

    @property
    def routes(self) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
        return self._transport_urls

    def stop(self) -> None:
        """Stop the sweeper that expires idle polling sessions."""
        self._sessions_cleanup.stop()
