"""Runs a tunneled request through the very same Tornado application, in-process.

The request is the one Tornado's HTTP/1.1 server would build (:class:`TunneledRequest`:
the same attributes, with what a session repeats parsed once), routed by the
application's own table (``find_handler``) and served by the handler's
delegate as if a connection had delivered it, so ``prepare``, auth, error
handling and output are exactly those of plain HTTP; the response is captured
instead of written to a socket.  No loopback socket, no second route table:
only the result of routing a path is remembered (:class:`Routes`), since a
session repeats its paths.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import tornado.web
from tornado import httputil

log = logging.getLogger("gateway.ws")

#: Headers the tunnel sets itself or that mean nothing without a real connection.
#: Accept-Encoding is dropped so a body is never gzipped into the JSON envelope.
DROPPED_REQUEST_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "accept-encoding", "te",
     "expect"}
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Paths whose route :class:`Routes` remembers at most (per application); then it starts over.
ROUTES_REMEMBERED = 1024


@dataclass
class TunneledResponse:
    """What the application answered: status, every header (name -> values) and the body."""

    status: int = 0
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


#: Called once with what the application answered.
ResponseCallback = Callable[[TunneledResponse], None]
#: The application's ``direct_answer`` setting: answers a ``GET`` without a ``RequestHandler``
#: (status, headers, body), or None to have it answered the usual way.
DirectAnswer = Callable[[tornado.web.Application, type, httputil.HTTPServerRequest, list[Any]],
                        Awaitable["tuple[int, list[tuple[str, str]], bytes] | None"]]


class CapturingConnection(httputil.HTTPConnection):
    """The ``HTTPConnection`` a tunneled request is served on: it records instead of sending."""

    def __init__(self, tunnel: Tunnel, on_response: ResponseCallback | None) -> None:
        # HTTPServerRequest reads remote_ip and protocol from the connection's context.
        self.context = tunnel.context
        self.tunnel = tunnel
        self.on_response = on_response
        self.response = TunneledResponse()
        self._chunks: list[bytes] = []
        self._close_callback: Callable[[], None] | None = None

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> asyncio.Future[None]:
        self.response.status = start_line.code
        captured = self.response.headers
        for name, value in headers.get_all():
            if name in captured:
                captured[name].append(value)
            else:
                captured[name] = [value]
        if chunk:
            self._chunks.append(chunk)
        return self.tunnel.resolved()

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        self._chunks.append(chunk)
        return self.tunnel.resolved()

    def finish(self) -> None:
        self.response.body = b"".join(self._chunks)
        self.tunnel.open.discard(self)
        callback, self.on_response = self.on_response, None
        if callback is not None:
            callback(self.response)

    def abort(self) -> None:
        """The session went away: tell the handler (``on_connection_close``); nobody will take the response."""
        self.on_response = None
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()


class Routes:
    """The application's routing of each path, found once: its route table is fixed once it serves.

    Routing tries the table's patterns in order, one regex each, for every
    request; a tunnel's requests mostly repeat their paths (a list, ``/accounts/me``).
    The handler class, its arguments and the path's captured arguments are kept
    by path and handed to the application's own ``get_handler_delegate``; what
    ``find_handler`` gives that is not a handler's delegate is never kept.
    """

    def __init__(self, app: tornado.web.Application) -> None:
        self.app = app
        self.found: dict[str, tuple[type[tornado.web.RequestHandler], dict[str, Any], list[Any], dict[str, Any]]] = {}
        self.targets = Targets()

    def delegate(self, request: httputil.HTTPServerRequest) -> httputil.HTTPMessageDelegate:
        """The delegate that serves ``request``, as ``app.find_handler`` would give it."""
        found = self.found.get(request.path)
        if found is not None:
            handler_class, kwargs, path_args, path_kwargs = found
            return self.app.get_handler_delegate(request, handler_class, kwargs, list(path_args), dict(path_kwargs))
        delegate = self.app.find_handler(request)
        if isinstance(delegate, tornado.web._HandlerDelegate):  # not a nested router's
            if len(self.found) >= ROUTES_REMEMBERED:
                self.found.clear()  # many distinct paths (ids): no use keeping them all
            self.found[request.path] = (delegate.handler_class, delegate.handler_kwargs, list(delegate.path_args),
                                        dict(delegate.path_kwargs))
        return delegate


class TunneledRequest(httputil.HTTPServerRequest):
    """A tunneled request: the ``HTTPServerRequest`` Tornado's own ``__init__`` would make, with what does
    not change between a session's requests found once: its ``Host`` (checked, and its name) by the
    :class:`Tunnel`, its target's path, query and arguments by :class:`Targets`.  Tornado parses the
    query and deep-copies its arguments on every request; here each request gets copies of the lists.
    ``tests/test_ws.py`` holds the two to the same attributes."""

    def __init__(self, start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders,
                 connection: CapturingConnection, tunnel: Tunnel, host_name: str, found: Target) -> None:
        # the attributes HTTPServerRequest.__init__ sets, in its order
        self.method, self.uri, self.version = start_line
        self.headers = headers
        self.body = b""
        self.remote_ip = tunnel.context.remote_ip
        self.protocol = tunnel.context.protocol
        self.host = tunnel.host
        self.host_name = host_name
        self.files = {}
        self.connection = connection
        self.server_connection = tunnel
        self._start_time = time.time()
        self._finish_time = None
        self.path, self.query, arguments = found
        self.arguments = {name: list(values) for name, values in arguments.items()}
        self.query_arguments = {name: list(values) for name, values in arguments.items()}
        self.body_arguments = {}


#: A target's path, query and query arguments, as ``HTTPServerRequest`` parses them.
Target = tuple[str, str, dict[str, list[bytes]]]


class Targets:
    """Each request target's parse, found once (sessions repeat their targets): at most
    :data:`ROUTES_REMEMBERED`, then it starts over.  Nothing here is changed once found."""

    def __init__(self) -> None:
        self.found: dict[str, Target] = {}

    def parse(self, target: str) -> Target:
        found = self.found.get(target)
        if found is None:
            # HTTPServerRequest's own parse (and its refusals: too many arguments), on a request of the target
            request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine("GET", target, "HTTP/1.1"),
                                                 headers=httputil.HTTPHeaders({"Host": "127.0.0.1"}))
            if len(self.found) >= ROUTES_REMEMBERED:
                self.found.clear()
            found = self.found[target] = (request.path, request.query, request.arguments)
        return found


#: One :class:`Routes` per application, shared by its tunnels.
_routes: weakref.WeakKeyDictionary[tornado.web.Application, Routes] = weakref.WeakKeyDictionary()


def routes(app: tornado.web.Application) -> Routes:
    """The application's :class:`Routes`."""
    found = _routes.get(app)
    if found is None:
        found = _routes[app] = Routes(app)
    return found


