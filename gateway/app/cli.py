"""The ``gateway`` command line: ``gateway serve`` and its options."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from typing import Any
import sys
import time
from urllib.parse import urlsplit

from gateway import __version__
from gateway.config import OPTIONS, Config, parse_value
from gateway.mail.relay import Relay
from gateway.webhooks.destinations import Destinations
from gateway.store import store_from_url


LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Email API gateway: HTTP JSON API plus a SockJS endpoint at /ws with live events.",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the HTTP API and SockJS endpoint. Every option can also be set "
        "by the environment variable named in its help; the command line wins.",
    )
    conformance = commands.add_parser(
        "conformance",
        help="serve the SockJS protocol suite's endpoints",
        description="Serve /echo, /close, /disabled_websocket_echo and /cookie_needed_echo for the public "
        "sockjs-protocol suite, built from the same SockJS layer and settings as /ws (see docs/protocol.md).",
    )
    conformance.add_argument("--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]")
    conformance.add_argument("--port", type=int, default=8081, help="port [default: 8081, the suite's default]")
    for f in OPTIONS:
        flag = "--" + f.name.replace("_", "-")
        serve.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=f.metadata["metavar"] or f.name.split("_")[-1].upper(),
            help=f"{f.metadata['help']} [env {f.metadata['env']}; default: {f.default!r}]",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Environment first, then the command line on top."""
    overrides = {}
    for f in OPTIONS:
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = parse_value(f, value)
    return Config.from_env(**overrides)


def check(config: Config) -> None:
    """Raise ValueError for option values that cannot work, before anything starts."""
    if config.log_format not in ("text", "json"):
        raise ValueError(f"GATEWAY_LOG_FORMAT: expected text or json, got {config.log_format!r}")
    if config.log_level.lower() not in LOG_LEVELS:
        raise ValueError(f"GATEWAY_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    if config.loop not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"GATEWAY_LOOP: expected auto, asyncio or uvloop, got {config.loop!r}")
    if config.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("GATEWAY_LOOP: uvloop is not installed (pip install uvloop)")
    config.smtp_address()
    config.metrics_address()
    for name in ("header_timeout", "body_timeout", "max_connections", "ws_max_inflight", "max_body",
                 "webhook_timeout", "webhook_backoff", "webhook_attempts", "webhook_disable_after",
                 "webhook_concurrency"):
        if getattr(config, name) <= 0:
            raise ValueError(f"GATEWAY_{name.upper()}: must be greater than 0, got {getattr(config, name)!r}")
    Relay.from_url(config.relay)
    Destinations(config.webhook_allow_networks)
    store_from_url(config.store)
    check_script_url(config.ws_sockjs_url)


def check_script_url(url: str) -> None:
    """``--ws-sockjs-url`` goes into the iframe page's ``<script src="...">``: an http(s) URL or
    an absolute path, with nothing that could end the attribute."""
    scheme = urlsplit(url).scheme
    if not (scheme in ("http", "https") or url.startswith("/")) or any(c in url for c in '"<>\'\\ \t\r\n'):
        raise ValueError(f"GATEWAY_WS_SOCKJS_URL: expected an http(s) URL or an absolute path, got {url!r}")


#: The text log's line: time, level, logger and message.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, with the time's text made once a second rather than for every line
    (``localtime`` and ``strftime`` were a fifth of an "accepted" line's cost); the same text."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        msec_format = self.default_msec_format
        return msec_format % (self._text, record.msecs) if msec_format else self._text


def cheap_records() -> None:
    """Make log records without what no line of ours prints (the logging HOWTO's "Optimization"):
    the caller's file and line (a walk up the stack for every record), thread, process and
    multiprocessing names.  Process-wide: for ``gateway serve``, which owns its logging."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger and message, plus the record's ``fields``
    (the access log's status, route, duration, account and request id)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "conformance":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from gateway.app.server import run_conformance

        return run_conformance(Config.from_env(host=args.host, port=args.port))
    if args.command != "serve":
        parser.print_help()
        return 2
    try:
        config = config_from_args(args)
        check(config)
    except ValueError as exc:
        parser.error(str(exc))
    level = LOG_LEVELS[config.log_level.lower()]
    cheap_records()
    logging.basicConfig(level=level, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter(TEXT_FORMAT))
    if level > logging.DEBUG:
        # aiosmtpd logs every SMTP command at INFO (a tenth of the loop's time under mail load);
        # the gateway logs each accepted message itself
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    from gateway.app.server import run

    return run(config)
