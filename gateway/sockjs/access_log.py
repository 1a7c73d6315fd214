"""The access log of an application that serves SockJS: one line per request, at a level that fits."""

from __future__ import annotations

import logging

import tornado.web
from sockjs.tornado.basehandler import BaseHandler as SockJSHandler

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
