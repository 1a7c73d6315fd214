"""The SMTP server reads MAIL FROM and RCPT TO addresses as aiosmtpd does (the gateway's server
replaces aiosmtpd's address reader with a cheaper one that must give the same answers)."""

from __future__ import annotations

from typing import Any, Callable

import smtplib

import pytest
from aiosmtpd.smtp import SMTP

from gateway.mail.smtp_in import GatewaySMTP, InboundHandler
from tests.peers import in_thread

ARGS = ["", "<>", "<a@b.example>", "a@b.example", " <a@b.example> SIZE=100", "<a@b.example> BODY=8BITMIME",
        "<@relay.example:a@b.example>", "<\"quoted local\"@b.example>", "<a@[127.0.0.1]>", "<a@b.example",
        "a@", "@b.example", "<a b@c.example>", "garbage", "<" + "x" * 70 + "@b.example>", "<é@b.example>",
        "(comment) <a@b.example>", "<a..b@c.example>", "<a@b.example>x"]


def outcome(read: Callable[[str], Any], arg: str) -> Any:
    try:
        return read(arg)
    except Exception as exc:  # the email package's parser raises on some input ("a@"): the same
        return type(exc)


@pytest.mark.parametrize("arg", ARGS)
def test_addresses_read_as_aiosmtpd_reads_them(arg: str) -> None:
    ours = GatewaySMTP(InboundHandler(None, "localhost"))  # type: ignore[arg-type]
    theirs = SMTP(InboundHandler(None, "localhost"))  # type: ignore[arg-type]
    for server in (ours, theirs):
        server.local_part_limit = 64
    if arg == "a@":  # aiosmtpd's raises (a 500 and a traceback); ours reads it as malformed
        assert (outcome(ours._getaddr, arg), outcome(theirs._getaddr, arg)) == ((None, None), IndexError)
        return
    assert outcome(ours._getaddr, arg) == outcome(theirs._getaddr, arg)


@pytest.mark.gen_test(timeout=30)
async def test_an_address_the_parser_chokes_on_is_refused_cleanly(gateway: Any, caplog: Any) -> None:
    def converse() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            mail_code = smtp.docmd("MAIL FROM:a@")[0]
            smtp.docmd("MAIL FROM:<x@example.org>")
            return mail_code, smtp.docmd("RCPT TO:a@")[0]
    mail_code, rcpt_code = await in_thread(converse)
    assert (mail_code, rcpt_code) == (553, 553)
    assert "Traceback" not in caplog.text
