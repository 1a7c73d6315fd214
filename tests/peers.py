"""Protocol peers the tests play: an SMTP relay (aiosmtpd) that records what it accepts, an SMTP sender,
and free loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on (free when this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: ``gateway serve`` as a process of its own.
SERVE = [sys.executable, "-m", "gateway", "serve"]


def serve_env(**env: str) -> dict[str, str]:
    """The environment for :data:`SERVE`: free ports, cheap password hashing, then ``env``."""
    return {**os.environ, "GATEWAY_PORT": "0", "GATEWAY_SMTP": "127.0.0.1:0", "GATEWAY_ARGON2_MEMORY": "1024", **env}


def listening_at(log_line: str) -> str | None:
    """The base URL a gateway's log line says it serves HTTP on, if it is that line."""
    if "HTTP API on http://" not in log_line:
        return None
    return log_line.split("HTTP API on ")[1].split()[0].rstrip("/")


class Served:
    """``gateway serve`` in folder ``cwd`` as a blocking process (for tests without a loop), on free
    ports, with ``env`` on top of :func:`serve_env`; ``lines`` is its log, read as it comes (so a full
    pipe never stalls it), ``base`` the URL it serves.  ``message`` gives a log line's text (for
    ``--log-format json``)."""

    def __init__(self, cwd: Any, env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
                 message: Callable[[str], str] = lambda line: line) -> None:
        self.process = subprocess.Popen(SERVE, cwd=cwd, env=serve_env(**(env or {})), stderr=subprocess.PIPE,
                                        text=True, preexec_fn=preexec_fn)
        assert self.process.stderr is not None
        self.lines: list[str] = []
        self.base = ""
        for line in self.process.stderr:  # the log line that says where it listens
            self.lines.append(line)
            self.base = listening_at(message(line)) or ""
            if self.base:
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(self.lines))
        stderr = self.process.stderr
        self.reader = threading.Thread(target=lambda: self.lines.extend(stderr), daemon=True)
        self.reader.start()

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> Any:
        """A JSON API call; its parsed answer."""
        request = urllib.request.Request(self.base + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def stop(self) -> int:
        """SIGTERM, and its exit status once every line of its log is read."""
        self.process.terminate()
        status = self.process.wait(30)
        self.reader.join(10)
        return status


def smtp_send(port: int, sender: str, recipients: list[str], data: bytes | str) -> dict:
    """Send one message with smtplib (blocking: run it with :func:`in_thread`); the refused recipients."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        return smtp.sendmail(sender, recipients, data)


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


class Relay:
    """An SMTP relay played by aiosmtpd: records what it accepts; ``refuse`` scripts its answers to RCPT."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: list[str] = []  # answers to give to the next RCPTs instead of 250

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


class GatewayProcess:
    """``gateway serve`` in a process of its own, on free ports."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = serve_env(**env)
        self.base = ""
        self.smtp_port = 0
        self.log: list[str] = []  # the last lines of its log (for a failing test to show)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(*SERVE, env=self.env, stderr=asyncio.subprocess.PIPE)
        assert self.process.stderr is not None
        while not self.base:  # the log lines that say where it listens
            line = (await asyncio.wait_for(self.process.stderr.readline(), 60)).decode()
            assert line, "the gateway process exited"
            if "SMTP for @" in line:
                self.smtp_port = int(line.rsplit(":", 1)[1])
            self.base = listening_at(line) or ""
        self.drain = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Read the log as it comes (a full pipe would stall the gateway), keeping its last lines."""
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.log.append(line.decode(errors="replace"))
            del self.log[:-500]

    async def stop(self) -> None:
        self.process.terminate()
        await asyncio.wait_for(self.process.wait(), 30)
        await self.drain

    async def kill(self) -> None:
        """SIGKILL: the process dies with no chance to drain."""
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), 30)
        await self.drain


async def mail(port: int, to: str, subject: str) -> None:
    """Mail ``to`` a short message with ``subject`` over SMTP (the 250 comes once it is stored)."""
    await in_thread(smtp_send, port, "x@example.org", [to], f"Subject: {subject}\r\n\r\nbody")
