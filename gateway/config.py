"""Server configuration: one dataclass whose fields are the CLI options.

Each field carries its help text and environment variable, so ``gateway serve
--help``, the environment and the code can never disagree.  The CLI builds its
parser from :data:`OPTIONS`; tests build a :class:`Config` directly.  It
imports nothing of the project's, so every layer may read it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any


def option(default: Any, help: str, env: str, metavar: str | None = None) -> Any:
    """A config field with its CLI help and environment variable."""
    return field(default=default, metadata={"help": help, "env": env, "metavar": metavar})


#: Webhook POSTs in flight at once to one webhook (of ``--webhook-concurrency`` in all).
WEBHOOK_CONCURRENCY_EACH = 4

#: The sockjs-client the iframe transports load by default.  sockjs-client refuses an iframe
#: whose script is not its own exact version, and sockjs-tornado's default is 0.3.
DEFAULT_SOCKJS_URL = "https://cdn.jsdelivr.net/npm/sockjs-client@1.6.1/dist/sockjs.min.js"


@dataclass
class Config:
    """Everything a gateway process is configured with."""

    host: str = option("127.0.0.1", "address to serve HTTP and SockJS on", "GATEWAY_HOST")
    port: int = option(5000, "HTTP port (0 picks a free one)", "GATEWAY_PORT")
    store: str = option(
        "sqlite:gateway.db",
        "storage: sqlite:PATH (embedded, the default) or "
        "rethinkdb://HOST:PORT[,HOST:PORT...]/DB[?replicas=N][&timeout=S] "
        "(a cluster's nodes, the preferred first; S: seconds a query may go unanswered, 30)",
        "GATEWAY_STORE",
        "URL",
    )
    secret_file: str = option(
        "",
        "file holding the token signing secret, created on first start "
        "(default: beside the SQLite file, or ./gateway.secret)",
        "GATEWAY_SECRET_FILE",
        "PATH",
    )
    smtp: str = option(
        "127.0.0.1:2525", "inbound SMTP listener as HOST:PORT (port 0 picks a free one), or 'off'", "GATEWAY_SMTP",
        "HOST:PORT"
    )
    smtp_max_size: int = option(
        10 << 20, "largest inbound message, in bytes (larger ones get 552)", "GATEWAY_SMTP_MAX_SIZE", "BYTES"
    )
    relay: str = option(
        "", "SMTP relay for external mail: smtp://[USER:PASS@]HOST:PORT, smtp+starttls://... or smtps://... "
        "(none: external mail fails with a clear reason)", "GATEWAY_RELAY", "URL"
    )
    delivery_attempts: int = option(8, "delivery attempts before an email is marked failed", "GATEWAY_DELIVERY_ATTEMPTS", "N")
    delivery_backoff: float = option(
        30.0, "seconds before the first retry; each further retry waits twice as long", "GATEWAY_DELIVERY_BACKOFF",
        "SECONDS"
    )
    delivery_lease: float = option(
        300.0, "with a shared store: seconds after which another process may take over an unfinished delivery "
        "or webhook POST",
        "GATEWAY_DELIVERY_LEASE", "SECONDS"
    )
    webhook_timeout: float = option(
        10.0, "seconds a webhook receiver has to answer a POST (then the attempt failed)", "GATEWAY_WEBHOOK_TIMEOUT",
        "SECONDS"
    )
    webhook_backoff: float = option(
        60.0, "seconds before a failed webhook POST is retried; each further retry waits twice as long",
        "GATEWAY_WEBHOOK_BACKOFF", "SECONDS"
    )
    webhook_attempts: int = option(
        11, "webhook POSTs of one event before it is given up (11 with the 60 s backoff: about 17 hours)",
        "GATEWAY_WEBHOOK_ATTEMPTS", "N"
    )
    webhook_disable_after: int = option(
        50, "consecutive failed POSTs after which a webhook is disabled (its record says why)",
        "GATEWAY_WEBHOOK_DISABLE_AFTER", "N"
    )
    webhook_concurrency: int = option(
        32, f"webhook POSTs in flight at once per process (at most {WEBHOOK_CONCURRENCY_EACH} per webhook)",
        "GATEWAY_WEBHOOK_CONCURRENCY", "N"
    )
    webhook_allow_networks: str = option(
        "", "comma-separated networks webhooks may reach although private, loopback or link-local "
        "(e.g. 10.0.0.0/8,127.0.0.1/32), or 'all'; by default only public addresses", "GATEWAY_WEBHOOK_ALLOW_NETWORKS",
        "CIDRS"
    )
    mail_domain: str = option("localhost", "domain of account addresses (user@DOMAIN)", "GATEWAY_MAIL_DOMAIN")
    token_ttl: int = option(86400, "lifetime of issued tokens, in seconds", "GATEWAY_TOKEN_TTL", "SECONDS")
    argon2_memory: int = option(
        65536, "Argon2id memory cost per password hash, in KiB", "GATEWAY_ARGON2_MEMORY", "KIB"
    )
    max_body: int = option(1 << 20, "largest accepted request body, in bytes", "GATEWAY_MAX_BODY", "BYTES")
    max_connections: int = option(
        10000, "HTTP connections open at once (more are closed at once); keep it under the open-file limit",
        "GATEWAY_MAX_CONNECTIONS", "N"
    )
    header_timeout: float = option(
        10.0, "seconds a client has to send a request's headers (also how long an idle keep-alive connection "
        "stays open)", "GATEWAY_HEADER_TIMEOUT", "SECONDS"
    )
    body_timeout: float = option(60.0, "seconds a client has to send a request's body", "GATEWAY_BODY_TIMEOUT",
                                 "SECONDS")
    ws_max_message: int = option(
        2 << 20, "largest accepted SockJS message, in bytes (room for a --max-body request, JSON-escaped)",
        "GATEWAY_WS_MAX_MESSAGE", "BYTES"
    )
    ws_max_inflight: int = option(
        32, "tunneled requests in flight per SockJS session; more are answered 429", "GATEWAY_WS_MAX_INFLIGHT", "N"
    )
    ws_max_queue: int = option(
        1 << 20, "bytes a session's client may fall behind before the session is closed (it can resume by cursor)",
        "GATEWAY_WS_MAX_QUEUE", "BYTES"
    )
    drain: float = option(
        10.0, "seconds a stopping gateway (SIGTERM) gives in-flight requests, SMTP messages and deliveries to "
        "finish", "GATEWAY_DRAIN", "SECONDS"
    )
    store_wait: float = option(
        30.0,
        "seconds to wait at start for a shared store (RethinkDB) that is not reachable yet",
        "GATEWAY_STORE_WAIT",
        "SECONDS",
    )
    event_history: int = option(
        100_000, "events kept for subscribers resuming with since=<cursor>", "GATEWAY_EVENT_HISTORY", "N"
    )
    ws_heartbeat: float = option(25.0, "seconds between SockJS heartbeats", "GATEWAY_WS_HEARTBEAT", "SECONDS")
    ws_disconnect_delay: float = option(
        5.0,
        "seconds a polling SockJS session survives without a connected transport",
        "GATEWAY_WS_DISCONNECT_DELAY",
        "SECONDS",
    )
    ws_sockjs_url: str = option(
        DEFAULT_SOCKJS_URL,
        "sockjs-client script the iframe transports load: the exact version your pages use",
        "GATEWAY_WS_SOCKJS_URL",
        "URL",
    )
    metrics: str = option(
        "", "where /metrics (Prometheus) is served: empty for the HTTP listener, HOST:PORT for a listener of its "
        "own, or 'off'", "GATEWAY_METRICS", "HOST:PORT"
    )
    cors_origins: str = option(
        "*", "origins whose pages may call the API and /ws from a browser: '*' (any: auth is a bearer token, "
        "never a cookie) or a comma-separated list such as https://mail.example.com", "GATEWAY_CORS_ORIGINS", "ORIGINS"
    )
    trusted_proxies: str = option(
        "", "comma-separated addresses of the proxies in front (nginx, HAProxy): from them, X-Forwarded-For names "
        "the client a SockJS session is bound to", "GATEWAY_TRUSTED_PROXIES", "ADDRESSES"
    )
    log_format: str = option("text", "log lines as text, or json (one object per line, with the access "
                             "log's route, status, duration, account and request id)", "GATEWAY_LOG_FORMAT", "FORMAT")
    log_level: str = option("info", "log level: debug, info, warning, error", "GATEWAY_LOG_LEVEL", "LEVEL")
    loop: str = option("auto", "event loop: uvloop, asyncio, or auto (uvloop when it is installed, as it is "
                       "with the package on Linux; see docs/benchmarks.md)", "GATEWAY_LOOP", "LOOP")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Config":
        """A config from environment variables, then explicit overrides."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = parse_value(f, raw)
        values.update(overrides)
        return cls(**values)

    @functools.cached_property
    def allowed_origins(self) -> frozenset[str] | None:
        """The origins of ``--cors-origins`` (scheme://host[:port], lowercased), or None for any
        (parsed once: every API response reads it)."""
        if self.cors_origins.strip() == "*":
            return None
        return frozenset(self.normal_origin(o) for o in self.cors_origins.split(",") if o.strip())

    def origin_allowed(self, origin: str) -> bool:
        """Whether a page of ``origin`` (an ``Origin`` header) may call the API (``--cors-origins``)."""
        allowed = self.allowed_origins
        return allowed is None or self.normal_origin(origin) in allowed

    @staticmethod
    def normal_origin(origin: str) -> str:
        """An origin as ``--cors-origins`` lists are compared: lowercased, no trailing slash."""
        return origin.strip().lower().rstrip("/")

    def trusted_proxy_set(self) -> frozenset[str]:
        """The addresses of ``--trusted-proxies``."""
        return frozenset(a.strip() for a in self.trusted_proxies.split(",") if a.strip())

    def metrics_address(self) -> tuple[str, int] | None:
        """The separate /metrics listener, or None (served on the HTTP listener, or off)."""
        if self.metrics in ("", "off"):
            return None
        host, _, port = self.metrics.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"GATEWAY_METRICS: expected HOST:PORT, off, or nothing, got {self.metrics!r}")
        return host, int(port)

    def smtp_address(self) -> tuple[str, int] | None:
        """Where to listen for SMTP, or None when it is off."""
        if self.smtp.lower() == "off":
            return None
        host, _, port = self.smtp.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"GATEWAY_SMTP: expected HOST:PORT or off, got {self.smtp!r}")
        return host, int(port)


OPTIONS = dataclasses.fields(Config)


def parse_value(f: dataclasses.Field, raw: str) -> Any:
    """Convert an environment or CLI string to the field's type."""
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}[f.type]
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{f.metadata['env']}: expected {kind.__name__}, got {raw!r}") from None
