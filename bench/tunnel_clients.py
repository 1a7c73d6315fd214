"""The load of ``bench/tunnel.py``: its HTTP/1.1 and SockJS clients, and one measured run of either.

Imported as a sibling module (the script runs as ``python bench/tunnel.py``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from gateway_process import percentile
from procstat import machine_busy_seconds

#: How the tunnel's client writes its frames and reads the replies (``--client-json``): the reads
#: are most of its work (each JSON-value reply holds the whole page), and a client slower than the
#: server leaves the server partly idle, waking for fewer requests at a time than over HTTP, whose
#: client does not parse its bodies at all.
CLIENT_JSON: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "orjson": (lambda value: orjson.dumps(value).decode(), orjson.loads),
    "json": (lambda value: json.dumps(value, separators=(",", ":")), json.loads),
}
MAX_ERROR_SAMPLES = 5

try:
    import websockets.asyncio.client as websockets_client
except ImportError:  # pragma: no cover - depends on the environment
    websockets_client = None  # type: ignore[assignment]


# -- a minimal HTTP/1.1 keep-alive client --------------------------------------


class HTTPConnection:
    """One persistent HTTP/1.1 connection: a request, then its Content-Length response, in a loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host
        self.bytes_in = 0  # response bytes read, head and body

    @classmethod
    async def open(cls, host: str, port: int) -> HTTPConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    def encode(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send encoded request bytes; the response's status and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"\r\ncontent-length:")
        if at < 0:
            raise ValueError(f"response without Content-Length: {head[:200]!r}")
        end = lowered.find(b"\r\n", at + 17)
        body = await self.reader.readexactly(int(lowered[at + 17:end]))
        self.bytes_in += len(head) + len(body)
        return status, body

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      payload: object = None) -> tuple[int, Any]:
        """One JSON call; its status and decoded body."""
        body = b"" if payload is None else json.dumps(payload).encode()
        status, raw = await self.exchange(self.encode(method, target, headers, body))
        return status, json.loads(raw) if raw else {}

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class Measured(Protocol):
    """A server a run measures: where it listens, and its CPU so far (user, system)."""

    host: str
    port: int

    def cpu_seconds(self) -> tuple[float, float]: ...


# -- one measured run ---------------------------------------------------------


