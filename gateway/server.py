"""Starting and stopping a gateway process: store, state, application, listeners."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import tornado.httpserver
import tornado.netutil

from gateway.app import make_app
from gateway.auth import Passwords, Tokens, load_or_create_secret
from gateway.config import Config
from gateway.connection import GatewayConnection, WsContext
from gateway.sockjs import Router, router_settings
from gateway.state import State
from gateway.store import Store, store_from_url
from events.sessions import SessionRegistry

log = logging.getLogger("gateway")


class Gateway:
    """One running gateway: everything ``gateway serve`` starts, in an object tests can start too."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store | None = None
        self.state: State | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port: int = 0
        self.ws: WsContext | None = None

    async def start(self) -> None:
        """Open the store and listen; :attr:`port` is the bound HTTP port."""
        self.store = store_from_url(self.config.store)
        await self.store.open()
        secret = load_or_create_secret(self.config.resolved_secret_file())
        self.state = State(
            self.config,
            self.store,
            Tokens(self.store, secret, self.config.token_ttl),
            Passwords(self.config.argon2_memory),
        )
        self.registry = SessionRegistry()
        await self.registry.start(self.store)
        self.ws = WsContext(self.state, self.registry)
        self.router = Router(GatewayConnection, self.ws.prefix, router_settings(self.config), self.ws)
        app = make_app(self.state, self.router.routes,
                       # over the limit, tornado drops the websocket; under it, the session answers too_large
                       websocket_max_message_size=4 * self.config.ws_max_message + 65536)
        self.ws.app = app
        # Bodies up to max_body get the API's own 413; far larger ones are cut off unread.
        self.http = tornado.httpserver.HTTPServer(app, xheaders=False, max_body_size=4 * self.config.max_body + 65536)
        sockets = tornado.netutil.bind_sockets(self.config.port, self.config.host, family=socket.AF_INET)
        self.http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        log.info("HTTP API on http://%s:%d/ and SockJS on /ws (store %s)", self.config.host, self.port, self.config.store)

    async def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        if self.ws is not None:
            for connection in list(self.ws.live):
                connection.session.close(1001, "Server shutting down")
            self.router.stop()
            await self.registry.stop()
        if self.http is not None:
            await self.http.close_all_connections()
        if self.store is not None:
            await self.store.close()


def run(config: Config) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""

    async def serve() -> None:
        gateway = Gateway(config)
        await gateway.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await gateway.stop()

    asyncio.run(serve())
    return 0
