"""berth's private registry: the OCI distribution API over a filesystem store."""
