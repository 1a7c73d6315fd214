"""The project's SockJS layer: sockjs-tornado's router with the fixes the wire contract needs.

``/ws/info`` must say ``cookie_needed: false`` (no JSESSIONID: the router gets
``jsessionid: False``) and an ``entropy`` within 0..2^32-1 (sockjs-tornado
draws it up to ``sys.maxsize``).
"""

from __future__ import annotations

import json
import random
from typing import Any

import tornado.web
from sockjs.tornado import SockJSRouter, static

from gateway.config import Config

MAX_ENTROPY = 2**32 - 1


class InfoHandler(static.InfoHandler):
    """``GET /ws/info`` with the contract's keys and an entropy that fits 32 bits."""

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


#: sockjs-tornado's handlers replaced by the project's own, keyed by the original class.
OVERRIDES: dict[type, type] = {static.InfoHandler: InfoHandler}


def router_settings(config: Config, **extra: Any) -> dict[str, Any]:
    """The sockjs-tornado settings a gateway runs with."""
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
    loop at construction).  ``context`` is handed to every connection.
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
