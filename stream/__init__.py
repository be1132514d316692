"""Live ZeroMQ chain: frame grabber -> despeckler -> publisher, and a subscriber client."""
