"""The Docker Engine API versions this server speaks, for the version middleware and /version."""

from __future__ import annotations

MIN_API = (1, 41)
MAX_API = (1, 47)


def api_version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
