"""The HTTP listener, protected: a connection limit, accept that backs off when descriptors run out,
and the process's descriptor limit raised as far as it may go.

Tornado's accept loop re-raises ``EMFILE`` ("Too many open files") from every
readiness callback: with the descriptors exhausted the listening socket stays
readable, so the loop spins at full CPU and logs a traceback each turn. Here an
accept that fails for lack of resources stops accepting for
:data:`ACCEPT_PAUSE` seconds (the queue waits in the kernel's backlog), and
says so in the log at most once per :data:`NOTICE_EVERY` seconds, as asyncio's
own servers do.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from collections.abc import Callable, Iterable
from typing import Any

import tornado.httpserver
from tornado import iostream
from tornado.ioloop import IOLoop

log = logging.getLogger("gateway")

#: Seconds an exhausted server stops accepting before it tries again.
ACCEPT_PAUSE = 1.0
#: Seconds between two log lines about the same kind of refusal.
NOTICE_EVERY = 10.0
#: accept() failures that mean "no resources right now" rather than a broken socket.
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How many connections one readiness callback accepts (Tornado's figure), so others get a turn.
ACCEPT_BATCH = 128


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


class _Notice:
    """Logs a recurring condition once per :data:`NOTICE_EVERY` seconds, with how often it happened."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.last = float("-inf")

    def __call__(self, *args: Any) -> None:
        self.count += 1
        now = IOLoop.current().time()
        if now - self.last >= NOTICE_EVERY:
            log.warning(self.message + " (%d time(s) since the last notice)", *args, self.count)
            self.last, self.count = now, 0


class ProtectedHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer with at most ``max_connections`` open and an accept loop that backs off."""

    def initialize(self, *args: Any, max_connections: int = 10000, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self._over_limit = _Notice("connection limit of %d reached: new connections are closed at once")
        self._exhausted = _Notice("out of resources accepting connections (%s): not accepting for %.1fs")

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock, self._handle_connection)

    def _accept_on(self, sock: socket.socket, callback: Callable[[socket.socket, Any], None]) -> Callable[[], None]:
        """Tornado's ``add_accept_handler``, pausing instead of spinning when resources run out."""
        io_loop = IOLoop.current()
        state = {"removed": False, "paused": False}

        def resume() -> None:
            if not state["removed"] and state["paused"]:
                state["paused"] = False
                io_loop.add_handler(sock, accept, IOLoop.READ)

        def accept(fd: Any, events: int) -> None:
            for _ in range(ACCEPT_BATCH):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in OUT_OF_RESOURCES:
                        raise
                    self._exhausted(exc.strerror or exc, ACCEPT_PAUSE)
                    io_loop.remove_handler(sock)
                    state["paused"] = True
                    io_loop.call_later(ACCEPT_PAUSE, resume)
                    return
                callback(connection, address)

        def remove() -> None:
            if not state["paused"]:
                io_loop.remove_handler(sock)
            state["removed"] = True

        io_loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            self._over_limit(self.max_connections)
            stream.close()
            return
        super().handle_stream(stream, address)
