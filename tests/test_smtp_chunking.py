"""Inbound SMTP takes a message in chunks (RFC 3030's CHUNKING: ``BDAT <size> [LAST]``): the EHLO reply
offers it, the bytes are filed exactly as sent (no dot-stuffing, no end marker), and a chunk that is
refused is still read to its end, so what follows it in the pipeline is never taken for commands."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.conftest import Api, api_for
from tests.test_smtp_pipelining import replies


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection past the greeting and EHLO (whose reply must offer CHUNKING, BINARYMIME and PIPELINING)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await replies(reader, 1))[0].startswith("220")
    writer.write(b"EHLO client.example\r\n")
    ehlo = (await replies(reader, 1))[0].split(" | ")
    assert "250-CHUNKING" in ehlo and "250-PIPELINING" in ehlo and "250-BINARYMIME" in ehlo
    return reader, writer


async def alice_connected(gateway: Any) -> tuple[Api, str, asyncio.StreamReader, asyncio.StreamWriter]:
    """The account alice@localhost (the API, alice's token) and an SMTP connection past EHLO."""
    api = api_for(gateway)
    _, token = await api.register("alice")
    return (api, token, *await connect(gateway.smtp_port))


def bdat(chunk: bytes, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk


#: Lines DATA would have read otherwise: a lone dot, a dot-started line, a bare LF, and what looks like commands.
AWKWARD = (b"Subject: chunked\r\nTo: alice@localhost\r\n\r\nfirst line\r\n.\r\n..two dots\r\n"
           b"bare\nLF\r\nQUIT\r\nRSET\r\n")


@pytest.mark.gen_test(timeout=30)
async def test_a_message_in_chunks_is_filed_byte_for_byte(gateway: Any) -> None:
    api, token, reader, writer = await alice_connected(gateway)
    try:
        # the whole transaction in one write, split mid-line across three chunks, the last one empty
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n" + bdat(AWKWARD[:30])
                     + bdat(AWKWARD[30:]) + bdat(b"", last=True))
        got = await replies(reader, 5)
        assert [r[:3] for r in got] == ["250", "250", "250", "250", "250"]
        assert got[2] == "250 2.0.0 30 octets received" and got[4].startswith("250 2.0.0 Message accepted")
        # the same connection goes on: a message in one chunk, then one the old way
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n"
                     + bdat(b"Subject: one chunk\r\n\r\nhello\r\n", last=True))
        assert [r[:3] for r in await replies(reader, 3)] == ["250", "250", "250"]
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
        assert [r[:3] for r in await replies(reader, 3)] == ["250", "250", "354"]
        writer.write(b"Subject: with DATA\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        assert [r[:3] for r in await replies(reader, 2)] == ["250", "221"]
    finally:
        writer.close()
    emails = (await api.get("/emails", token=token)).json["emails"]
    assert sorted(e["subject"] for e in emails) == ["chunked", "one chunk", "with DATA"]
    chunked = next(e for e in emails if e["subject"] == "chunked")
    assert (await api.get(f"/emails/{chunked['id']}/raw", token=token)).body == AWKWARD


@pytest.mark.gen_test(timeout=30)
async def test_refused_chunks_are_read_to_their_end_and_dropped(start_gateway: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    gateway = await start_gateway(smtp_max_size=1000)
    api, token, reader, writer = await alice_connected(gateway)
    try:
        # no transaction: refused, and the chunk's "commands" are data, not commands
        writer.write(bdat(b"QUIT\r\nNOOP\r\n", last=True) + b"NOOP\r\n")
        assert [r[:3] for r in await replies(reader, 2)] == ["503", "250"]
        # over the size limit: refused and read to its end; the chunks after it in the pipeline are
        # dropped until RSET, and DATA may not follow BDAT in one message (RFC 3030)
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n" + bdat(b"x" * 600)
                     + bdat(b"y" * 600) + bdat(b"QUIT\r\n", last=True) + b"DATA\r\nRSET\r\n")
        got = await replies(reader, 7)
        assert [r[:3] for r in got] == ["250", "250", "250", "552", "503", "503", "250"]
        assert got[3] == "552 5.3.4 Error: too much mail data"
        # after RSET the connection takes a message again
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n"
                     + bdat(b"Subject: after\r\n\r\nfits\r\n", last=True))
        assert [r[:3] for r in await replies(reader, 3)] == ["250", "250", "250"]
        # a chunk, then DATA in the same message: 503, and RSET clears it
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n" + bdat(b"part")
                     + b"DATA\r\nRSET\r\nQUIT\r\n")
        assert [r[:3] for r in await replies(reader, 6)] == ["250", "250", "250", "503", "250", "221"]
    finally:
        writer.close()
    emails = (await api.get("/emails", token=token)).json["emails"]
    assert [e["subject"] for e in emails] == ["after"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("command", [b"BDAT", b"BDAT x LAST", b"BDAT -1", b"BDAT 10 FIRST", b"BDAT 1" + b"0" * 20])
async def test_a_bdat_whose_size_cannot_be_read_ends_the_connection(gateway: Any, command: bytes, caplog: Any) -> None:
    """Without its size the data after the command cannot be told from the next command: nothing
    received after it is taken as a command, not even a whole message."""
    caplog.set_level(logging.INFO)
    api, token, reader, writer = await alice_connected(gateway)
    try:
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n" + command + b"\r\n"
                     b"RSET\r\nMAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\n"
                     + bdat(b"Subject: after\r\n\r\nhi\r\n", last=True))
        assert await replies(reader, 3) == ["250 OK", "250 OK", "501 5.5.4 Syntax: BDAT size [LAST]"]
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    assert (await api.get("/emails", token=token)).json["emails"] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.gen_test(timeout=30)
async def test_a_connection_lost_in_a_chunk_files_nothing_and_logs_no_error(gateway: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    api, token, reader, writer = await alice_connected(gateway)
    try:
        writer.write(b"MAIL FROM:<ann@example.org>\r\nRCPT TO:<alice@localhost>\r\nBDAT 100 LAST\r\nSubject: cut")
        writer.write_eof()
        # the replies held for the group go out at the end, and the server closes: it has seen the end
        assert await asyncio.wait_for(reader.read(), 10) == b"250 OK\r\n250 OK\r\n"
    finally:
        writer.close()
    assert (await api.get("/emails", token=token)).json["emails"] == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


#: An attachment no transfer encoding covers but binary: every byte value, bare CR and LF, a lone dot line.
BLOB = bytes(range(256)) * 4 + b"\r\n.\r\nend\rx\ny\x00"
BINARY = (b"From: ann@example.org\r\nTo: alice@localhost\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
          b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
          b"Content-Disposition: attachment; filename=blob.bin\r\n\r\n" + BLOB + b"\r\n--zz--\r\n")


@pytest.mark.gen_test(timeout=30)
async def test_a_binarymime_message_is_filed_and_read_back_byte_for_byte(gateway: Any) -> None:
    """RFC 3030's BINARYMIME: binary parts, which only BDAT can carry (DATA gets 503)."""
    api, token, reader, writer = await alice_connected(gateway)
    try:
        writer.write(b"MAIL FROM:<ann@example.org> BODY=BINARYMIME\r\nRCPT TO:<alice@localhost>\r\nDATA\r\nRSET\r\n"
                     b"MAIL FROM:<ann@example.org> BODY=BINARYMIME\r\nRCPT TO:<alice@localhost>\r\n"
                     + bdat(BINARY[:500]) + bdat(BINARY[500:], last=True))
        got = await replies(reader, 8)
        assert [r[:3] for r in got] == ["250", "250", "503", "250", "250", "250", "250", "250"]
        assert got[2] == "503 5.5.1 Error: BODY=BINARYMIME takes BDAT, not DATA"
        # parameters are read after the address only: a quoted local part may say anything
        writer.write(b'MAIL FROM:<"odd BODY=BINARYMIME"@example.org>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n')
        assert [r[:3] for r in await replies(reader, 3)] == ["250", "250", "354"]
        writer.write(b"Subject: quoted\r\n\r\nhi\r\n.\r\n")
        assert (await replies(reader, 1))[0].startswith("250")
    finally:
        writer.close()
    emails = {e["subject"]: e for e in (await api.get("/emails", token=token)).json["emails"]}
    assert sorted(emails) == ["binary", "quoted"]
    assert emails["quoted"]["from"] == '"odd BODY=BINARYMIME"@example.org'
    email = (await api.get(f"/emails/{emails['binary']['id']}", token=token)).json["email"]
    assert [(a["filename"], a["size"]) for a in email["attachments"]] == [("blob.bin", len(BLOB))]
    assert (await api.get(f"/emails/{email['id']}/attachments/0", token=token)).body == BLOB
    assert (await api.get(f"/emails/{email['id']}/raw", token=token)).body == BINARY
