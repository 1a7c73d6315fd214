"""Runs a tunneled request through the very same Tornado application, in-process.

The request goes through ``Application.start_request`` as if an HTTP/1.1
connection had delivered it, so routing, ``prepare``, auth, error handling and
output are exactly those of plain HTTP; the response is captured instead of
written to a socket.  No loopback socket, no second route table.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import tornado.web
from tornado import httputil

#: Headers the tunnel sets itself or that mean nothing without a real connection.
#: Accept-Encoding is dropped so a body is never gzipped into the JSON envelope.
DROPPED_REQUEST_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "accept-encoding", "te",
     "expect"}
)


@dataclass
class TunneledResponse:
    """What the application answered: status, every header (name -> values) and the body."""

    status: int = 0
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


class _CapturingConnection(httputil.HTTPConnection):
    """The ``HTTPConnection`` a tunneled request is served on: it records instead of sending."""

    def __init__(self, remote_ip: str) -> None:
        # HTTPServerRequest reads remote_ip and protocol from the connection's context.
        self.context = SimpleNamespace(remote_ip=remote_ip, protocol="http")
        self.response = TunneledResponse()
        self.done: asyncio.Future[TunneledResponse] = asyncio.get_running_loop().create_future()
        self._chunks: list[bytes] = []
        self._close_callback: Callable[[], None] | None = None

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> "asyncio.Future[None]":
        self.response.status = start_line.code
        for name, value in headers.get_all():
            self.response.headers.setdefault(name, []).append(value)
        return self.write(chunk) if chunk else _resolved()

    def write(self, chunk: bytes) -> "asyncio.Future[None]":
        self._chunks.append(chunk)
        return _resolved()

    def finish(self) -> None:
        self.response.body = b"".join(self._chunks)
        if not self.done.done():
            self.done.set_result(self.response)

    def abort(self) -> None:
        """The session went away: tell the handler (``on_connection_close``) and stop waiting."""
        callback, self._close_callback = self._close_callback, None
        if callback is not None:
            callback()
        if not self.done.done():
            self.done.cancel()


def _resolved() -> "asyncio.Future[None]":
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class Tunnel:
    """Serves request messages through ``app`` on behalf of one client connection."""

    def __init__(self, app: tornado.web.Application, remote_ip: str, host: str) -> None:
        self.app = app
        self.remote_ip = remote_ip
        self.host = host
        self._open: set[_CapturingConnection] = set()

    async def fetch(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> TunneledResponse:
        """Run one request (``target`` is path plus query) and return what the application answered."""
        request_headers = httputil.HTTPHeaders()
        request_headers.add("Host", self.host)
        for name, value in headers:
            if name.lower() not in DROPPED_REQUEST_HEADERS:
                request_headers.add(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            request_headers.add("Content-Length", str(len(body)))
        connection = _CapturingConnection(self.remote_ip)
        self._open.add(connection)
        try:
            delegate = self.app.start_request(self, connection)
            started = delegate.headers_received(httputil.RequestStartLine(method, target, "HTTP/1.1"), request_headers)
            if isinstance(started, Awaitable):
                await started  # @stream_request_body handlers set up before the body arrives
            if body:
                received = delegate.data_received(body)
                if isinstance(received, Awaitable):
                    await received
            delegate.finish()
            return await connection.done
        finally:
            self._open.discard(connection)

    def close(self) -> None:
        """Abort every request still running (their handlers see ``on_connection_close``)."""
        for connection in list(self._open):
            connection.abort()
        self._open.clear()
