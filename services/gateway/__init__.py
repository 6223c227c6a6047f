"""The gateway: the Engine API that clients talk to, composed from the node services."""
