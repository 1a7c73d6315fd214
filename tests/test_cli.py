"""The command line: every option documented with its environment variable; ``serve`` on a fresh folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from gateway.config import OPTIONS
from tests.peers import Served, free_port


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, **kw)


def test_serve_help_documents_every_option_and_variable() -> None:
    out = run("serve", "--help").stdout
    for f in OPTIONS:
        assert "--" + f.name.replace("_", "-") in out, f.name
        assert f.metadata["env"] in out, f.name


def test_gateway_console_script_is_python_m_gateway() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "gateway")
    assert subprocess.run([script, "--version"], capture_output=True, text=True).stdout == run("--version").stdout


def test_bad_option_values_are_refused() -> None:
    result = run("serve", "--port", "http")
    assert result.returncode == 2 and "GATEWAY_PORT: expected int" in result.stderr
    result = run("serve", env={**os.environ, "GATEWAY_PORT": "x"})
    assert result.returncode == 2 and "GATEWAY_PORT" in result.stderr
    for args, message in [(["--smtp", "nowhere"], "GATEWAY_SMTP"), (["--relay", "http://x"], "relay URL"),
                          (["--store", "mongodb://x"], "unknown store URL"),
                          (["--log-level", "loud"], "GATEWAY_LOG_LEVEL"),
                          (["--ws-sockjs-url", 'https://x/s.js"><script>'], "GATEWAY_WS_SOCKJS_URL"),
                          (["--ws-sockjs-url", "javascript:alert(1)"], "GATEWAY_WS_SOCKJS_URL"),
                          (["--webhook-allow-networks", "10.0.0.0/99"], "--webhook-allow-networks must list"),
                          (["--webhook-timeout", "0"], "GATEWAY_WEBHOOK_TIMEOUT")]:
        result = run("serve", *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, args


def test_serve_on_a_fresh_folder_keeps_data_and_tokens_across_restarts(tmp_path: Any) -> None:
    first = Served(tmp_path)
    try:
        assert first.base.startswith("http://127.0.0.1:")
        first.call("POST", "/accounts", {"username": "alice", "password": "correct horse"})
        token = first.call("POST", "/tokens", {"username": "alice", "password": "correct horse"})["token"]["value"]
    finally:
        first.stop()
    assert first.process.returncode == 0
    assert sorted(p for p in os.listdir(tmp_path) if not p.endswith(("-wal", "-shm"))) == ["gateway.db", "gateway.secret"]
    assert os.stat(tmp_path / "gateway.secret").st_mode & 0o077 == 0
    second = Served(tmp_path)
    try:
        assert second.call("GET", "/accounts/me", token=token)["account"]["username"] == "alice"
    finally:
        second.stop()


def test_a_busy_port_is_a_clear_error(tmp_path: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--port", str(port), "--smtp", "127.0.0.1:0", cwd=str(tmp_path))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path: Any) -> None:
    result = run("serve", "--store", f"sqlite:{tmp_path}/no/such/folder/x.db", "--port", "0", "--smtp", "127.0.0.1:0",
                 cwd=str(tmp_path))
    assert result.returncode == 1
    assert "cannot open the store: sqlite" in result.stderr and "Traceback" not in result.stderr
    port = free_port()  # nothing listens there
    result = run("serve", "--store", f"rethinkdb://127.0.0.1:{port}/x", "--port", "0", "--smtp", "127.0.0.1:0",
                 cwd=str(tmp_path), env={**os.environ, "GATEWAY_STORE_WAIT": "0.6"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the store is not reachable yet" in result.stderr  # it waited for it first
    assert f"cannot open the store: rethinkdb 127.0.0.1:{port}" in result.stderr.splitlines()[-1]


def test_default_config_is_localhost_5000_and_sqlite_in_cwd() -> None:
    from gateway.app.assembly import secret_file
    from gateway.config import Config

    config = Config.from_env({})
    assert (config.host, config.port, config.store) == ("127.0.0.1", 5000, "sqlite:gateway.db")
    assert secret_file(config) == os.path.abspath("gateway.secret")


def test_the_text_log_line_is_the_standard_formatters() -> None:
    """The serve log's formatter makes the time's text once a second: every line is still what
    ``logging.Formatter`` makes of the record (same second, next second, a datefmt)."""
    import logging

    from gateway.app.cli import TEXT_FORMAT, TextFormatter

    ours, standard = TextFormatter(TEXT_FORMAT), logging.Formatter(TEXT_FORMAT)
    record = logging.LogRecord("gateway.smtp", logging.INFO, __file__, 1, "accepted a %d-byte message", (312,), None)
    for created in (1764500000.001, 1764500000.999, 1764500001.5, 1764499999.25, 1764500001.5):
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
        assert ours.formatTime(record, "%H:%M") == standard.formatTime(record, "%H:%M")
