"""Fixtures that start the real gateway on a free loopback port, and a client for it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders

from gateway.config import Config
from gateway.app.server import Gateway
from gateway.store import In
from tests import rethinkdb_server
from tests.peers import Relay
from tests.spec import check_response

#: Cheap Argon2id for tests: the same algorithm, a fraction of the memory.
TEST_ARGON2_MEMORY = 1024
PASSWORD = "correct horse battery"


@dataclass
class Reply:
    """What the client saw: status, headers, raw body, and the body as JSON."""

    status: int
    headers: HTTPHeaders
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Calls the running server over real HTTP; every response is checked against docs/openapi.yaml."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None, raw: bytes | str | None = None,
                   check_spec: bool = True) -> Reply:
        sent_headers = {"Content-Type": "application/json"} if (body is not None or raw is not None) else {}
        if token is not None:
            sent_headers["Authorization"] = f"Bearer {token}"
        sent_headers.update(headers or {})
        data = raw.encode() if isinstance(raw, str) else raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        url = self.base_url + path
        response = await self.http.fetch(HTTPRequest(
            url, method=method, headers=sent_headers, body=data, allow_nonstandard_methods=True,
            request_timeout=30,
        ), raise_error=False)
        reply = Reply(response.code, response.headers, response.body or b"")
        if check_spec:
            check_response(method, url, sent_headers, data, reply.status, reply.headers, reply.body)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    async def register(self, username: str, password: str = PASSWORD) -> tuple[dict, str]:
        """A new account and a token for it."""
        reply = await self.post("/accounts", {"username": username, "password": password})
        assert reply.status == 201, reply.body
        login = await self.post("/tokens", {"username": username, "password": password})
        assert login.status == 201, login.body
        return reply.json["account"], login.json["token"]["value"]


async def wait_until(predicate: Any, timeout: float = 10) -> None:
    """Wait for server-side state a client cannot observe directly (checked on every loop turn, bounded)."""
    deadline = time.monotonic() + timeout
    while not (await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def wait_ready(api: Api, timeout: float = 30) -> None:
    """Wait until the gateway says it is ready for traffic (``/health/ready`` 200: store and feeds up)."""
    async def ready() -> bool:
        return (await api.get("/health/ready")).status == 200
    await wait_until(ready, timeout=timeout)


@pytest.fixture
def own_rethinkdb() -> Any:
    """A RethinkDB server of the test's own, started, to kill and restart (:func:`restart`); removed after."""
    server = rethinkdb_server.OwnServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


async def restart(server: rethinkdb_server.OwnServer) -> None:
    """Start a killed :class:`~tests.rethinkdb_server.OwnServer` again (its start blocks: run on a thread)."""
    await asyncio.get_running_loop().run_in_executor(None, server.start)


async def settled(gateway: Gateway) -> None:
    """Wait until the delivery worker has nothing queued or in progress."""
    async def idle() -> bool:
        return await gateway.store.count("emails", {"direction": "out", "status": In(["queued", "sending"])}) == 0

    await wait_until(idle)


def make_config(tmp_path: Any, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "port": 0,
        "store": f"sqlite:{tmp_path}/gateway.db",
        "secret_file": str(tmp_path / "gateway.secret"),
        "argon2_memory": TEST_ARGON2_MEMORY,
        "smtp": "127.0.0.1:0",
    }
    return Config(**{**settings, **overrides})


@pytest.fixture(scope="session", autouse=True)
def rethinkdb_test_server() -> Any:
    """Stops the RethinkDB server the tests started (lazily, on first use), once the session ends."""
    yield
    rethinkdb_server.stop()


@pytest.fixture
def config(tmp_path: Any) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def gateway(io_loop: Any, config: Config) -> Any:
    """A running gateway with a fresh SQLite store."""
    server = Gateway(config)
    io_loop.run_sync(server.start)
    yield server
    io_loop.run_sync(server.stop)


@pytest.fixture
def start_gateway(io_loop: Any, tmp_path: Any) -> Any:
    """Start gateways with config overrides (``await start_gateway(ws_max_inflight=2)``); all stop after the test."""
    started: list[Gateway] = []

    async def start(**overrides: Any) -> Gateway:
        server = Gateway(make_config(tmp_path, **overrides))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        io_loop.run_sync(server.stop)


def serve_relay(io_loop: Any, handler: Any) -> Any:
    """Serve ``handler`` (aiosmtpd) on a free port while the caller's fixture lives; sets ``handler.url``."""
    async def start() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)

    server = io_loop.run_sync(start)
    handler.url = f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield handler
    server.close()


@pytest.fixture
def relay(io_loop: Any) -> Any:
    """An SMTP relay on a free port, played by aiosmtpd; ``relay.url`` is its ``smtp://`` URL."""
    yield from serve_relay(io_loop, Relay())


def api_for(gateway: Gateway) -> Api:
    """A client of the gateway's HTTP API."""
    return Api(f"http://127.0.0.1:{gateway.port}")


@pytest.fixture
def api(gateway: Gateway) -> Api:
    return api_for(gateway)
