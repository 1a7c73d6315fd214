"""The ``/ws`` protocol: typed messages, frame encoding, the tunnel, and the connection that dispatches them."""
