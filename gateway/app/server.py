"""Starting and stopping a gateway process: the store, the services (:mod:`gateway.app.assembly`), the listeners."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Coroutine
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from events.dispatcher import EventDispatcher
from events.subscriptions import SubscriptionRegistry
from gateway.app.assembly import Services, build, secret_file
from gateway.app.listen import ProtectedHTTPServer, raise_descriptor_limit
from gateway.app.web import metrics_route, sockjs_settings
from gateway.auth import load_or_create_secret
from gateway.config import Config
from gateway.mail.delivery import DeliveryWorker
from gateway.mail.documents import LISTED
from gateway.mail.smtp_in import InboundHandler, start_smtp
from gateway.sockjs.conformance import conformance_app
from gateway.state import State
from gateway.store import Store, StoreError, StoreUnavailable, store_from_url
from gateway.ws.connection import Endpoint

log = logging.getLogger("gateway")

#: Waiting for a shared store at start: the first retry, and the longest pause between two.
STORE_FIRST_RETRY = 0.5
STORE_MAX_RETRY = 5.0
#: Allocations (less deallocations) between two of the garbage collector's young passes.  Python's
#: 700 makes a busy server run one every few hundred microseconds, and each promotes what is merely
#: in flight (frames, futures, events) to the old generation; the old generation seems to grow, and a
#: full pass over every session's objects follows: 150-210 ms at 5,000 sessions, stalling every
#: session (docs/benchmarks.md, "The garbage collector at 5,000 sessions").  At 50,000, in-flight
#: objects die young and full passes are rare; a young pass costs more, and runs far less often.
GC_YOUNG_THRESHOLD = 50_000


class CannotListen(Exception):
    """A listening socket could not be bound (address in use, no permission, ...)."""


def listen_error(what: str, host: str, port: int, exc: OSError) -> CannotListen:
    return CannotListen(f"cannot listen on {host}:{port} for {what}: {exc.strerror or exc}")


class Gateway:
    """One running gateway: everything ``gateway serve`` starts, in an object tests can start too.

    Every attribute exists from construction; :meth:`stop` stops whatever
    :meth:`start` got to (nothing, before it ran).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store | None = None
        self.services: Services | None = None
        self.http: tornado.httpserver.HTTPServer | None = None
        self.port: int = 0
        self.smtp: asyncio.Server | None = None
        self.smtp_handler: InboundHandler | None = None
        self.smtp_port: int = 0
        self.metrics_http: tornado.httpserver.HTTPServer | None = None
        self.metrics_port: int = 0

    # What the services are, for callers (and tests) that reach into a running gateway.

    def _running(self) -> Services:
        assert self.services is not None, "the gateway is not started"
        return self.services

    @property
    def state(self) -> State:
        return self._running().state

    @property
    def registry(self) -> SubscriptionRegistry:
        return self._running().registry

    @property
    def dispatcher(self) -> EventDispatcher:
        return self._running().dispatcher

    @property
    def delivery(self) -> DeliveryWorker:
        return self._running().delivery

    @property
    def ws(self) -> Endpoint:
        """The ``/ws`` endpoint (its live connections)."""
        return self._running().endpoint

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
        """Open the store, start the services, and listen; :attr:`port` is the bound HTTP port."""
        store = store_from_url(self.config.store, self.config.event_history, LISTED)
        await self._open_store(store)
        self.store = store
        services = self.services = build(self.config, store, load_or_create_secret(secret_file(self.config)))
        # each follows its own feed, filtered by the store: tokens and accounts, events, the queue
        await services.registry.start()
        await services.dispatcher.start()
        await services.delivery.start()
        await services.webhook_queue.start()
        smtp = self.config.smtp_address()
        if smtp is not None:
            try:
                self.smtp, self.smtp_handler = await start_smtp(store, self.config.mail_domain, smtp[0], smtp[1],
                                                                self.config.smtp_max_size, services.recipients)
            except OSError as exc:
                await self.stop()
                raise listen_error("SMTP", smtp[0], smtp[1], exc) from None
            self.smtp_port = self.smtp.sockets[0].getsockname()[1]
            log.info("SMTP for @%s on %s:%d", self.config.mail_domain, smtp[0], self.smtp_port)
        metrics_at = self.config.metrics_address()
        if metrics_at is not None:  # /metrics on a listener of its own (not reachable from the API's)
            self.metrics_http = tornado.httpserver.HTTPServer(
                tornado.web.Application([metrics_route(services.metrics)]))
            self.metrics_port = await self._listen(self.metrics_http, "metrics", *metrics_at)
        # Bodies up to max_body (POST /emails: plus smtp_max_size) get the API's own 413; far larger ones
        # are cut off unread.
        largest = max(4 * self.config.max_body, self.config.max_body + 2 * self.config.smtp_max_size) + 65536
        self.http = ProtectedHTTPServer(services.app, xheaders=False, max_body_size=largest,
                                        idle_connection_timeout=self.config.header_timeout,
                                        body_timeout=self.config.body_timeout,
                                        max_connections=self.config.max_connections)
        self.port = await self._listen(self.http, "HTTP", self.config.host, self.config.port)
        log.info("HTTP API on http://%s:%d/ and SockJS on /ws (store %s)", self.config.host, self.port, self.config.store)

    async def _listen(self, server: tornado.httpserver.HTTPServer, what: str, host: str, port: int) -> int:
        """Bind ``server`` to ``host:port``; the bound port.  On failure everything started is stopped."""
        try:
            sockets = tornado.netutil.bind_sockets(port, host, family=socket.AF_INET)
        except OSError as exc:
            await self.stop()
            raise listen_error(what, host, port, exc) from None
        server.add_sockets(sockets)
        return int(sockets[0].getsockname()[1])

    async def drain(self, within: float) -> None:
        """What SIGTERM does before :meth:`stop`: stop accepting (readiness turns false), tell every
        SockJS session to reconnect at once (close 4001, which the client libraries act on with no
        wait), let in-flight API requests and SMTP messages finish for up to ``within`` seconds, and
        put this process's delivery claims back in the queue for another process."""
        services = self.services
        if services is None:
            return
        services.state.draining = True
        if self.http is not None:
            self.http.stop()  # no new connections; those open are still served
        if self.smtp is not None:
            self.smtp.close()  # no new SMTP connections; a message being filed finishes
        for connection in list(services.endpoint.live):
            connection.session.close(4001, "Server restarting: reconnect now")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        smtp_active = lambda: self.smtp_handler.active if self.smtp_handler is not None else 0  # noqa: E731
        log.info("draining: %d request(s) and %d SMTP message(s) in flight", services.state.inflight, smtp_active())
        while (services.state.inflight or smtp_active()) and loop.time() < deadline:
            await asyncio.sleep(0.05)  # polling counters of work in progress, bounded by the deadline
        await services.delivery.release(max(0.0, deadline - loop.time()))
        await services.webhook_queue.release(max(0.0, deadline - loop.time()))
        log.info("drained: %d request(s) still in flight", services.state.inflight)

    async def stop(self) -> None:
        """Stop what runs, in reverse; safe to call before :meth:`start` (the parts stay readable after)."""
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None
        services = self.services
        if services is not None:
            await services.dispatcher.stop()
            await services.delivery.stop()
            await services.webhook_queue.stop()
            services.webhook_queue.webhooks.sender.close()
        if self.http is not None:
            self.http.stop()
        if self.metrics_http is not None:
            self.metrics_http.stop()
        if services is not None:
            for connection in list(services.endpoint.live):
                connection.session.close(1001, "Server shutting down")
            services.router.stop()
            await services.registry.stop()
        if self.http is not None:
            await self.http.close_all_connections()
        if self.store is not None:
            await self.store.close()


