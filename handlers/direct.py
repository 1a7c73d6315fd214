"""Tunneled reads answered without a Tornado ``RequestHandler``: :class:`DirectCall` and :func:`answer_directly`.

Making and running a ``RequestHandler`` (its ``__init__``, ``_execute``, ``finish`` and ``flush``)
was most of what a small tunneled read cost.  A handler lists the methods that may skip it in
``direct_methods``; the application hands :func:`answer_directly` to the tunnel as its
``direct_answer`` setting (``gateway/app/web.py``).
"""

from __future__ import annotations

import secrets
from typing import Any

import tornado.web
from tornado import httputil

from gateway.auth import Identity
from gateway.store import StoreUnavailable
from handlers.base import REQUEST_ID, APIHandler, api_headers


#: The classes whose methods :class:`DirectCall` borrows (untyped: they are typed for their own ``self``).
_HANDLER: Any = tornado.web.RequestHandler
_API: Any = APIHandler


class DirectCall:
    """What a handler's method runs on when a tunneled request is answered without a Tornado
    ``RequestHandler`` (:func:`answer_directly`): the request, the state, and the very methods the
    handler would call, Tornado's and :class:`APIHandler`'s own, borrowed rather than written again,
    so the answer is the one the handler gives (``tests/test_ws.py`` holds the bytes to HTTP's).

    Making and running a ``RequestHandler`` (its ``__init__``, ``_execute``, ``finish`` and
    ``flush``) is most of what a small tunneled read costs; this does without them.  What it does
    not have (a body, CORS, errors) sends the request the usual way instead.
    """

    identity: Identity | None = None
    _finished = False
    # Tornado's RequestHandler, borrowed
    get_query_argument = _HANDLER.get_query_argument
    get_query_arguments = _HANDLER.get_query_arguments
    _get_argument = _HANDLER._get_argument
    _get_arguments = _HANDLER._get_arguments
    decode_argument = _HANDLER.decode_argument
    set_header = _HANDLER.set_header
    _convert_header_value = _HANDLER._convert_header_value
    set_status = _HANDLER.set_status
    get_status = _HANDLER.get_status
    # APIHandler, borrowed
    state = _API.state
    store = _API.store
    account = _API.account
    auth = _API.auth
    account_id = _API.account_id
    authenticate = _API.authenticate
    int_argument = _API.int_argument
    page = _API.page
    list_page = _API.list_page
    reply = _API.reply
    reply_listed = _API.reply_listed
    path_id = _API.path_id
    owned = _API.owned
    write_error = _API.write_error
    log_exception = _API.log_exception

    def __init__(self, application: tornado.web.Application, request: httputil.HTTPServerRequest) -> None:
        self.application = application
        self.request = request
        given = request.headers.get("X-Request-Id", "")
        self.request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        self._headers: dict[str, str] = api_headers(self.request_id)
        self._status_code = 200
        self._reason = "OK"
        self.body = b""

    def finish(self, chunk: bytes | str | None = None) -> None:
        """As ``RequestHandler.finish`` for a JSON answer: the body, and its ``Content-Length``."""
        body = chunk.encode("utf-8") if isinstance(chunk, str) else chunk or b""
        if self._status_code not in (204, 304) and "Content-Length" not in self._headers:
            self.set_header("Content-Length", len(body))
        self.body = body
        self._finished = True


#: The :class:`DirectCall` class of each handler class, named as it is: the access log and the
#: request metrics name a request's route by its handler's class.
_direct_classes: dict[type, type[DirectCall]] = {}


async def answer_directly(app: tornado.web.Application, handler_class: Any, request: httputil.HTTPServerRequest,
                          path_args: list[Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Answer a tunneled ``GET`` without a ``RequestHandler``: status, headers and body, logged and
    counted as the handler's would be; None when ``handler_class`` does not take it this way.  A store
    that cannot serve it is answered 503 here, as HTTP answers it (run again, the request would wait
    for the store twice); any other exception means "the usual way" (a ``GET`` changes nothing, so it
    can be run again).  The tunnel calls this through the application's ``direct_answer`` setting."""
    if "GET" not in getattr(handler_class, "direct_methods", ()) or "Origin" in request.headers:
        return None  # (a cross-origin request needs CORS, which only the handler has)
    made = _direct_classes.get(handler_class)
    if made is None:
        made = _direct_classes[handler_class] = type(handler_class.__name__, (DirectCall,), {})
    call = made(app, request)
    state = call.state
    state.inflight += 1  # as prepare() and on_finish() count a request: a draining gateway waits for it
    try:
        if "GET" not in handler_class.public_methods:
            call.identity = await call.authenticate()
        result = handler_class.get(call, *[call.decode_argument(arg) for arg in path_args])
        if result is not None:  # a coroutine (a method that is not async gives None, as Tornado allows)
            await result
    except StoreUnavailable as problem:
        # answered here, as Tornado's send_error would (run again, the request would wait for the store
        # twice): logged, the headers made anew (its clear()), then the handler's own error body
        exc_info = (type(problem), problem, problem.__traceback__)
        call.log_exception(*exc_info)
        call = made(app, request)
        call.write_error(503, exc_info=exc_info)
    finally:
        state.inflight -= 1
    if not call._finished or call.get_status() not in (200, 503):
        return None
    app.log_request(call)  # type: ignore[arg-type]
    return call.get_status(), list(call._headers.items()), call.body