def _eagerly(work: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run ``work`` at once, up to its first wait: None when it finished without one (a read answered
    from SQLite, which runs inline), else an awaitable of the rest (what Python 3.12's eager tasks do).

    A request that never waits then costs no task, no wrapping coroutine and no turn of the loop.
    It runs in a context of its own, as a task's work would, and so do its later steps
    (:class:`_Resumed`), whichever task awaits them.
    """
    context = contextvars.copy_context()
    try:
        waiting = context.run(work.send, None)
    except StopIteration:
        return None
    return _Resumed(work, waiting, context)


class _Resumed:
    """A coroutine run up to its first wait (``waiting``, what it yielded), awaited for the rest: what
    the awaiting task sends or throws goes on to it, as ``await`` would pass them (``yield from``)."""

    def __init__(self, work: Coroutine[Any, Any, None], waiting: Any, context: contextvars.Context) -> None:
        self.work, self.waiting, self.context = work, waiting, context

    def __await__(self) -> Generator[Any, Any, None]:
        work, waiting, run = self.work, self.waiting, self.context.run
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                run(work.close)
                raise
            except BaseException as exc:  # the task was cancelled, or what it waited for failed
                try:
                    waiting = run(work.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = run(work.send, sent)
                except StopIteration:
                    return


class Tunnel:
    """Serves request messages through ``app`` on behalf of one client connection."""

    def __init__(self, app: tornado.web.Application, remote_ip: str, host: str) -> None:
        self.app = app
        self.routes = routes(app)
        self.host = host
        #: Shared by every request of this client: it only names the client's address.
        self.context = SimpleNamespace(remote_ip=remote_ip, protocol="http")
        self.open: set[CapturingConnection] = set()
        self._resolved: asyncio.Future[None] | None = None
        try:  # Tornado checks a request's Host on each; here once (a bad one: each request is made Tornado's way)
            self.host_name: str | None = httputil.HTTPServerRequest(
                start_line=httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
                headers=httputil.HTTPHeaders({"Host": host})).host_name
        except httputil.HTTPInputError:
            self.host_name = None

    def resolved(self) -> asyncio.Future[None]:
        """A finished future, for writes that completed at once (one per tunnel: a done future can be shared)."""
        if self._resolved is None:
            self._resolved = asyncio.get_running_loop().create_future()
            self._resolved.set_result(None)
        return self._resolved

    def start(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
              on_response: ResponseCallback) -> Awaitable[None] | None:
        """Start one request (``target`` is path plus query); ``on_response`` gets what the application answers.

        ``headers`` must be valid HTTP header names and values (as :func:`gateway.ws.messages.parse` leaves them).

        The common case runs synchronously up to the handler's own task, with no
        task or future of its own; a read answered without a handler (``direct_answer``)
        runs synchronously to its end unless it waits (:func:`_eagerly`).  When the
        application must be waited for first (a ``@stream_request_body`` handler sets up
        before its body arrives, or such a read waits for its store) it returns an
        awaitable that delivers the rest; the caller runs it and handles its errors.
        ``on_response`` is not called once :meth:`close` has aborted the request.
        """
        # each header set as it comes (add() only for a name given again): add() checks every name and
        # value against HTTP's grammar, which the message's parse has checked already (messages.py's
        # HEADER_NAME and HEADER_VALUE, on values stripped as HTTP parsers strip them): half the cost
        request_headers = httputil.HTTPHeaders()
        request_headers["Host"] = self.host
        for name, value in headers:
            if name.lower() not in DROPPED_REQUEST_HEADERS:
                if name in request_headers:
                    request_headers.add(name, value)
                else:
                    request_headers[name] = value
        if body or method in BODY_METHODS:
            request_headers.add("Content-Length", str(len(body)))
        connection = CapturingConnection(self, on_response)
        self.open.add(connection)
        try:
            # what Application.start_request's delegate does with the request line and headers, minus its layer
            start_line = httputil.RequestStartLine(method, target, "HTTP/1.1")
            if self.host_name is None:
                request = httputil.HTTPServerRequest(connection=connection, server_connection=self,
                                                     start_line=start_line, headers=request_headers)
            else:
                request = TunneledRequest(start_line, request_headers, connection, self, self.host_name,
                                          self.routes.targets.parse(target))
            delegate = self.routes.delegate(request)
            direct = self.app.settings.get("direct_answer")
            if direct is not None and method == "GET" and not body \
                    and isinstance(delegate, tornado.web._HandlerDelegate) and not delegate.path_kwargs:
                return _eagerly(self._direct(connection, delegate, start_line, request_headers, direct))
            started = delegate.headers_received(start_line, request_headers)
            if started is not None:
                return self._continue(connection, delegate, started, body)
            if body:
                delegate.data_received(body)  # a handler that does not stream takes it at once
            delegate.finish()
        except BaseException:
            self._drop(connection)
            raise
        return None

    async def _direct(self, connection: CapturingConnection, delegate: Any, start_line: httputil.RequestStartLine,
                      request_headers: httputil.HTTPHeaders, direct: DirectAnswer) -> None:
        """Answer a ``GET`` through the application's ``direct_answer`` (no ``RequestHandler``:
        ``handlers.direct.answer_directly``), or, when it declines or fails, the usual way."""
        try:
            answer = await direct(self.app, delegate.handler_class, delegate.request, delegate.path_args)
        except asyncio.CancelledError:
            self._drop(connection)
            raise
        except Exception:  # whatever it was (a bad token, say), the usual way answers it as HTTP would
            answer = None
        if connection not in self.open:
            return  # the session closed meanwhile: nobody takes the answer
        if answer is None:
            try:
                started = delegate.headers_received(start_line, request_headers)
                if started is None:
                    delegate.finish()
                    return
            except BaseException:
                self._drop(connection)
                raise
            await self._continue(connection, delegate, started, b"")
            return
        status, headers, body = answer
        response = connection.response
        response.status = status
        for name, value in headers:
            response.headers.setdefault(name, []).append(value)
        connection.write(body)
        connection.finish()

    def _drop(self, connection: CapturingConnection) -> None:
        connection.on_response = None  # the caller answers for the failure: never twice
        self.open.discard(connection)

    async def _continue(self, connection: CapturingConnection, delegate: httputil.HTTPMessageDelegate,
                        waiting: Awaitable[None], body: bytes) -> None:
        """The rest of :meth:`start` once ``waiting`` is done (``@stream_request_body`` handlers set up first)."""
        try:
            await waiting
            if body:
                received = delegate.data_received(body)
                if received is not None:
                    await received
            delegate.finish()
        except asyncio.CancelledError:
            self._drop(connection)
            raise
        except Exception:
            if connection not in self.open:  # answered already (say, refused in prepare): nothing to tell
                log.exception("a tunneled request failed after its response")
                return
            self._drop(connection)
            raise

    def close(self) -> None:
        """Abort every request still running (their handlers see ``on_connection_close``)."""
        for connection in list(self.open):
            connection.abort()
        self.open.clear()
