"""Protocol peers the tests play: an SMTP relay (aiosmtpd) that records what it accepts."""

from __future__ import annotations

from typing import Any


class Relay:
    """An SMTP relay played by aiosmtpd: records what it accepts; ``refuse`` scripts its answers to RCPT."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.refuse: list[str] = []  # answers to give to the next RCPTs instead of 250

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"
