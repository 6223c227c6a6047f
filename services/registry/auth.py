"""htpasswd basic auth for the registry: bcrypt entries only, as docker's registry requires."""

from __future__ import annotations

import base64
import hashlib

import bcrypt


class Htpasswd:
    """Users and bcrypt hashes from an htpasswd file ("user:$2y$..." lines)."""

    def __init__(self, path: str):
        self.users: dict[str, bytes] = {}
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or ":" not in line:
                    continue
                user, _, hashed = line.partition(":")
                self.users[user] = hashed.encode()
        # bcrypt costs ~0.1 s a check on purpose; a client sends the same header
        # on every request, so remember the ones already checked.
        self._ok: set[bytes] = set()

    def check(self, authorization: str | None) -> str | None:
        """The user an Authorization header proves, or None."""
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        if hashed is None:
            return None
        key = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        if key in self._ok:
            return user
        # The Apache "$2y$" prefix is the same algorithm as "$2b$".
        if bcrypt.checkpw(password.encode(), hashed.replace(b"$2y$", b"$2b$", 1)):
            self._ok.add(key)
            return user
        return None


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
