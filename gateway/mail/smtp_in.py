"""Inbound mail: an SMTP server (aiosmtpd) on the event loop that files mail for local accounts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from typing import Any

from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SMTPSession

from gateway.mail.documents import inbound_copy
from gateway.mail.mailbox import add_email, copy_id, local_account
from gateway.mail.parse import TooComplex, parse_message
from gateway.store import Conflict, Documents, StoreError

log = logging.getLogger("gateway.smtp")

TRY_LATER = "451 4.3.0 Mail store unavailable, try again later"


class InboundHandler:
    """aiosmtpd handler: accepts recipients that are local accounts, stores one copy per recipient."""

    def __init__(self, store: Documents, domain: str) -> None:
        self.store = store
        self.domain = domain.lower()
        #: The account of each recipient RCPT accepted, by envelope (one SMTP transaction): DATA
        #: files the message for them without looking them up again.
        self._accounts: weakref.WeakKeyDictionary[Envelope, dict[str, str]] = weakref.WeakKeyDictionary()
        #: Messages being filed right now (a draining gateway waits for them).
        self.active = 0

    async def handle_RCPT(self, server: SMTP, session: SMTPSession, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            account = await local_account(self.store, address, self.domain)
        except StoreError as exc:
            log.warning("RCPT %s deferred: %s", address, exc)
            return TRY_LATER
        if account is None:
            return "550 5.1.1 No such user here"
        self._accounts.setdefault(envelope, {})[address] = account
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
            fields = parse_message(raw)
        except TooComplex as exc:
            log.info("refused a %d-byte message from %s: %s", len(raw), envelope.mail_from, exc)
            return f"552 5.3.4 Message too complex: {exc}"
        except Exception as exc:  # what the parser cannot take at all (it copes with most damage)
            log.warning("could not parse a message from %s: %r", envelope.mail_from, exc)
            return "554 5.6.0 Message could not be parsed"
        if not fields["from"]:
            fields["from"] = envelope.mail_from or ""
        try:
            stored = await self.store_copies(envelope, fields, hashlib.sha256(raw).hexdigest())
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
        accepted = self._accounts.get(envelope, {})
        for address in dict.fromkeys(envelope.rcpt_tos):
            owner = accepted.get(address) or await local_account(self.store, address, self.domain)
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
    """aiosmtpd's SMTP server, with its MAIL and RCPT address reading made cheaper."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4's own, less the typing.Protocol class it defines on every call (~60 us, twice
        # per message); the same answers (tests/test_smtp_addresses.py holds them to aiosmtpd's), but
        # for "a@", on which the email package's parser raises IndexError: a malformed address here,
        # a 500 and a traceback in aiosmtpd's
        if not arg:
            return "", ""
        try:
            address, rest = (get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec)(arg)
        except (HeaderParseError, IndexError):
            return None, None
        addr: str = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest


async def start_smtp(store: Documents, domain: str, host: str, port: int, max_size: int
                     ) -> tuple[asyncio.Server, InboundHandler]:
    """Listen for SMTP on the running loop; the server (its socket tells the bound port) and its handler."""
    handler = InboundHandler(store, domain)

    def protocol() -> Any:
        return GatewaySMTP(handler, data_size_limit=max_size, hostname=domain, ident="gateway SMTP", decode_data=False)

    return await asyncio.get_running_loop().create_server(protocol, host, port), handler
