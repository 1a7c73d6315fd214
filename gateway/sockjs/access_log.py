"""The access log of an application that serves SockJS: one line per request, at a level that fits,
and never a secret: query strings (a token sent as ``?token=``) and SockJS session ids (the only secret
of a polling session) are redacted."""

from __future__ import annotations

import logging
import re

import tornado.httputil
import tornado.web
from sockjs.tornado.basehandler import BaseHandler as SockJSHandler

access_log = logging.getLogger("tornado.access")

#: ``/<prefix>/<server>/<session>/<transport>``: the session id is the third segment from the end.
SESSION_URL = re.compile(
    r"^(?P<head>.*/[^/]+/)[^/]+(?P<tail>/(?:xhr|xhr_send|xhr_streaming|jsonp|jsonp_send|eventsource|htmlfile|websocket))$")


def redacted_target(request: tornado.httputil.HTTPServerRequest) -> str:
    """The request's path as logs may show it: no query string, no SockJS session id."""
    path = SESSION_URL.sub(r"\g<head>***\g<tail>", request.path)
    return f"{path}?***" if request.query else path


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
    target = redacted_target(request)
    duration = 1000.0 * request.request_time()
    # for structured logs (--log-format json): what the handler knows, never a secret
    fields = {"status": status, "method": request.method, "path": target, "remote_ip": request.remote_ip,
              "duration_ms": round(duration, 2), "route": type(handler).__name__}
    for name in ("request_id", "account_id"):
        value = getattr(handler, name, None)
        if value:
            fields[name] = value
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method, target, request.remote_ip, duration,
                   extra={"fields": fields})
