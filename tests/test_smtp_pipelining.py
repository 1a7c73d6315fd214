"""Inbound SMTP takes pipelined commands (RFC 2920, as Postfix sends them): it says so in its EHLO
reply and answers every command of a group, in order, as if each had been sent on its own."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiosmtpd.smtp
import pytest

from tests.conftest import api_for


async def replies(reader: asyncio.StreamReader, count: int) -> list[str]:
    """The next ``count`` replies, each as its code and last line's text (multi-line replies joined)."""
    got: list[str] = []
    lines: list[str] = []
    while len(got) < count:
        line = (await asyncio.wait_for(reader.readline(), 10)).decode().rstrip("\r\n")
        assert line, f"connection closed after {got}"
        lines.append(line)
        if line[3:4] != "-":
            got.append(" | ".join(lines))
            lines = []
    return got


@pytest.mark.gen_test(timeout=30)
async def test_pipelined_commands_are_answered_in_order(gateway: Any) -> None:
    api = api_for(gateway)
    _, token = await api.register("alice")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.smtp_port)
    try:
        assert (await replies(reader, 1))[0].startswith("220")
        writer.write(b"EHLO client.example\r\n")
        ehlo = (await replies(reader, 1))[0].split(" | ")
        assert "250-PIPELINING" in ehlo and ehlo[-1] == "250 HELP"
        # a group ends with DATA; the body waits for its 354
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\nRCPT TO:<nobody@localhost>\r\n"
                     b"DATA\r\n")
        assert [r[:3] for r in await replies(reader, 4)] == ["250", "250", "550", "354"]
        # the body's end, the next transaction (no recipient this time) and QUIT in one write
        writer.write(b"Subject: pipelined\r\n\r\nhello\r\n.\r\nMAIL FROM:<ann@example.org>\r\n"
                     b"RCPT TO:<nobody@localhost>\r\nDATA\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        assert [r[:3] for r in await replies(reader, 7)] == ["250", "250", "550", "503", "250", "250", "221"]
        assert await reader.read() == b""
    finally:
        writer.close()
    emails = (await api.get("/emails", token=token)).json
    assert [e["subject"] for e in emails["emails"]] == ["pipelined"]


@pytest.mark.gen_test(timeout=30)
async def test_command_lines_are_sanitized_only_for_a_logger_that_takes_them(gateway: Any, caplog: Any,
                                                                             monkeypatch: Any) -> None:
    """aiosmtpd masks an AUTH line's credentials before it logs a command line: still so when its logger
    takes the line (INFO), and not done at all when the logger would turn it away (the default)."""
    sanitized: list[bytes] = []
    stock = aiosmtpd.smtp.sanitize
    monkeypatch.setattr(aiosmtpd.smtp, "sanitize", lambda text: sanitized.append(text) or stock(text))
    for level in (logging.WARNING, logging.INFO):
        caplog.set_level(level, logger="mail.log")
        caplog.clear()
        sanitized.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.smtp_port)
        try:
            assert (await replies(reader, 1))[0].startswith("220")
            writer.write(b"EHLO client.example\r\nAUTH PLAIN c2VjcmV0\r\nNOOP\r\nQUIT\r\n")
            assert [r[:3] for r in await replies(reader, 4)][2:] == ["250", "221"]
        finally:
            writer.close()
        logged = [r.getMessage() for r in caplog.records if r.name == "mail.log"]
        if level == logging.WARNING:
            assert sanitized == [] and not any(">>" in line for line in logged)
        else:
            assert sanitized and any("AUTH PLAIN ********" in line for line in logged), logged
            assert not any("c2VjcmV0" in line for line in logged)
