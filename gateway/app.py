"""Assembles the Tornado application: the one route table for HTTP and the tunnel."""

from __future__ import annotations

import logging
from typing import Any

import tornado.web
from sockjs.tornado.basehandler import BaseHandler as SockJSHandler

from gateway.state import State
from handlers import api_routes
from handlers.base import NotFoundHandler


access_log = logging.getLogger("tornado.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: 4xx as warnings, 5xx as errors -- except SockJS transports,
    which answer client mistakes (a bad callback, broken JSON) with 500 by protocol."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500 or status == 503 or isinstance(handler, SockJSHandler):
        level = logging.WARNING  # 503: the store is away, which is logged where it is noticed
    else:
        level = logging.ERROR
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, request.uri, request.remote_ip,
                   1000.0 * request.request_time())


def make_app(state: State, extra_routes: list[Any] | None = None, **settings: Any) -> tornado.web.Application:
    """The application serving the API (plus ``extra_routes``, e.g. SockJS), with ``state`` in its settings."""
    return tornado.web.Application(
        (extra_routes or []) + api_routes(),
        state=state,
        default_handler_class=NotFoundHandler,
        xsrf_cookies=False,  # bearer-token API: no cookies to forge, and tunneled POSTs must pass
        compress_response=False,
        log_function=log_request,
        **settings,
    )
