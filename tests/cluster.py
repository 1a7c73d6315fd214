"""The parts of a real deployment the cluster tests run: nginx from the template in docs/deploy.md,
gateways as processes on fixed ports, subscribers of both client libraries through nginx, and
mail flowing in over SMTP to every gateway, as an MTA would send it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.client import Client
from tests.conftest import Api
from tests.peers import GatewayProcess, free_port, in_thread, smtp_send

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NODE = shutil.which("node")
SUBSCRIBE_JS = ROOT / "clients" / "js" / "scripts" / "subscribe.js"


def nginx_template() -> str:
    """The nginx configuration docs/deploy.md gives operators (between its template markers)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    found = re.search(r"<!-- nginx template: begin -->\s*```nginx\n(.*?)```\s*<!-- nginx template: end -->", text, re.S)
    assert found, "docs/deploy.md has no nginx template"
    return found.group(1)


class Nginx:
    """Debian's nginx, unprivileged in a folder of its own, in front of gateways on ``ports``."""

    def __init__(self, ports: list[int]) -> None:
        if NGINX is None:
            pytest.skip("nginx is not installed (Debian's package `nginx`): the cluster tests run it")
        self.ports = ports
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n    ".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in self.ports)
        site = nginx_template().replace("@GATEWAYS@", servers).replace("@LISTEN@", f"127.0.0.1:{self.port}")
        temp = "\n".join(f"    {kind}_temp_path {self.directory}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp folders
        return (f"{user}worker_processes 1;\nerror_log {self.directory}/error.log warn;\n"
                f"pid {self.directory}/nginx.pid;\nevents {{ worker_connections 4096; }}\n"
                f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n")

    def start(self) -> None:
        conf = self.directory / "nginx.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen([NGINX, "-p", str(self.directory), "-c", str(conf), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nginx did not start: {self.process.stderr.read() if self.process.stderr else ''!r}")
            time.sleep(0.02)  # polling a port: nginx says nothing when it is ready

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Fleet:
    """Gateways as processes on fixed ports (so nginx knows them, and a restart comes back on the same)."""

    def __init__(self, count: int, env: dict[str, str], stores: list[str]) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.smtp_ports = [free_port() for _ in range(count)]
        self.env = [{**env, "GATEWAY_STORE": stores[i % len(stores)], "GATEWAY_PORT": str(self.ports[i]),
                     "GATEWAY_SMTP": f"127.0.0.1:{self.smtp_ports[i]}"} for i in range(count)]
        self.processes: list[GatewayProcess | None] = [None] * count
        self.gone: list[GatewayProcess] = []  # killed or restarted: their logs stay readable

    async def start(self, i: int) -> None:
        process = GatewayProcess(self.env[i])
        await process.start()
        self.processes[i] = process

    async def kill(self, i: int) -> None:
        process, self.processes[i] = self.processes[i], None
        assert process is not None
        await process.kill()
        self.gone.append(process)

    async def restart(self, i: int) -> None:
        """SIGTERM (the gateway drains), then start it again on the same ports."""
        process, self.processes[i] = self.processes[i], None
        assert process is not None
        await process.stop()
        self.gone.append(process)
        await self.start(i)

    def logs(self, *words: str) -> list[str]:
        """The kept log lines of every gateway run that contain any of ``words``."""
        runs = [*self.gone, *(p for p in self.processes if p is not None)]
        return [line for p in runs for line in p.log if any(w in line for w in words)]

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.processes) if p is not None]

    async def stop(self) -> None:
        for i in self.alive():
            process = self.processes[i]
            assert process is not None
            await process.stop()

    async def sessions(self, i: int) -> int:
        """How many SockJS sessions gateway ``i`` holds (from its /metrics)."""
        from tornado.httpclient import AsyncHTTPClient
        text = (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{self.ports[i]}/metrics")).body.decode()
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("gateway_sessions{")))


