"""The container service: runs resolved container specs with runc under conmon."""
