"""The SMTP server reads MAIL FROM and RCPT TO addresses as aiosmtpd does (the gateway's server
replaces aiosmtpd's address reader with a cheaper one that must give the same answers)."""

from __future__ import annotations

from typing import Any, Callable

import random
import smtplib

import pytest
from aiosmtpd.smtp import SMTP

from gateway.mail.smtp_in import GatewaySMTP, InboundHandler
from tests.peers import in_thread

ARGS = ["", "<>", "<a@b.example>", "a@b.example", " <a@b.example> SIZE=100", "<a@b.example> BODY=8BITMIME",
        "<@relay.example:a@b.example>", "<\"quoted local\"@b.example>", "<a@[127.0.0.1]>", "<a@b.example",
        "a@", "@b.example", "<a b@c.example>", "garbage", "<" + "x" * 70 + "@b.example>", "<é@b.example>",
        "(comment) <a@b.example>", "<a..b@c.example>", "<a@b.example>x",
        # the plain paths the gateway reads without the parser, and their near misses
        "<A.b+tag_1@Sub-1.Example>", "<a@b.example>  SIZE=1 BODY=8BITMIME", "<a@b.example>\tSIZE=1",
        "<a@b.example>(c) SIZE=1", "<a@b.example> (c) SIZE=1", "<a@b.example> ", "<a@b.example>\x0bx",
        "<a@b.example> \u3000x", "<.a@b.example>", "<a.@b.example>", "<a@b..example>", "<a@-b.example>",
        "<a@b.example>>", "<<a@b.example>", "<a@b>", "<a@b.example> \t (x) y"]


def fuzzed(count: int) -> list[str]:
    """Paths around random addresses, mostly plain ones, from a fixed seed (the same on every run)."""
    rng = random.Random(17)
    plain = ["a", "Z", "0", "x.y", ".", "-", "_", "+"]
    odd = ["@", "<", ">", " ", "\t", "(", ")", "\"", "é", "=", "\\", "[", ","]
    after = ["", "", " SIZE=10", " BODY=8BITMIME", "  SIZE=1", "\t", " ", "(c)", " (c) x", "x", ">", " \u3000"]

    def part(most: int) -> str:
        return "".join(rng.choice(plain if rng.random() < 0.93 else odd) for _ in range(rng.randint(1, most)))

    return [("" if rng.random() < 0.9 else rng.choice(odd)) + f"<{part(6)}@{part(6)}>" + rng.choice(after)
            for _ in range(count)]


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


def test_random_paths_read_as_aiosmtpd_reads_them() -> None:
    ours = GatewaySMTP(InboundHandler(None, "localhost"))  # type: ignore[arg-type]
    theirs = SMTP(InboundHandler(None, "localhost"))  # type: ignore[arg-type]
    for server in (ours, theirs):
        server.local_part_limit = 64
    differ = [(arg, outcome(ours._getaddr, arg), outcome(theirs._getaddr, arg)) for arg in fuzzed(3000)]
    differ = [d for d in differ if d[1] != d[2] and d[2] is not IndexError]  # "a@"-like: ours refuses, theirs raise
    assert differ == []


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
