"""Inbound mail: an SMTP server (aiosmtpd) on the event loop that files mail for local accounts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

import aiosmtpd.smtp
from aiosmtpd.smtp import MISSING, SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession
from aiosmtpd.smtp import syntax

from gateway.mail.addresses import PLAIN_ADDRESS
from gateway.mail.documents import inbound_copy
from gateway.mail.mailbox import add_email, copy_id
from gateway.mail.parse import TooComplex, parse_message
from gateway.mail.recipients import Recipients
from gateway.store import Conflict, Documents, StoreError

log = logging.getLogger("gateway.smtp")
smtp_log = logging.getLogger("mail.log")  # aiosmtpd's

_stock_sanitized_log = aiosmtpd.smtp.sanitized_log
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def _sanitized_log(func: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log``, called only when its logger takes the call.  aiosmtpd's
    ``_handle_client`` logs every command line twice (debug, info) through it, and it masks AUTH
    arguments (a regex match, a list) before the logger, off below WARNING unless ``--log-level
    debug``, turns the call away: 1.9 us a command.  What a logger that takes the call gets is the
    stock function's.  It is a module function aiosmtpd calls by name, hence set on its module."""
    logger = getattr(func, "__self__", None)
    if isinstance(logger, logging.Logger) and not logger.isEnabledFor(_LEVELS.get(func.__name__, logging.NOTSET)):
        return
    _stock_sanitized_log(func, msg, *args, **kwargs)


aiosmtpd.smtp.sanitized_log = _sanitized_log  # type: ignore[assignment]

#: A MAIL FROM or RCPT TO path of one plain address, then what follows it (parameters).
PLAIN_PATH = re.compile(f"<({PLAIN_ADDRESS.pattern})>(.*)", re.S)
TRY_LATER = "451 4.3.0 Mail store unavailable, try again later"
#: Messages up to this size are parsed on the event loop (a few milliseconds at most); larger ones on a
#: worker thread, as a composed message and an attachment download are, so that the loop goes on
#: serving while one is parsed (about 50 ms a megabyte).
PARSE_ON_LOOP_BYTES = 64 << 10
#: ... and so is a message whose headers run past this (no blank line within it): reading a header
#: takes the email package up to about 0.2 ms an address, so a long one is not read on the loop.
HEADERS_ON_LOOP_BYTES = 8 << 10
#: A BDAT command's argument (RFC 3030): the chunk's size in octets, and LAST on the message's last chunk.
BDAT_ARGUMENT = re.compile(r"([0-9]{1,20})(?: +(LAST))?", re.I)
#: A chunk that is not kept (over the size limit, or refused) is read and dropped this much at a time.
DISCARD_PIECE = 1 << 16
#: MAIL's ``BODY=BINARYMIME`` parameter (RFC 3030), among the parameters after the address.
BODY_BINARYMIME = re.compile(r"(?<=\s)BODY=BINARYMIME(?=\s|$)", re.I)


def parse_and_digest(raw: bytes) -> tuple[dict[str, Any], str]:
    """A received message's fields (:func:`~gateway.mail.parse.parse_message`) and the SHA-256 of its bytes."""
    return parse_message(raw), hashlib.sha256(raw).hexdigest()


