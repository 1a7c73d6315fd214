"""How the gateway reads a message (``gateway.mail.parse.parse_message``) takes shortcuts past the
email package, and each one gives what the package itself gives: the same fields, to the byte,
for the messages of the corpus, hand-made edge cases, and a few thousand generated and mutated
messages (a fixed seed, so every run reads the same ones)."""

from __future__ import annotations

import base64
import email.policy
import json
import random
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

import pytest

from gateway.mail import parse, received
from gateway.mail.addresses import LONG_HEADER, MAX_ENTRIES, _clean, _plain_addresses, entries, mailbox
from gateway.mail.received import ReceivedMessage
from gateway.mail.single_part import read_single_part
from tests.test_mail_corpus import CORPUS, FORWARDED

HEADERS = [
    b"From: sender@example.com", b"From: \"Doe, J\" <j@example.com>", b"From: =?utf-8?q?Caf=C3=A9?= <c@x.org>",
    b"From: Alice Example <alice@example.org>", b"To: a@b.example, c@d.example", b"To: Bob <bob@localhost>",
    b"To: undisclosed-recipients:;", b"Cc: x@y.z", b"Cc: broken <<>", b"Subject: hello",
    b"Subject: =?utf-8?b?w6k=?=", b"Subject:  spaced   out ", b"Subject: folded\r\n line", b"Subject:\tTabbed",
    b"Message-ID: <a.b@c.d>", b"Message-ID: not-an-id", b"Message-Id: <X@Y>", b"Message-ID: <a@b>\r\n  ",
    b"Date: Mon, 02 Mar 2026 09:30:00 +0100", b"Date: garbage", b"Date: 2 Mar 2026 09:30 -0000",
    b"Date: Mon, 02 Mar 2026\r\n 09:30:00 +0100", b"Date: Mon, 31 Feb 2026 09:30:00 +0100", b"Date:",
    b"Date: Tue, 1 Dec 2026 23:59:60 +2359", b"Date: 01 Dec 2026 04:20 -0000", b"Date: Sun, 29 Feb 2026 04:20:00 +0000",
    b"Date: Xyz, 01 Abc 2026 04:20:00 +0100", b"Date: Tue, 01 Dec 0001 00:00:00 +0100", b"Date: Tue, 01 Dec 2026 25:61:00 +0100",
    b"Date: Tue,  01 Dec 2026  04:20:00  +0100", b"Date: Tue, 01 Dec 9999 23:59:59 -2359",
    b"In-Reply-To: <p@q.r>", b"References: <a@b> <c@d>", b"References: <a@b>\r\n\t<c@d>",
    b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/html", b"Content-Type: text/plain; charset=bogus",
    b"Content-Type: text/plain; charset=\"ISO-8859-1\"; format=flowed", b"Content-Type: text",
    b"Content-Transfer-Encoding: quoted-printable", b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: 8bit", b"MIME-Version: 1.0", b"Content-ID: <cid1@x>",
    b"Content-Disposition: inline", b"Content-Disposition: attachment; filename=a.txt",
    b"X-Odd: \xc3\xa9t\xc3\xa9", b"Subject: caf\xc3\xa9", b"From: caf\xc3\xa9@example.com", b"subject: lower",
    b"SUBJECT: upper", b"To:", b"Subject:", b"Content-Type: multipart/alternative; boundary=b1",
    b"Content-Type: message/rfc822", b"X-Empty:", b"X-Weird-Name!#$: value", b"From nobody Mon Mar  2 09:30:00 2026",
    b" continued", b": no name", b"No colon here", b"X-Vertical: a\x0bb", b"X-Bare-CR: a\rb", b"X-Bare-LF: a\nb",
]
BODIES = [
    b"Hello.\r\n", b"", b"Caf=C3=A9\r\n", base64.b64encode("naïve".encode()) + b"\r\n", b"\xff\xfe raw\r\n",
    b"--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b1\r\nContent-Type: text/html\r\n\r\n<b>h</b>\r\n--b1--\r\n",
    b"line\rbare cr\nbare lf\r\n\x0bvt\x0cff\x1cfs\x00nul\r\n", b"\r\n\r\nafter blank lines\r\n", b"no line end",
    b"From the start of a line\r\n.leading dot\r\n", "ünïcödé\r\n".encode(),
]


def generated(count: int = 1500, seed: int = 7) -> list[bytes]:
    """Messages of random headers and bodies, then random mutations of the first ones."""
    rnd = random.Random(seed)
    out = [case.raw for case in CORPUS.values()] + [FORWARDED]
    for _ in range(count):
        headers = rnd.sample(HEADERS, rnd.randint(0, 9))
        out.append(b"\r\n".join(headers) + rnd.choice([b"\r\n\r\n", b"\r\n\r\n", b"\n\n", b"\r\n"]) + rnd.choice(BODIES))
    for raw in list(out[:40]):
        for _ in range(12):
            mutated = bytearray(raw)
            for _ in range(rnd.randint(1, 4)):
                at = rnd.randrange(len(mutated)) if mutated else 0
                op = rnd.random()
                if op < 0.4 and mutated:
                    mutated[at] = rnd.choice(b"\r\n:;<>\"=? -abc\xc3\xff\t")
                elif op < 0.7:
                    mutated[at:at] = rnd.choice([b"\r\n", b"\r\n ", b":", b"Content-Type: text/html\r\n", b"\r\n\r\n"])
                elif mutated:
                    del mutated[at]
            out.append(bytes(mutated))
    return out


