"""Starting and stopping a gateway process: store, state, application, listeners."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket

import tornado.httpserver
import tornado.netutil

from gateway.app import make_app
from gateway.auth import Passwords, Tokens, load_or_create_secret
from gateway.config import Config
from gateway.connection import GatewayConnection, WsContext
from gateway.mail_in import start_smtp
from gateway.mail_out import DeliveryWorker, Relay
from gateway.sockjs import Router, router_settings
from gateway.state import State
from gateway.store import Store, StoreError, StoreUnavailable, store_from_url
from events.dispatcher import EventDispatcher
from events.sessions import SessionRegistry

log = logging.getLogger("gateway")

#: Waiting for a shared store at start: the first retry, and the longest pause between two.
STORE_FIRST_RETRY = 0.5
STORE_MAX_RETRY = 5.0


class CannotListen(Exception):
    """A listening socket could not be bound (address in use, no permission, ...)."""


def listen_error(what: str, host: str, port: int, exc: OSError) -> CannotListen:
    return CannotListen(f"cannot listen on {host}:{port} for {what}: {exc.strerror or exc}")


class Gateway:
    """One running gateway: everything ``gateway serve`` starts, in an object tests can start too."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store | None = None
        self.state: State | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port: int = 0
        self.ws: WsContext | None = None
        self.smtp: asyncio.Server | None = None
        self.smtp_port: int = 0
        self.delivery: DeliveryWorker | None = None

    async def _open_store(self, store: Store) -> None:
        """Open the store.  A shared one (RethinkDB) may come up after the gateway (both started
        together, say): wait for it up to ``--store-wait`` seconds, with capped backoff."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.store_wait
        delay = STORE_FIRST_RETRY
        while True:
            try:
                await store.open()
                return
            except StoreUnavailable as exc:
                left = deadline - loop.time()
                if not store.shared or left <= 0:
                    raise
                log.warning("the store is not reachable yet (%s); retrying in %.1fs", exc, min(delay, left))
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, STORE_MAX_RETRY)

    async def start(self) -> None:
        """Open the store and listen; :attr:`port` is the bound HTTP port."""
        self.store = store_from_url(self.config.store, self.config.event_history)
        await self._open_store(self.store)
        secret = load_or_create_secret(self.config.resolved_secret_file())
        self.state = State(
            self.config,
            self.store,
            Tokens(self.store, secret, self.config.token_ttl),
            Passwords(self.config.argon2_memory),
        )
        self.registry = SessionRegistry()
        await self.registry.start(self.store)
        # each follows its own feed, filtered by the store: events, and emails entering the queue
        self.dispatcher = EventDispatcher(self.store, self.registry)
        self.delivery = DeliveryWorker(self.store, self.config.mail_domain,
                                       Relay.from_url(self.config.relay), self.config.delivery_attempts,
                                       self.config.delivery_backoff, self.config.delivery_lease)
        await self.dispatcher.start()
        self.ws = WsContext(self.state, self.registry, self.dispatcher)
        self.router = Router(GatewayConnection, self.ws.prefix, router_settings(self.config), self.ws)
        app = make_app(self.state, self.router.urls,
                       # over the limit, tornado drops the websocket; under it, the session answers too_large
                       websocket_max_message_size=4 * self.config.ws_max_message + 65536)
        self.ws.app = app
        await self.delivery.start()
        smtp = self.config.smtp_address()
        if smtp is not None:
            try:
                self.smtp = await start_smtp(self.store, self.config.mail_domain, smtp[0], smtp[1],
                                             self.config.smtp_max_size)
            except OSError as exc:
                await self.stop()
                raise listen_error("SMTP", smtp[0], smtp[1], exc) from None
            self.smtp_port = self.smtp.sockets[0].getsockname()[1]
            log.info("SMTP for @%s on %s:%d", self.config.mail_domain, smtp[0], self.smtp_port)
        # Bodies up to max_body get the API's own 413; far larger ones are cut off unread.
        self.http = tornado.httpserver.HTTPServer(app, xheaders=False, max_body_size=4 * self.config.max_body + 65536)
        try:
            sockets = tornado.netutil.bind_sockets(self.config.port, self.config.host, family=socket.AF_INET)
        except OSError as exc:
            await self.stop()
            raise listen_error("HTTP", self.config.host, self.config.port, exc) from None
        self.http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        log.info("HTTP API on http://%s:%d/ and SockJS on /ws (store %s)", self.config.host, self.port, self.config.store)

    async def stop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.delivery is not None:
            await self.delivery.stop()
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


async def until_signalled() -> None:
    """Return on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run(config: Config) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""

    async def serve() -> None:
        gateway = Gateway(config)
        await gateway.start()
        # Everything made at startup lives as long as the process: keep it out of the garbage
        # collector's full passes, whose pauses are the worst event latencies under load.
        gc.freeze()
        await until_signalled()
        log.info("shutting down")
        await gateway.stop()

    try:
        asyncio.run(serve())
    except CannotListen as exc:
        log.error("%s", exc)
        return 1
    except StoreError as exc:
        log.error("cannot open the store: %s", exc)
        return 1
    return 0