def on_signals() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM (from now on: a signal no longer kills the process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def until_signalled() -> None:
    """Return on the first SIGINT or SIGTERM."""
    await on_signals().wait()


def run(config: Config) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""

    async def serve() -> None:
        log.info("open-file limit: %d descriptors", raise_descriptor_limit())
        stop = on_signals()  # before listening: a SIGTERM right after start still drains
        gateway = Gateway(config)
        await gateway.start()
        # Everything made at startup lives as long as the process: keep it out of the garbage
        # collector's full passes, whose pauses are the worst event latencies under load.
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        await stop.wait()
        log.info("shutting down (draining for up to %.1fs)", config.drain)
        await gateway.drain(config.drain)
        await gateway.stop()

    try:
        run_loop(config, serve())
    except CannotListen as exc:
        log.error("%s", exc)
        return 1
    except StoreError as exc:
        log.error("cannot open the store: %s", exc)
        return 1
    return 0


def run_conformance(config: Config) -> int:
    """Serve the SockJS protocol suite's endpoints (:mod:`gateway.sockjs.conformance`) until SIGINT or SIGTERM."""

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(conformance_app(sockjs_settings(config)))
        server.listen(config.port, config.host)
        log.info("SockJS conformance endpoints on http://%s:%d/echo", config.host, config.port)
        await until_signalled()
        server.stop()

    run_loop(config, serve())
    return 0


def run_loop(config: Config, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the event loop ``--loop`` names: uvloop (``auto`` when it is installed), or asyncio's own."""
    if config.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if config.loop == "uvloop":
                raise
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            uvloop.run(main)
            return
    asyncio.run(main)