#: bench/events.py's message, and a plain-text message as a mail client sends one
BENCH = (b"From: sender@example.com\r\nTo: bob@bench.localhost\r\nSubject: bench 1 1700000000.123456\r\n"
         b"Message-ID: <bench-1-aabbccdd@example.com>\r\n\r\nMessage 1 of the events benchmark.\r\n")
WEBMAIL_PLAIN = (b"Date: Tue, 01 Dec 2026 04:20:00 +0100\r\nFrom: Alice Example <alice@example.org>\r\n"
                 b"To: Bob <bob@example.net>\r\nSubject: Lunch?\r\nMessage-ID: <abc.123@example.org>\r\n"
                 b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"UTF-8\"; format=flowed\r\n"
                 b"Content-Transfer-Encoding: 8bit\r\n\r\nHi Bob, caf\xc3\xa9 at noon?\r\n-- \r\nAlice\r\n")
MESSAGES = generated() + [BENCH, WEBMAIL_PLAIN]


def reading(raw: bytes) -> Any:
    """What reading a message gives, as JSON text (so key order counts), or the error it raises."""
    try:
        return json.dumps(parse.parse_message(raw))
    except parse.TooComplex as exc:
        return ("TooComplex", exc.code)


def test_a_header_is_parsed_once_per_message_and_read_again_once_changed() -> None:
    message = parse.parse(b"Content-Type: text/html; charset=utf-8\r\nSubject: x\r\n\r\n<b>hi</b>\r\n")
    assert isinstance(message, ReceivedMessage)
    first = message["Content-Type"]
    assert message.get_content_type() == "text/html" and message["content-type"] is first  # kept
    assert message.get_all("CONTENT-TYPE") == [first]
    del message["Content-Type"]
    message["Content-Type"] = "text/plain; charset=us-ascii"
    assert message.get_content_type() == "text/plain" and message.get_param("charset") == "us-ascii"
    assert message.get("Content-Type") is not first and message.get("X-None", "missing") == "missing"


def test_short_headers_are_parsed_once_for_all_messages_and_the_table_stays_bounded() -> None:
    first = parse.parse(b"To: Ann Lee <ann@example.org>\r\nContent-Type: text/html\r\n\r\nx\r\n")
    second = parse.parse(b"To: Ann Lee <ann@example.org>\r\nContent-Type: text/html\r\n\r\ny\r\n")
    assert first["To"] is second["To"] and first["Content-Type"] is second["Content-Type"]
    long_value = "x" * (received.SHARED_CHARS + 1)
    assert parse.parse(f"Subject: {long_value}\r\n\r\n".encode())["Subject"] is not \
        parse.parse(f"Subject: {long_value}\r\n\r\n".encode())["Subject"]
    for n in range(received.SHARED_COUNT + 10):
        parse.parse(f"Subject: {n}\r\n\r\n".encode())["Subject"]
    assert len(received.SHARED_HEADERS) <= received.SHARED_COUNT


