"""The `berth` command-line client of the Engine API."""
