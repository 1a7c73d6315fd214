"""Where a webhook may post: http(s) URLs whose host resolves only to public addresses.

Private, loopback, link-local and other non-global addresses are refused
unless ``--webhook-allow-networks`` lists them.  The check runs when a webhook
is created or its URL changed (a clear 400), and again on every attempt after
DNS, inside the HTTP client's resolver, on the very addresses it connects to:
a name that resolved to a public address at create and to 127.0.0.1 later is
refused then.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from tornado.netutil import DefaultLoopResolver, Resolver

from gateway.errors import Invalid

MAX_URL = 2048


class DestinationRefused(Exception):
    """The webhook's host is not one it may reach (or does not resolve)."""


class Destinations:
    """The rule: public addresses, plus the networks an operator allows (``'all'`` for any)."""

    def __init__(self, allow: str = "") -> None:
        items = [item.strip() for item in allow.split(",") if item.strip()]
        self.allow_all = "all" in items
        try:
            self.allowed = [ipaddress.ip_network(item, strict=False) for item in items if item != "all"]
        except ValueError as exc:
            raise ValueError(f"--webhook-allow-networks must list networks such as 10.0.0.0/8, or 'all': {exc}") from None

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_all or any(ip in network for network in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port, or :class:`Invalid` saying what is wrong with it."""
        if len(url) > MAX_URL:
            raise Invalid("invalid_url", f"Field 'url' must be at most {MAX_URL} characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Invalid("invalid_url", "Field 'url' is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid("invalid_url", "Field 'url' must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise Invalid("invalid_url", "Field 'url' must not carry credentials: verify the signature instead")
        if any(c.isspace() or ord(c) < 32 for c in url):
            raise Invalid("invalid_url", "Field 'url' must not contain spaces or control characters")
        return parts.hostname, port or (443 if parts.scheme == "https" else 80)

    async def check(self, url: str, resolver: GuardedResolver) -> None:
        """:meth:`check_url`, then resolve the host with ``resolver`` (one over these destinations):
        :class:`Invalid` unless it reaches a permitted address."""
        host, port = self.check_url(url)
        try:
            await resolver.resolve(host, port)
        except DestinationRefused as exc:
            raise Invalid("forbidden_destination", str(exc)) from None


class GuardedResolver(Resolver):
    """A resolver that returns only the addresses :class:`Destinations` permits, and refuses a host with none."""

    def initialize(self, destinations: Destinations) -> None:  # type: ignore[override]
        self.destinations = destinations
        self.inner = DefaultLoopResolver()

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> list[Any]:
        try:
            addresses = await self.inner.resolve(host, port, family)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name IDNA cannot encode
            raise DestinationRefused(f"Host {host!r} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None
        permitted = [(af, address) for af, address in addresses if self.destinations.permits(address[0])]
        if not permitted:
            raise DestinationRefused(
                f"Host {host!r} resolves to a private, loopback or link-local address; webhooks may only reach "
                "public addresses (an operator can allow networks with --webhook-allow-networks)")
        return permitted

    def close(self) -> None:
        self.inner.close()
