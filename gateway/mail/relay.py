"""The SMTP relay that carries mail for other domains: its URL, and handing it one email."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import aiosmtplib

from gateway.mail.addresses import address_of
from gateway.mail.mime import build_message
from gateway.mail.parse import raw_bytes
from gateway.store import Doc


@dataclass(frozen=True)
class Relay:
    """Where external mail goes: ``smtp://[user:pass@]host:port``, ``smtp+starttls://...`` or ``smtps://...``."""

    host: str
    port: int
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> "Relay | None":
        if not url:
            return None
        parts = urlsplit(url)
        schemes = {"smtp": (False, False, 25), "smtp+starttls": (True, False, 587), "smtps": (False, True, 465)}
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"relay URL must be smtp://, smtp+starttls:// or smtps://HOST[:PORT], got {url!r}")
        starttls, tls, default_port = schemes[parts.scheme]
        return cls(parts.hostname, parts.port or default_port, starttls, tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)



class Failure(NamedTuple):
    """Why one recipient did not take an email: for good (``permanent``) or for now, with the
    SMTP reply's ``code`` (None when there was no reply) and ``text``."""

    permanent: bool
    code: int | None
    text: str

    def reason(self) -> str:
        return f"{self.code} {self.text}" if self.code is not None else self.text


async def send_through(relay: Relay | None, email: Doc, recipients: list[str]) -> tuple[list[str], dict[str, Failure]]:
    """Hand the email to the relay: the recipients it accepted, and why each other one failed."""
    if relay is None:
        return [], {a: Failure(True, None, "no SMTP relay configured for external mail") for a in recipients}
    try:
        # the message as stored when it was composed (an email queued by an older version has none)
        message = raw_bytes(email) or build_message(email, [])
        errors, _ = await aiosmtplib.send(
            message, sender=address_of(email["from"]), recipients=recipients, hostname=relay.host,
            port=relay.port, start_tls=relay.starttls, use_tls=relay.tls, username=relay.username,
            password=relay.password, timeout=30)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return [], {r.recipient: Failure(r.code >= 500, r.code, r.message) for r in exc.recipients}
    except aiosmtplib.SMTPResponseException as exc:
        return [], {a: Failure(exc.code >= 500, exc.code, f"relay said: {exc.message}") for a in recipients}
    except (aiosmtplib.SMTPException, OSError) as exc:
        return [], {a: Failure(False, None, f"relay unreachable: {exc}") for a in recipients}
    failed = {a: Failure(code >= 500, code, message) for a, (code, message) in errors.items()}
    return [a for a in recipients if a not in failed], failed
