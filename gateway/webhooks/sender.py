"""One POST to a webhook's URL, bounded: a timeout, at most ``MAX_RESPONSE`` bytes of answer read, no
redirect followed, and only the addresses :class:`~gateway.webhooks.destinations.Destinations` permits."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from gateway.webhooks.destinations import DestinationRefused, Destinations, GuardedResolver

#: Bytes of a receiver's answer read at most; the rest is not read.
MAX_RESPONSE = 64 * 1024


class ResponseTooLarge(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    """What one POST came to: success (a 2xx), the status code (None without an answer), and why not."""

    ok: bool
    code: int | None
    duration_ms: float
    error: str | None


class Sender:
    """Posts webhook bodies; one HTTP client (with its guarded resolver) per process."""

    def __init__(self, destinations: Destinations, timeout: float, max_clients: int) -> None:
        self.timeout = timeout
        self.resolver = GuardedResolver(destinations=destinations)
        self.client = SimpleAsyncHTTPClient(force_instance=True, resolver=self.resolver, max_clients=max_clients,
                                            max_header_size=16 * 1024)

    def close(self) -> None:
        self.client.close()
        self.resolver.close()

    async def post(self, url: str, body: str, headers: dict[str, str]) -> Outcome:
        status: list[int] = []
        received = 0

        def header_line(line: str) -> None:
            if line.startswith("HTTP/") and not status:
                parts = line.split(" ", 2)
                if len(parts) > 1 and parts[1].isdigit():
                    status.append(int(parts[1]))

        def chunk(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if received > MAX_RESPONSE:
                raise ResponseTooLarge()

        request = HTTPRequest(url, method="POST", body=body.encode(), headers=headers, follow_redirects=False,
                              connect_timeout=self.timeout, request_timeout=self.timeout,
                              decompress_response=False, header_callback=header_line, streaming_callback=chunk)
        start = time.monotonic()
        try:
            response = await self.client.fetch(request, raise_error=False)
            code: int | None = response.code
            error = None if 200 <= response.code < 300 else f"HTTP {response.code}"
            if response.code == 599:  # tornado's code for "no answer": a reset or a malformed one
                code, error = None, str(response.error or "no answer")
        except ResponseTooLarge:
            code = status[0] if status else None
            error = None if code is not None and 200 <= code < 300 else f"HTTP {code}"
        except DestinationRefused as exc:
            code, error = None, str(exc)
        except HTTPClientError as exc:
            code, error = None, ("timed out" if exc.code == 599 and "imeout" in str(exc) else str(exc))
        except OSError as exc:
            code, error = None, f"connection failed: {exc.strerror or exc}"
        duration = (time.monotonic() - start) * 1000
        if code is not None and 300 <= code < 400:
            error = f"HTTP {code} (redirects are not followed)"
        return Outcome(error is None, code, duration, error)
