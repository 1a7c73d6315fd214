"""Webhooks against the socket, in one run: mail arrives over SMTP at a steady rate, and we time how long
each message takes from the start of its SMTP transaction (MAIL FROM) to (a) its ``receipt`` event on a subscribed websocket and (b) the
signed POST of the same event at a webhook receiver.  Prints both latency distributions, their ratio, the
rate achieved, and the gateway's CPU per message, with and without the webhook (two gateways, one after the
other, in the same run).

    python bench/webhooks.py --messages 1000 --rate 100

The gateway runs as its own process (``gateway serve``, SQLite); the receiver (tornado) and the SockJS
client run in this process and verify nothing but the arrival (the tests check signatures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tornado.httpserver
import tornado.web
import tornado.websocket

from gateway_process import GatewayProcess, free_port, percentile

PASSWORD = "correct horse battery"


def call(base: str, method: str, path: str, body: object, token: str | None = None) -> dict:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


async def run(messages: int, rate: float, webhook: bool = True) -> float:
    arrived_hook: dict[str, float] = {}
    arrived_socket: dict[str, float] = {}
    sent: dict[str, float] = {}
    done = asyncio.Event()

    class Receiver(tornado.web.RequestHandler):
        def post(self) -> None:
            name = json.loads(self.request.body)["data"]["name"]
            arrived_hook[name] = time.monotonic()
            if complete():
                done.set()

    def complete() -> bool:
        return (len(arrived_hook) == messages or not webhook) and len(arrived_socket) == messages

    hook_port = free_port()
    receiver = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/hook", Receiver)]))
    receiver.listen(hook_port, "127.0.0.1")

    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    http_port, smtp_port = free_port(), free_port()
    gateway = GatewayProcess(work, {"GATEWAY_PORT": str(http_port), "GATEWAY_SMTP": f"127.0.0.1:{smtp_port}",
                                    "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
                                    "GATEWAY_EVENT_HISTORY": str(messages * 2)})
    base = f"http://127.0.0.1:{http_port}"

    def up() -> bool | None:
        try:
            urllib.request.urlopen(base + "/health/ready", timeout=1)
            return True
        except OSError:
            return None

    await asyncio.get_running_loop().run_in_executor(None, gateway.wait_for, up, 30)
    try:
        call(base, "POST", "/accounts", {"username": "alice", "password": PASSWORD})
        token = call(base, "POST", "/tokens", {"username": "alice", "password": PASSWORD})["token"]["value"]
        if webhook:
            call(base, "POST", "/webhooks", {"url": f"http://127.0.0.1:{hook_port}/hook", "events": ["receipt"]}, token)
        socket = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{http_port}/ws/0/bench/websocket")
        assert await socket.read_message() == "o"
        await socket.write_message(json.dumps([json.dumps({"type": "subscribe", "token": token})]))

        async def read_socket() -> None:
            while True:
                frame = await socket.read_message()
                if frame is None:
                    return
                if isinstance(frame, str) and frame.startswith("a"):
                    for item in json.loads(frame[1:]):
                        message = json.loads(item)
                        if message.get("type") == "receipt":
                            arrived_socket[message["name"]] = time.monotonic()
                            if complete():
                                done.set()

        reader = asyncio.ensure_future(read_socket())
        cpu_before = sum(gateway.cpu_seconds())
        started = time.monotonic()
        pool = ThreadPoolExecutor(8)
        loop = asyncio.get_running_loop()

        def send(name: str) -> None:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
                # timed from the start of the mail transaction (the event can beat this thread to the 250)
                sent[name] = time.monotonic()
                smtp.sendmail("ann@example.org", ["alice@localhost"], f"Subject: {name}\r\n\r\nbody".encode())

        sends = []
        for i in range(messages):
            due = started + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sends.append(loop.run_in_executor(pool, send, f"m{i}"))
        await asyncio.gather(*sends)
        offered_for = time.monotonic() - started
        await asyncio.wait_for(done.wait(), 120)
        cpu = sum(gateway.cpu_seconds()) - cpu_before
        reader.cancel()
        socket.close()
    finally:
        gateway.stop()
        receiver.stop()

    sock = sorted((arrived_socket[n] - sent[n]) * 1000 for n in sent)
    print(f"{'with' if webhook else 'without'} a webhook: {messages} messages offered at {rate:.0f}/s, sent in "
          f"{offered_for:.1f} s ({messages / offered_for:.0f}/s achieved); gateway CPU {cpu * 1e6 / messages:.0f} us "
          "per message")
    if not webhook:
        print(f"socket event  p50 {percentile(sock, 0.5):7.1f} ms   p99 {percentile(sock, 0.99):7.1f} ms")
        return cpu / messages
    hook = sorted((arrived_hook[n] - sent[n]) * 1000 for n in sent)
    for label, values in (("socket event", sock), ("webhook POST", hook)):
        print(f"{label:13} p50 {percentile(values, 0.5):7.1f} ms   p99 {percentile(values, 0.99):7.1f} ms   "
              f"max {values[-1]:7.1f} ms")
    print(f"webhook / socket: p50 {percentile(hook, 0.5) / percentile(sock, 0.5):.2f}x, "
          f"p99 {percentile(hook, 0.99) / percentile(sock, 0.99):.2f}x")
    return cpu / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="SMTP messages offered per second")
    args = parser.parse_args()
    without = asyncio.run(run(args.messages, args.rate, webhook=False))
    with_hook = asyncio.run(run(args.messages, args.rate, webhook=True))
    print(f"a webhook adds {(with_hook - without) * 1e6:.0f} us of gateway CPU per event "
          f"({with_hook / without:.2f}x the run without one)")


if __name__ == "__main__":
    sys.exit(main())