@dataclass
class Run:
    """What one run of one variant measured."""

    variant: str
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    server_cpu: float = 0.0
    server_sys: float = 0.0
    others_cpu: float = 0.0  # what every other process on the machine used meanwhile
    client_cpu: float = 0.0
    frames_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0  # what the client read: HTTP heads and bodies, or SockJS frames

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(text[:300])

    @property
    def rps(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    def percentile(self, q: float) -> float:
        """Latency at quantile ``q`` (nearest rank), in milliseconds."""
        return percentile(sorted(self.latencies), q) * 1000

    @property
    def cpu_us(self) -> float:
        """Server CPU microseconds per request."""
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    @property
    def client_us(self) -> float:
        return self.client_cpu / self.requests * 1e6 if self.requests else 0.0


class Load:
    """Hands out request numbers until ``total`` are issued or the deadline passes."""

    def __init__(self, total: int, duration: float) -> None:
        self.total = total
        self.duration = duration
        self.issued = 0
        self.deadline = 0.0

    def start(self) -> None:
        self.deadline = time.perf_counter() + self.duration

    def take(self) -> int | None:
        if self.issued >= self.total or time.perf_counter() >= self.deadline:
            return None
        self.issued += 1
        return self.issued - 1


async def measured(run: Run, server: Measured, load: Load, body: Callable[[], Awaitable[None]]) -> Run:
    """Run ``body`` (the load, already connected) between two readings of server, client and machine CPU."""
    server_before, client_before = server.cpu_seconds(), time.process_time()
    machine_before = machine_busy_seconds()
    started = time.perf_counter()
    load.start()
    try:
        await asyncio.wait_for(body(), load.duration + 60)
    except TimeoutError:
        raise RuntimeError(f"{run.variant}: responses stopped coming ({run.requests} of {load.issued} answered)") from None
    run.wall = time.perf_counter() - started
    (user_before, sys_before), (user_after, sys_after) = server_before, server.cpu_seconds()
    run.server_cpu = user_after + sys_after - user_before - sys_before
    run.server_sys = sys_after - sys_before
    run.client_cpu = time.process_time() - client_before
    run.others_cpu = max(0.0, machine_busy_seconds() - machine_before - run.server_cpu - run.client_cpu)
    return run


async def run_http(server: Measured, auth: str, load: Load, concurrency: int,
                   paths: Sequence[str], variant: str = "http") -> Run:
    run = Run(variant)
    connections = [await HTTPConnection.open(server.host, server.port) for _ in range(concurrency)]
    requests = [connections[0].encode("GET", path, {"Authorization": auth}) for path in paths]
    kinds = len(paths)

    async def worker(conn: HTTPConnection) -> None:
        latencies = run.latencies
        clock = time.perf_counter
        while (n := load.take()) is not None:
            sent = clock()
            try:
                status, body = await conn.exchange(requests[n % kinds])
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                run.error(f"request {n}: {exc!r}")
                return
            latencies.append(clock() - sent)
            run.requests += 1
            if status != 200:
                run.error(f"{paths[n % kinds]} -> {status}: {body[:200]!r}")

    async def drive() -> None:
        await asyncio.gather(*(worker(conn) for conn in connections))

    try:
        return await measured(run, server, load, drive)
    finally:
        run.bytes_received = sum(conn.bytes_in for conn in connections)
        for conn in connections:
            await conn.close()


class WebSocket(Protocol):
    """The little of a websocket client the bench uses: text frames out and in."""

    async def send(self, text: str) -> None: ...
    async def recv(self) -> str: ...
    async def close(self) -> None: ...


class WebsocketsSocket:
    """A ``websockets`` connection (no compression, no size limit, no pings)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, url: str) -> WebsocketsSocket:
        return cls(await websockets_client.connect(url, compression=None, max_size=None, ping_interval=None))

    async def send(self, text: str) -> None:
        await self.connection.send(text)

    async def recv(self) -> str:
        text: str = await self.connection.recv(decode=True)
        return text

    async def close(self) -> None:
        await self.connection.close()


class TornadoSocket:
    """A Tornado websocket client connection."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @classmethod
    async def open(cls, url: str) -> TornadoSocket:
        from tornado.websocket import websocket_connect

        return cls(await websocket_connect(url, max_message_size=1 << 30))

    async def send(self, text: str) -> None:
        await self.connection.write_message(text)

    async def recv(self) -> str:
        message = await self.connection.read_message()
        if message is None:
            raise ConnectionError("websocket closed")
        return message if isinstance(message, str) else message.decode()

    async def close(self) -> None:
        self.connection.close()


async def open_websocket(url: str, client: str) -> WebSocket:
    return await (WebsocketsSocket if client == "websockets" else TornadoSocket).open(url)


async def run_tunnel(server: Measured, auth: str, load: Load, concurrency: int, paths: Sequence[str], *,
                     pack: bool, client: str, json_body: bool = False, client_json: str = "orjson") -> Run:
    dumps, loads = CLIENT_JSON[client_json]
    run = Run("tunnel-packed" if pack else "tunnel-json" if json_body else "tunnel")
    extra = {"accept_json_body": True} if json_body else {}
    url = f"ws://{server.host}:{server.port}/ws/000/{secrets.token_hex(8)}/websocket"
    ws = await open_websocket(url, client)
    opening = await ws.recv()
    if opening != "o":
        raise RuntimeError(f"SockJS session did not open: {opening!r}")
    headers = {"Authorization": auth}
    sent_at: dict[str, float] = {}

    def message(n: int) -> str:
        request_id = str(n)
        sent_at[request_id] = time.perf_counter()
        return dumps({"type": "request", "id": request_id, "method": "GET", "path": paths[n % len(paths)],
                      "headers": headers, **extra})

    async def send(numbers: list[int]) -> None:
        if not numbers:
            return
        if pack:
            await ws.send(dumps([message(n) for n in numbers]))
            run.frames_sent += 1
        else:
            for n in numbers:
                await ws.send(dumps([message(n)]))
            run.frames_sent += len(numbers)

    def take(count: int) -> list[int]:
        numbers: list[int] = []
        while len(numbers) < count and (n := load.take()) is not None:
            numbers.append(n)
        return numbers

    async def drive() -> None:
        latencies = run.latencies
        clock = time.perf_counter
        await send(take(concurrency))
        while sent_at:
            frame = await ws.recv()
            kind = frame[:1]
            if kind == "h":
                continue
            if kind != "a":
                raise RuntimeError(f"unexpected SockJS frame: {frame[:200]!r}")
            run.frames_received += 1
            run.bytes_received += len(frame)  # ASCII: json.dumps escapes the rest
            now = clock()
            answered = 0
            for raw in loads(frame[1:]):
                reply = loads(raw)
                started = sent_at.pop(reply.get("id"), None)
                if started is None or reply.get("type") != "response":
                    run.error(f"unexpected message: {raw[:200]}")
                    if started is None:
                        return  # a request it may stand for would never be answered: stop here
                    continue
                latencies.append(now - started)
                run.requests += 1
                answered += 1
                if reply["status"] != 200:
                    run.error(f"request {reply['id']} -> {reply['status']}: {str(reply.get('body', ''))[:200]}")
            await send(take(answered))

    try:
        return await measured(run, server, load, drive)
    finally:
        await ws.close()
