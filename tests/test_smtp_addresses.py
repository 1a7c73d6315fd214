"""The SMTP server reads MAIL FROM and RCPT TO addresses as aiosmtpd does (the gateway's server
replaces aiosmtpd's address reader with a cheaper one that must give the same answers)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from aiosmtpd.smtp import SMTP

from gateway.mail.smtp_in import GatewaySMTP, InboundHandler

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
    assert outcome(ours._getaddr, arg) == outcome(theirs._getaddr, arg)
