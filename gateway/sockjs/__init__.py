"""The SockJS protocol layer: sockjs-tornado's router, session and transports, fixed to pass the
public protocol suite.  It knows nothing else of the project's (the suite checks that)."""

from __future__ import annotations

from gateway.sockjs.router import Router, Session, backlog

__all__ = ["Router", "Session", "backlog"]
