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
TRANSPORTS = ("xhr", "xhr_send", "xhr_streaming", "jsonp", "jsonp_send", "eventsource", "htmlfile", "websocket")
SESSION_URL = re.compile(rf"^(?P<head>.*/[^/]+/)[^/]+(?P<tail>/(?:{'|'.join(TRANSPORTS)}))$")
#: The endings of the paths :data:`SESSION_URL` may match: every other path skips the regex.
SESSION_TAILS = tuple(f"/{name}" for name in TRANSPORTS)


def redacted_target(request: tornado.httputil.HTTPServerRequest) -> str:
    """The request's path as logs may show it: no query string, no SockJS session id."""
    path = request.path
    if path.endswith(SESSION_TAILS):
        path = SESSION_URL.sub(r"\g<head>***\g<tail>", path)
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
    if not access_log.isEnabledFor(level):
        return
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
    # the record made and handled directly: Logger.log would walk the stack for a caller no format shows
    record = access_log.makeRecord(access_log.name, level, __file__, 0, "%d %s %s (%s) %.2fms",
                                   (status, request.method, target, request.remote_ip, duration), None,
                                   "log_request", {"fields": fields})
    access_log.handle(record)