class MailFlow:
    """Mail to ``to`` over SMTP, one message after another, each to the next gateway that is up; a
    message refused (451 while the store fails over) or cut off (a gateway killed) is sent again to
    another, as an MTA does.  ``accepted`` lists the subjects the gateways took (250)."""

    def __init__(self, fleet: Fleet, to: str) -> None:
        self.fleet = fleet
        self.to = to
        self.accepted: list[str] = []
        self.retried = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = False
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        turn = 0
        while not self._stop:
            subject = f"m{len(self.accepted)}"
            while True:
                alive = self.fleet.alive()
                port = self.fleet.smtp_ports[alive[turn % len(alive)]]
                turn += 1
                try:
                    await in_thread(smtp_send, port, "ann@example.org", [self.to],
                                    f"Subject: {subject}\r\n\r\nbody of {subject}")
                    break
                except (smtplib.SMTPException, OSError):
                    self.retried += 1
                    await asyncio.sleep(0.05)  # an MTA's retry delay, kept short
            self.accepted.append(subject)
            self._changed.set()
            await asyncio.sleep(0.02)  # a steady flow of about 50 messages a second at most

    async def more(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` more messages were accepted."""
        target = len(self.accepted) + count
        deadline = time.monotonic() + timeout
        while len(self.accepted) < target:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"mail stopped flowing: {len(self.accepted)} accepted, {self.retried} retried")
            await asyncio.wait_for(self._changed.wait(), left)

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task


class NodeSubscriber:
    """The JavaScript client library in Node (clients/js/scripts/subscribe.js), subscribed through nginx."""

    def __init__(self, url: str, token: str, transport: str, request_every_ms: int | None = None) -> None:
        if NODE is None:
            pytest.skip("node is not on PATH: the cluster tests run the JavaScript client in Node")
        if not (ROOT / "clients" / "js" / "node_modules" / "sockjs-client").is_dir():
            pytest.skip("clients/js/node_modules is missing: run `npm ci --prefix clients/js`")
        self.args = [NODE, "--experimental-websocket", str(SUBSCRIBE_JS), url, token, transport]
        if request_every_ms:
            self.args.append(str(request_every_ms))
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.requests = 0
        self.subscribed = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the client; returns once it is subscribed."""
        self.process = await asyncio.create_subprocess_exec(*self.args, stdout=asyncio.subprocess.PIPE,
                                                            cwd=str(ROOT / "clients" / "js"))
        self._reader = asyncio.ensure_future(self._read())
        await asyncio.wait_for(self.subscribed.wait(), 30)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = json.loads(raw)
            if "event" in line:
                self.events.append(line["event"])
            elif "subscribed" in line:
                self.subscribed.set()
            elif "requests" in line:
                self.requests = line["requests"]
            elif "error" in line or "end" in line or "resync" in line:
                self.errors.append(json.dumps(line))

    async def stop(self) -> None:
        """Stop the client (one that never started, too: a test's cleanup after a failed start)."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self._reader is not None:
            await self._reader


class PythonSubscriber:
    """The Python client library (gateway/client/), subscribed through nginx; with ``ask``, it also
    calls ``GET /accounts/me`` in a loop, noting any error."""

    def __init__(self, url: str, token: str, ask: bool = False) -> None:
        self.client = Client(url, backoff=(0.05, 1.0))
        self.token = token
        self.ask = ask
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.requests = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        await self.client.start()
        subscription = await self.client.subscribe(self.token)

        async def listen() -> None:
            async for event in subscription:
                self.events.append(event)
            if subscription.ended:
                self.errors.append(f"subscription ended: {subscription.ended}")

        self._tasks.append(asyncio.ensure_future(listen()))
        if self.ask:
            self._tasks.append(asyncio.ensure_future(self._ask()))

    async def _ask(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self._stopping:  # (not only the cancel: a cancel that lands as an answer does may be lost)
            try:
                reply = await self.client.request("GET", "/accounts/me", headers=headers)
                if reply.status != 200:
                    self.errors.append(f"GET /accounts/me: {reply.status} {reply.body}")
                self.requests += 1
            except Exception as exc:  # noqa: BLE001 - any failure is what the test looks for
                self.errors.append(f"GET /accounts/me: {type(exc).__name__} {exc}")
            await asyncio.sleep(0.05)  # a client's own pace

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()


@dataclass
class Deployment:
    """What :func:`deployment` runs: the gateways, nginx before them, alice's token, her subscribers
    through nginx, and mail flowing to her."""

    fleet: Fleet
    nginx: Nginx
    token: str
    subscribers: list[Any]
    flow: MailFlow


#: Seconds a deployment's step (a subscriber's start or stop, the mail's stop) may take before the
#: test says which one hung.
STEP_TIMEOUT = 30


@contextlib.asynccontextmanager
async def deployment(fleet: Fleet, subscribers: Callable[[str, str], list[Any]],
                     prepare: Callable[[], Awaitable[Any]] | None = None) -> AsyncIterator[Deployment]:
    """Start every gateway of ``fleet`` (then ``prepare``, say placing primaries), nginx before them,
    the account alice, ``subscribers(nginx_url, token)`` (each started: subscribed) and mail to her;
    stop all of it afterwards, whatever happened."""
    nginx = Nginx(fleet.ports)
    started: list[Any] = []
    flow: MailFlow | None = None
    try:
        for i in range(len(fleet.ports)):
            await fleet.start(i)  # the first creates the tables
        if prepare is not None:
            await prepare()
        await in_thread(nginx.start)
        _, token = await Api(nginx.url).register("alice")
        for n, subscriber in enumerate(subscribers(nginx.url, token)):
            started.append(subscriber)
            try:
                await asyncio.wait_for(subscriber.start(), STEP_TIMEOUT)
            except TimeoutError:
                raise AssertionError(f"subscriber {n} ({type(subscriber).__name__}) did not start; the gateways "
                                     f"logged: {fleet.logs('WARNING', 'ERROR')}") from None
        flow = MailFlow(fleet, "alice@localhost")
        flow.start()
        yield Deployment(fleet, nginx, token, started, flow)
    finally:
        # each step bounded, so a hang says which it was, and the gateways and nginx are stopped all the same
        hung = []
        steps = [("stopping the mail", flow.stop())] if flow is not None else []
        steps += [(f"stopping subscriber {n} ({type(s).__name__})", s.stop()) for n, s in enumerate(started)]
        for name, step in steps:
            try:
                await asyncio.wait_for(step, STEP_TIMEOUT)
            except TimeoutError:
                hung.append(name)
        await fleet.stop()
        nginx.stop()
        if hung:
            report = f"the deployment's cleanup hung: {hung}; the gateways logged: {fleet.logs('WARNING', 'ERROR')}"
            if sys.exc_info()[1] is None:
                raise AssertionError(report)
            print(report, file=sys.stderr)  # (the test's own failure goes on; this shows with it)
