"""The gateway: an email service's JSON API over HTTP and over one SockJS connection."""

__version__ = "0.1.0"
