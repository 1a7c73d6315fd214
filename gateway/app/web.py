"""The Tornado application: the one route table for HTTP and the tunnel, its access log, and the SockJS settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tornado.web

from gateway.config import Config
from gateway.metrics import CONTENT_TYPE, Metrics
from gateway.sockjs.access_log import log_request
from gateway.state import State
from gateway.web import pages
from gateway.ws.tunnel import CapturingConnection
from handlers import api_routes
from handlers.base import NotFoundHandler
from handlers.direct import answer_directly


def make_app(state: State, extra_routes: list[Any] | None = None, metrics: Metrics | None = None,
             **settings: Any) -> tornado.web.Application:
    """The application serving the API (plus ``extra_routes``, e.g. SockJS), with ``state`` in its settings.

    With ``metrics``, every request is counted (see :func:`observed`), and ``/metrics`` is
    served here unless ``--metrics`` names a listener of its own.
    """
    here = [metrics_route(metrics)] if metrics is not None and state.config.metrics == "" else []
    return GatewayApplication(
        (extra_routes or []) + here + pages.routes() + api_routes(),
        state=state,
        default_handler_class=NotFoundHandler,
        xsrf_cookies=False,  # bearer-token API: no cookies to forge, and tunneled POSTs must pass
        compress_response=False,
        log_function=log_request if metrics is None else observed(metrics),
        direct_answer=answer_directly,  # tunneled reads answered without a RequestHandler (gateway/ws/tunnel.py)
        **settings,
    )


#: What a draining gateway still answers: the probes that tell a balancer it is going away.
ANSWERED_WHILE_DRAINING = ("/health", "/metrics")


class GatewayApplication(tornado.web.Application):
    """The application, which a draining gateway (SIGTERM) makes refuse new plain-HTTP requests.

    Draining closes the listener, but a balancer still holds keep-alive connections to the process
    and may send them a new request (a client reconnecting after the 4001 close, say): those get
    ``503 draining`` with the connection closed, which nginx's ``proxy_next_upstream http_503``
    sends on to another gateway.  Requests already in flight finish; tunneled ones are not refused.
    """

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        state: State = self.settings["state"]
        if state.draining and not isinstance(request.connection, CapturingConnection) \
                and not request.path.startswith(ANSWERED_WHILE_DRAINING):
            return self.get_handler_delegate(request, DrainingHandler)
        return super().find_handler(request, **kwargs)


class DrainingHandler(tornado.web.RequestHandler):
    """``503 draining`` for a request that reached a gateway on its way out; the connection closes."""

    def prepare(self) -> None:
        # tornado closes after the response only when it decided so itself: tell it (a private flag)
        connection = self.request.connection
        if connection is not None and hasattr(connection, "_disconnect_on_finish"):
            connection._disconnect_on_finish = True
        self.set_status(503)
        self.set_header("Retry-After", "1")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish('{"success":false,"message":"This gateway is restarting; try again","code":"draining"}')


def observed(metrics: Metrics) -> Callable[[tornado.web.RequestHandler], None]:
    """The access log, plus request metrics: by route (the handler class), method, status, and via
    (``tunnel`` for requests run through /ws, ``http`` for the rest)."""
    # each label set's children, found once: ``labels()`` takes a lock and builds its key on every call
    children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}

    def log_function(handler: tornado.web.RequestHandler) -> None:
        log_request(handler)
        request = handler.request
        via = "tunnel" if isinstance(request.connection, CapturingConnection) else "http"
        key = (type(handler).__name__, request.method or "", handler.get_status(), via)
        found = children.get(key)
        if found is None:
            route, method, status, _ = key
            found = children[key] = (metrics.requests.labels(route, method, str(status), via),
                                     metrics.request_seconds.labels(route, via))
        found[0].inc()
        found[1].observe(request.request_time())
    return log_function


class MetricsHandler(tornado.web.RequestHandler):
    """``/metrics``: Prometheus's text format."""

    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.metrics.render())


def metrics_route(metrics: Metrics) -> tuple[str, type, dict[str, Any]]:
    return (r"/metrics", MetricsHandler, {"metrics": metrics})


def origin_settings(allowed: frozenset[str] | None) -> dict[str, Any]:
    """The SockJS settings for ``--cors-origins``: which pages may use /ws (None: any)."""
    if allowed is None:
        return {"allowed_origins": None}
    return {
        "allowed_origins": allowed,
        "websocket_allow_origin": [origin.split("://", 1)[-1] for origin in allowed],  # sockjs-tornado's: netlocs
        "origins_reported": sorted(allowed),  # /ws/info's "origins"
    }


def sockjs_settings(config: Config, **extra: Any) -> dict[str, Any]:
    """The sockjs-tornado settings ``/ws`` (and ``gateway conformance``) run with (``extra`` on top)."""
    return {
        "jsessionid": False,
        "disconnect_delay": config.ws_disconnect_delay,
        "heartbeat_delay": config.ws_heartbeat,
        "sockjs_url": config.ws_sockjs_url,
        # a polling session belongs to the client address that opened it, as these proxies report it
        "trusted_proxies": config.trusted_proxy_set(),
        **origin_settings(config.allowed_origins),
        # Queue what a session sends during one loop iteration into one frame:
        # many concurrent responses then cost one write instead of one each.
        "immediate_flush": False,
        **extra,
    }
