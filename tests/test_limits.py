"""Limits that protect the server from clients that take without giving: slow headers, slow bodies,
idle connections, too many connections, and running out of file descriptors.  Each is seen from the
outside: the slow client is cut, and everyone else keeps being served."""

from __future__ import annotations

import math
import resource
import socket
import time
from typing import Any

import pytest
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient

from gateway.app.listen import NOTICE_EVERY
from tests.conftest import api_for, wait_until
from tests.peers import Served


async def open_stream(port: int) -> IOStream:
    return await TCPClient().connect("127.0.0.1", port)


async def closed_by_server(stream: IOStream) -> bytes:
    """Everything the server sends until it closes the connection (a test's timeout bounds it)."""
    try:
        return await stream.read_until_close()
    except StreamClosedError:
        return b""


@pytest.mark.gen_test(timeout=30)
async def test_slow_headers_and_slow_bodies_are_cut_and_others_served(start_gateway: Any) -> None:
    gateway = await start_gateway(header_timeout=0.3, body_timeout=0.3)
    api = api_for(gateway)
    slow_headers = await open_stream(gateway.port)
    await slow_headers.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # ...and never the blank line
    slow_body = await open_stream(gateway.port)
    await slow_body.write(b"POST /accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user")
    idle = await open_stream(gateway.port)  # says nothing at all
    assert (await api.get("/health")).status == 200  # served meanwhile
    assert await closed_by_server(slow_headers) == b""
    assert await closed_by_server(idle) == b""
    await closed_by_server(slow_body)  # returns: the server closed it
    assert (await api.get("/health")).status == 200


@pytest.mark.gen_test(timeout=30)
async def test_connections_over_the_limit_are_closed_at_once(start_gateway: Any, caplog: Any) -> None:
    gateway = await start_gateway(max_connections=4)
    held = [await open_stream(gateway.port) for _ in range(4)]
    await wait_until(lambda: gateway.http is not None and len(gateway.http._connections) == 4)
    extra = await open_stream(gateway.port)
    assert await closed_by_server(extra) == b""  # closed at once, unanswered
    assert any("connection limit of 4 reached" in r.getMessage() for r in caplog.records)
    held.pop().close()
    await wait_until(lambda: gateway.http is not None and len(gateway.http._connections) == 3)
    assert (await api_for(gateway).get("/health")).status == 200  # a place is free again
    for stream in held:
        stream.close()


def limit_descriptors(limit: int) -> Any:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return set_limit


@pytest.mark.gen_test(timeout=60)
async def test_running_out_of_descriptors_pauses_accept_instead_of_spinning(tmp_path: Any) -> None:
    """``ulimit -n 64`` and 100 idle connections: the server says once that it is out of descriptors,
    logs no traceback, and serves again once the connections go."""
    served = Served(tmp_path, {"GATEWAY_LOG_LEVEL": "info"}, preexec_fn=limit_descriptors(64))
    lines = served.lines
    try:
        port = int(served.base.rsplit(":", 1)[1])
        assert any("open-file limit: 64 descriptors" in line for line in lines)
        idle = []
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            idle.append(sock)
        await wait_until(lambda: any("out of resources accepting connections" in line for line in lines), timeout=20)
        first_notice = time.monotonic()
        for sock in idle:
            sock.close()

        async def healthy() -> bool:
            try:
                stream = await open_stream(port)
                await stream.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return b" 200 " in (await closed_by_server(stream))[:20]
            except (StreamClosedError, OSError):
                return False
        await wait_until(healthy, timeout=20)
        log = "".join(lines)
        assert "Traceback" not in log and "Too many open files" in log
        # once per notice interval, however long the machine took to get here
        intervals = (time.monotonic() - first_notice) / NOTICE_EVERY
        assert log.count("out of resources accepting connections") <= 1 + math.ceil(intervals)
    finally:
        served.stop()
