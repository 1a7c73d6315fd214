"""Websocket frames as a client writes them (RFC 6455: masked), for the benchmarks' own lean clients.

Imported as a sibling module (the scripts run as ``python bench/NAME.py``).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any


def xor(data: bytes, mask: bytes) -> bytes:
    """``data`` masked (or unmasked) with the 4-byte ``mask``."""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame of ``opcode`` carrying ``payload``, masked with a fresh key."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + xor(payload, mask)


def sockjs_frame(message: dict[str, Any]) -> bytes:
    """A text frame carrying one SockJS message (a JSON array of one JSON string), as a client sends it."""
    return client_frame(0x1, json.dumps([json.dumps(message)]).encode())


class FrameSender:
    """A bench client's sending side: SockJS messages and raw frames, each written by the client's own
    :meth:`_write` (which drops them once its connection is closing)."""

    def _write(self, frame: bytes) -> None:
        raise NotImplementedError

    def send_json(self, message: dict[str, Any]) -> None:
        """One SockJS message, as a client's text frame."""
        self._write(sockjs_frame(message))

    def write_frame(self, opcode: int, payload: bytes) -> None:
        """One frame of ``opcode`` (a pong, a close, engine.io's packets)."""
        self._write(client_frame(opcode, payload))
