"""The endpoints the public SockJS protocol suite tests, from the same SockJS layer as ``/ws``.

``gateway conformance --port 8081`` serves ``/echo`` (4096-byte streaming
limit), ``/close`` (closes each session as it opens), ``/disabled_websocket_echo``
and ``/cookie_needed_echo``, built with :class:`gateway.sockjs.router.Router`
and the settings ``/ws`` runs with, so the suite measures what ``/ws`` users
get.  ``docs/protocol.md`` shows how to run the suite against it.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from sockjs.tornado import SockJSConnection

from gateway.sockjs.access_log import log_request
from gateway.sockjs.router import Router


class EchoConnection(SockJSConnection):
    def on_message(self, message: str) -> None:
        self.send(message)


class CloseConnection(SockJSConnection):
    def on_open(self, info: Any) -> None:
        self.close()  # 3000 "Go away!"

    def on_message(self, message: str) -> None:  # never reached: the session is closed
        pass


def conformance_app(settings: dict[str, Any]) -> tornado.web.Application:
    """The suite's four services with the router ``settings`` of ``/ws``; create inside the running loop."""
    common = {**settings, "response_limit": 4096}
    routers = [
        Router(EchoConnection, "/echo", common),
        Router(CloseConnection, "/close", common),
        Router(EchoConnection, "/disabled_websocket_echo", {**common, "disabled_transports": ["websocket"]}),
        Router(EchoConnection, "/cookie_needed_echo", {**common, "jsessionid": True}),
    ]
    return tornado.web.Application([route for r in routers for route in r.urls], log_function=log_request)
