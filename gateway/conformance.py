"""The endpoints the public SockJS protocol suite tests, from the same SockJS layer as ``/ws``.

``gateway conformance --port 8081`` serves ``/echo`` (4096-byte streaming
limit), ``/close`` (closes each session as it opens), ``/disabled_websocket_echo``
and ``/cookie_needed_echo``, built with :class:`gateway.sockjs.Router` and
:func:`gateway.sockjs.router_settings`, so the suite measures what ``/ws``
users get.  ``docs/protocol.md`` shows how to run the suite against it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.httpserver
import tornado.web
from sockjs.tornado import SockJSConnection

from gateway.app import log_request
from gateway.config import Config
from gateway.server import until_signalled
from gateway.sockjs import Router, router_settings

log = logging.getLogger("gateway.conformance")


class EchoConnection(SockJSConnection):
    def on_message(self, message: str) -> None:
        self.send(message)


class CloseConnection(SockJSConnection):
    def on_open(self, info: Any) -> None:
        self.close()  # 3000 "Go away!"

    def on_message(self, message: str) -> None:  # never reached: the session is closed
        pass


def conformance_app(config: Config) -> tornado.web.Application:
    """The suite's four services; create inside the running loop."""
    common = router_settings(config, response_limit=4096)
    routers = [
        Router(EchoConnection, "/echo", common),
        Router(CloseConnection, "/close", common),
        Router(EchoConnection, "/disabled_websocket_echo", {**common, "disabled_transports": ["websocket"]}),
        Router(EchoConnection, "/cookie_needed_echo", {**common, "jsessionid": True}),
    ]
    return tornado.web.Application([route for r in routers for route in r.urls], log_function=log_request)


def run_conformance(config: Config) -> int:
    """Serve the suite's endpoints until SIGINT or SIGTERM."""

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(conformance_app(config))
        server.listen(config.port, config.host)
        log.info("SockJS conformance endpoints on http://%s:%d/echo", config.host, config.port)
        await until_signalled()
        server.stop()

    asyncio.run(serve())
    return 0
