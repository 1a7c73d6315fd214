"""Events: who is subscribed to what, and (later) changefeed -> delivery/receipt events."""
