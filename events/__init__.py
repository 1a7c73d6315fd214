"""Events: the model (which writes are events, what a client receives), subscriptions, and the
dispatcher that turns the store's event feed into messages for bound subscribers."""