def test_every_message_reads_the_same_without_the_shortcuts(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = [reading(raw) for raw in MESSAGES]
    # the email package's own message class (every header parsed each time it is asked for), its
    # feed parser for every message, and its reading of the bodies of a message without MIME headers
    monkeypatch.setattr(parse, "POLICY", parse.POLICY.clone(message_factory=EmailMessage))
    monkeypatch.setattr(parse, "read_single_part", lambda raw, policy: None)
    monkeypatch.setattr(parse, "_without_mime", lambda message, headers: None)
    assert type(parse.parse(b"Subject: x\r\n\r\n")) is EmailMessage
    stock = [reading(raw) for raw in MESSAGES]
    assert [n for n, (a, b) in enumerate(zip(kept, stock)) if a != b] == []
    assert email.policy.default.message_factory is EmailMessage  # the package's own policy is left alone


def state(message: Message) -> dict[str, Any]:
    """Everything a message object holds (its headers, payload, defects, envelope line, ...), but
    the headers :class:`~gateway.mail.ReceivedMessage` has parsed so far."""
    return {name: value for name, value in vars(message).items() if name != "_parsed"}


def test_a_single_part_message_is_the_object_the_feed_parser_builds() -> None:
    read = 0
    for raw in MESSAGES:
        message = read_single_part(raw, parse.POLICY)
        if message is not None:
            read += 1
            assert state(message) == state(BytesParser(policy=parse.POLICY).parsebytes(raw)), raw
    assert read > 300  # (377 of them): not a test of the fallback alone
    for raw in [BENCH, WEBMAIL_PLAIN, b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n",
                b"Subject: folded\r\n\tline\r\nX-Empty:\r\n\r\n", b"Subject: no body\r\n\r\n"]:
        message = read_single_part(raw, parse.POLICY)
        assert message is not None and state(message) == state(BytesParser(policy=parse.POLICY).parsebytes(raw))
    for raw in [b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n",  # parts: the parser's
                b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n",
                b"Subject: bare LF\n\nbody\n", b"Subject: a\rb\r\n\r\n", b"Subject: a\x0bb\r\n\r\n",
                b"From nobody Mon Mar  2 09:30:00 2026\r\nSubject: x\r\n\r\n", b" continued\r\nSubject: x\r\n\r\n",
                b": no name\r\n\r\n", b"No colon\r\n\r\n", b"Bad name: x\r\n\r\n", b"Subject: caf\xc3\xa9\r\n\r\n",
                b"Subject: no blank line\r\n", b"\r\nSubject: after a blank line\r\n\r\n"]:
        assert read_single_part(raw, parse.POLICY) is None, raw
        BytesParser(policy=parse.POLICY).parsebytes(raw)  # which reads it (with its defects, if any)


NAMES = ["", "Ann", "Ann Lee", "Ann  Lee", "Ann\tLee", "O'Brien", "Jean-Luc", "a.b", "x=y", "q?", "日本", '"Q"', "(c)",
         "Ann Lee ", " Ann", "#!$%&*+/^_`{|}~-", "123", "A B C D", "Ann@", "<", "undisclosed-recipients:;", "=?utf-8?q?x?="]
ADDRESSES = ["a@b.example", "A.B+c_d@x-y.example", "a..b@c.example", "a@b.", "x.@b.example", "-a@-b.example", "a@b"]


def package_addresses(value: str) -> list[str]:
    """A To header's addresses as the email package reads them (and a document keeps them)."""
    message = email.message_from_bytes(f"To: {value}\r\n\r\n".encode(), policy=email.policy.default)
    return [mailbox(_clean(a.display_name), _clean(a.addr_spec).replace(" ", ""))
            for a in message["To"].addresses if a.addr_spec and a.addr_spec != "<>"]


def test_plain_addresses_with_display_names_read_as_the_email_package_reads_them() -> None:
    read = 0
    for name in NAMES:
        for address in ADDRESSES:
            for value in (f"{name}<{address}>", f"{name} <{address}>", f"{name} <{address}>, c@d.example",
                          f"c@d.example,{name} <{address}>", f"{address}, {name}\r\n <{address}>"):
                plain = _plain_addresses([value])
                if plain is not None:  # else the email package reads it
                    read += 1
                    assert plain == package_addresses(value), value
    assert read > 200  # the names of plain words with plain addresses
    assert _plain_addresses(["Ann Lee <ann@example.org>, bob@example.org"]) == ["Ann Lee <ann@example.org>",
                                                                                 "bob@example.org"]
    assert _plain_addresses(["a.b <ann@example.org>"]) is None and _plain_addresses(["=?utf-8?q?x?= <a@b>"]) is None


def test_an_address_list_splits_at_its_top_level_commas() -> None:
    assert entries('"Doe, J" <j@x.org>, (a, (nested,) comment) b@c.d, <x,y@z>, "q\\", r" <q@r>,e@f') == [
        '"Doe, J" <j@x.org>', " (a, (nested,) comment) b@c.d", " <x,y@z>", ' "q\\", r" <q@r>', "e@f"]


def test_a_long_address_header_reads_entry_by_entry_as_the_email_package_reads_it_whole() -> None:
    """Over LONG_HEADER, the package's parser (quadratic in a header's length) reads one entry at a
    time: for a well-formed list, the same addresses as its reading of the whole header."""
    value = ", ".join(f'"Doe, J{n}" <j{n}@x.org>, =?utf-8?q?Z=C3=BC{n}?= <z{n}@y.org>, (c{n}) k{n}@z.org' for n in range(200))
    assert len(value) > LONG_HEADER
    read = parse.parse_message(f"To: {value}\r\nCc: {value}\r\n\r\nhi\r\n".encode())
    assert read["to"] == read["cc"] == package_addresses(value) and len(read["to"]) == 600
    assert read["to"][:2] == ['"Doe, J0" <j0@x.org>', "Zü0 <z0@y.org>"]


@pytest.mark.parametrize("value", ["Ann " * 16000, "(" * 30000, "(" * 1100, "<" * 60000, '"' * 60001, "a" * 60000,
                                   "a@b, " * 12000 + "(x"])
def test_a_hostile_address_header_reads_as_no_address(value: str) -> None:
    """Words, nested comments, unclosed brackets and quotes, entries longer than any address: each
    header is read (at most in a few milliseconds: before, 2.8 s for the words, a RecursionError for
    the comments) and gives what addresses it holds."""
    read = parse.parse_message(f"From: a@b.example\r\nTo: {value}\r\nSubject: still read\r\n\r\nhi\r\n".encode())
    assert (read["from"], read["subject"]) == ("a@b.example", "still read")
    assert all("@" in entry for entry in read["to"]) and len(read["to"]) <= MAX_ENTRIES
    if value.startswith("a@b, "):  # a long list of plain entries, then one the package reads
        assert read["to"] == ["a@b"] * MAX_ENTRIES