class InboundHandler:
    """aiosmtpd handler: accepts recipients that are local accounts, stores one copy per recipient."""

    def __init__(self, store: Documents, domain: str, recipients: Recipients | None = None) -> None:
        self.store = store
        self.domain = domain.lower()
        #: Local accounts by address (without a watched feed, each lookup asks the store).
        self.recipients = recipients or Recipients(store, domain)
        #: Messages being filed right now (a draining gateway waits for them).
        self.active = 0

    async def _parsed(self, raw: bytes) -> tuple[dict[str, Any], str]:
        """The message's fields and the SHA-256 of its bytes; a large message, or one with long
        headers, off the loop."""
        if len(raw) <= PARSE_ON_LOOP_BYTES and (raw.find(b"\r\n\r\n", 0, HEADERS_ON_LOOP_BYTES) >= 0
                                               or raw.find(b"\n\n", 0, HEADERS_ON_LOOP_BYTES) >= 0):  # (bare LF: BDAT)
            return parse_and_digest(raw)
        return await asyncio.to_thread(parse_and_digest, raw)

    async def handle_EHLO(self, server: SMTP, session: SMTPSession, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        # aiosmtpd reads each command from its buffer in order, so pipelined ones (RFC 2920) are
        # answered as they come; real MTAs pipeline when told they may
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-CHUNKING", "250-BINARYMIME", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: SMTPSession, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            account = await self.recipients.account(address)
        except StoreError as exc:
            log.warning("RCPT %s deferred: %s", address, exc)
            return TRY_LATER
        if account is None:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SMTPSession, envelope: Envelope) -> str:
        self.active += 1
        try:
            return await self._file(session, envelope)
        finally:
            self.active -= 1

    async def _file(self, session: SMTPSession, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        raw = raw if isinstance(raw, bytes) else raw.encode()
        try:
            fields, digest = await self._parsed(raw)
        except TooComplex as exc:
            log.info("refused a %d-byte message from %s: %s", len(raw), envelope.mail_from, exc)
            return f"552 5.3.4 Message too complex: {exc}"
        except Exception as exc:  # what the parser cannot take at all (it copes with most damage)
            log.warning("could not parse a message from %s: %r", envelope.mail_from, exc)
            return "554 5.6.0 Message could not be parsed"
        if not fields["from"]:
            fields["from"] = envelope.mail_from or ""
        try:
            stored = await self.store_copies(envelope, fields, digest)
        except StoreError as exc:
            # nothing is lost: the sender keeps the message and retries it, and the copies stored
            # before the failure have ids derived from the message, so the retry does not repeat them
            log.warning("message from %s deferred: %s", envelope.mail_from, exc)
            return TRY_LATER
        log.info("accepted a %d-byte message from %s for %d local recipient(s)", len(raw), envelope.mail_from, stored)
        return "250 2.0.0 Message accepted"

    async def store_copies(self, envelope: Envelope, fields: dict[str, Any], digest: str) -> int:
        """One copy per local recipient; the same message delivered again is not stored twice."""
        stored = 0
        for address in dict.fromkeys(envelope.rcpt_tos):
            # looked up again, not taken from RCPT: an account deleted since then must get no copy
            # (its deletion has removed what it owned; a copy filed now would never be removed).
            # Kept in memory while the accounts feed is live, and dropped by a deletion before it answers
            owner = await self.recipients.account(address)
            if owner is None:
                continue
            copy = copy_id(digest, owner)
            try:
                await add_email(self.store, inbound_copy(
                    {**fields, "message_id": fields["message_id"] or f"<{copy}@{self.domain}>"}, owner, copy))
                stored += 1
            except Conflict:
                pass  # the same bytes were filed for this account before (a sender's retry)
        return stored


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP server, with its MAIL and RCPT address reading made cheaper, the replies
    to pipelined commands sent together, and CHUNKING and BINARYMIME (RFC 3030's ``BDAT`` and
    ``BODY=BINARYMIME``), which aiosmtpd lacks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[bytes] = []
        #: The message being sent with BDAT, so far (None: no BDAT in this transaction).
        self._chunks: bytearray | None = None
        #: Whether a BDAT of this transaction was refused: until RSET the chunks are dropped (RFC 3030).
        self._chunking_failed = False
        #: Whether this transaction's MAIL said ``BODY=BINARYMIME``: its message may come with BDAT only.
        self._binary = False

    def _set_post_data_state(self) -> None:  # after a message, and on RSET, HELO and EHLO
        super()._set_post_data_state()
        self._chunks, self._chunking_failed, self._binary = None, False, False

    async def smtp_MAIL(self, arg: str | None) -> None:
        """aiosmtpd's MAIL, which knows ``BODY=7BIT`` and ``8BITMIME``, taking ``BODY=BINARYMIME`` too
        (RFC 3030: a message of binary MIME parts, sent with BDAT).  Only the parameters after the
        address are looked at: an address's quoted local part may hold anything."""
        address, bracket, parameters = (arg or "").rpartition(">")
        binary = bool(bracket) and BODY_BINARYMIME.search(parameters) is not None
        if binary:
            arg = address + bracket + BODY_BINARYMIME.sub("BODY=8BITMIME", parameters, count=1)
        assert self.envelope is not None
        had_sender = self.envelope.mail_from is not None
        await super().smtp_MAIL(arg)
        if binary and not had_sender and self.envelope.mail_from is not None:  # this MAIL was taken
            self._binary = True
            self.envelope.mail_options = ["BODY=BINARYMIME" if option == "BODY=8BITMIME" else option
                                          for option in self.envelope.mail_options]

    @syntax("BDAT size [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """A chunk of the message (RFC 3030): ``size`` octets follow the command line at once.

        The chunk is read whatever the reply, since a pipelining sender has sent it already; one that
        is not kept (refused, or over ``--smtp-max-size``) is read in pieces and dropped.  A refused
        chunk fails the transaction: the chunks after it are dropped too, until RSET.  A command
        without a size cannot be told from the data after it, so it ends the connection."""
        match = BDAT_ARGUMENT.fullmatch(arg or "")
        if match is None:
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            if self.transport is not None:
                self.transport.close()  # the chunk's size is unknown: the rest of the stream cannot be read
            await self._reader.read()  # nor what was received after it: dropped until the connection ends
            return
        size, last = int(match[1]), match[2] is not None
        refusal = self._chunk_refusal(size)
        chunk = await self._read_chunk(size, keep=refusal is None)
        if refusal is not None:
            await self.push(refusal)
            return
        assert self.envelope is not None
        if not last:
            if self._chunks is None:
                self._chunks = bytearray()
            self._chunks += chunk  # in place: many small chunks cost no more than one large one
            await self.push(f"250 2.0.0 {size} octets received")
            return
        message = chunk if self._chunks is None else bytes(self._chunks + chunk)
        self.envelope.content = self.envelope.original_content = message
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _chunk_refusal(self, size: int) -> str | None:
        """The reply refusing a chunk of ``size`` octets, or None to take it.  One that takes the
        message past the size limit fails the message (RFC 3030: later chunks are refused too)."""
        assert self.session is not None and self.envelope is not None
        if not self.session.host_name:
            return "503 Error: send HELO first"  # aiosmtpd's words for the other commands
        if self._auth_required and not self.session.authenticated:
            return "530 5.7.0 Authentication required"
        if not self.envelope.rcpt_tos:
            return "503 5.5.1 Error: need RCPT command"
        if self._chunking_failed:
            return "503 5.5.1 Error: this message was refused; send RSET"
        if self.data_size_limit and len(self._chunks or b"") + size > self.data_size_limit:
            self._chunking_failed = True
            return "552 5.3.4 Error: too much mail data"
        return None

    async def _read_chunk(self, size: int, keep: bool) -> bytes:
        """The ``size`` octets after a BDAT line; read and dropped when not ``keep``."""
        if keep:
            return await self._reader.readexactly(size)
        while size:
            size -= len(await self._reader.readexactly(min(size, DISCARD_PIECE)))
        return b""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if self._chunks is not None or self._chunking_failed:
            await self.push("503 5.5.1 Error: DATA after BDAT in one message")  # RFC 3030
            return
        if self._binary:
            await self.push("503 5.5.1 Error: BODY=BINARYMIME takes BDAT, not DATA")  # RFC 3030
            return
        await super().smtp_DATA(arg)

    async def push(self, status: str | bytes) -> None:
        # RFC 2920: the replies to a group of pipelined commands may go out in one write.  A line
        # of a multi-line reply waits for the rest of its reply, and a 250 waits while the client's
        # next command is already read (aiosmtpd takes it from the buffer at once, so its reply
        # follows without waiting on the client); every other reply (354, 221, errors, those
        # before a close or STARTTLS) goes out at once, with what waited before it.  The reader's
        # buffer is asyncio's private attribute: without it, every reply goes out on its own.
        response = status if isinstance(status, bytes) else status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        smtp_log.debug("%r << %r", self.session.peer if self.session else None, response)  # as aiosmtpd logs it
        if response[3:4] == b"-" or (response.startswith(b"250") and b"\n" in getattr(self._reader, "_buffer", b"")):
            self._held.append(response + b"\r\n")
            return
        self._writer.write(b"".join([*self._held, response, b"\r\n"]) if self._held else response + b"\r\n")
        self._held.clear()
        await self._writer.drain()

    def _flush_held(self) -> None:
        if self._held and self.transport is not None and not self.transport.is_closing():
            self._writer.write(b"".join(self._held))
        self._held.clear()

    def eof_received(self) -> bool | None:
        self._flush_held()  # aiosmtpd stops reading commands here: what was answered goes out
        return super().eof_received()

    def _timeout_cb(self) -> None:
        self._flush_held()
        super()._timeout_cb()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4's own, less the typing.Protocol class it defines on every call (~60 us, twice
        # per message); the same answers (tests/test_smtp_addresses.py holds them to aiosmtpd's), but
        # for "a@", on which the email package's parser raises IndexError: a malformed address here,
        # a 500 and a traceback in aiosmtpd's
        if not arg:
            return "", ""
        addr: str
        plain = PLAIN_PATH.fullmatch(arg)
        if plain is not None:  # "<local@domain>" of plain dot-atoms, as MTAs send it: read as the parser reads it
            addr, rest = plain.groups()
            if rest[:1] in (" ", "\t"):  # folding white space after the ">", which the parser drops
                rest = rest.lstrip()
            if rest.startswith("("):  # a comment, which it drops too: left to it
                plain = None
        if plain is None:
            try:
                address, rest = (get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec)(arg)
            except (HeaderParseError, IndexError):
                return None, None
            addr = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest


async def start_smtp(store: Documents, domain: str, host: str, port: int, max_size: int,
                     recipients: Recipients | None = None) -> tuple[asyncio.Server, InboundHandler]:
    """Listen for SMTP on the running loop; the server (its socket tells the bound port) and its handler."""
    handler = InboundHandler(store, domain, recipients)

    def protocol() -> Any:
        return GatewaySMTP(handler, data_size_limit=max_size, hostname=domain, ident="gateway SMTP", decode_data=False)

    return await asyncio.get_running_loop().create_server(protocol, host, port), handler
