"""How long the gateway's event loop stalls while it files large messages: ``GET /health`` is asked
again and again while messages with a large attachment arrive over SMTP, and its slowest answers are
printed (each is at least as long as the longest stall it met).

A message is parsed with the standard library's ``email`` package at about 50 ms a megabyte; the
gateway parses one over 64 KiB on a worker thread, so the loop goes on serving meanwhile.  Run it
with two trees' code to compare them (``--source``)::

    python bench/large_mail.py
    python bench/large_mail.py --size 5000000 --messages 5 --source /path/to/other/tree
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import smtplib
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from gateway_process import REPO, GatewayProcess, free_port


def message(size: int, seq: int) -> bytes:
    """A message to alice@localhost with ``size`` random bytes attached (base64, as mail carries them)."""
    attached = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return (f"From: a@example.org\r\nTo: alice@localhost\r\nSubject: large {seq}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=large.bin\r\n\r\n").encode() + attached + b"--b--\r\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5_000_000, help="attachment bytes (default 5000000)")
    parser.add_argument("--messages", type=int, default=5, help="messages sent, one after another (default 5)")
    parser.add_argument("--source", type=Path, default=REPO, help="the tree whose gateway runs (default this one)")
    args = parser.parse_args()
    http_port, smtp_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as folder:
        gateway = GatewayProcess(Path(folder), {"GATEWAY_PORT": str(http_port), "GATEWAY_SMTP": f"127.0.0.1:{smtp_port}",
                                                "GATEWAY_SMTP_MAX_SIZE": str(2 * args.size + (1 << 20))},
                                 source=args.source)
        base = f"http://127.0.0.1:{http_port}"

        def health() -> bool | None:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5).read()
                return True
            except OSError:
                return None

        try:
            gateway.wait_for(health, 30)
            urllib.request.urlopen(urllib.request.Request(
                f"{base}/accounts", json.dumps({"username": "alice", "password": "correct horse battery"}).encode(),
                {"Content-Type": "application/json"}), timeout=30).read()
            messages = [message(args.size, seq) for seq in range(args.messages)]
            done, sent = threading.Event(), []

            def send() -> None:
                try:
                    for raw in messages:
                        started = time.monotonic()
                        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=120) as smtp:
                            smtp.sendmail("a@example.org", ["alice@localhost"], raw)
                        sent.append(time.monotonic() - started)
                finally:
                    done.set()

            threading.Thread(target=send, daemon=True).start()
            answers = []
            while not done.is_set():
                started = time.monotonic()
                urllib.request.urlopen(f"{base}/health", timeout=30).read()
                answers.append(time.monotonic() - started)
                time.sleep(0.005)
        finally:
            gateway.stop()
    if len(sent) != args.messages:
        raise SystemExit(f"only {len(sent)} of {args.messages} messages were accepted")
    answers.sort()
    print(f"{args.source}: {args.messages} messages with {args.size} bytes attached "
          f"({len(messages[0])} bytes each), {statistics.median(sent) * 1e3:.0f} ms each to send and file")
    print(f"  GET /health meanwhile: {len(answers)} answers, median {statistics.median(answers) * 1e3:.1f} ms, "
          f"slowest {', '.join(f'{a * 1e3:.0f}' for a in answers[-args.messages:])} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
