"""The `berth` command-line client of the Engine API."""

VERSION = "0.1.0"
