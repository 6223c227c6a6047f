"""Docker Engine API routes, one module per resource, each over the backends' Protocols."""
