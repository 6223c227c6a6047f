"""The content store: blobs addressed by their sha256 digest.

A blob is written to an ingest file, checked for size and digest, fsynced and
then renamed into blobs/sha256/<hex>. A crash leaves at most a stale ingest
file (removed at open), never a blob whose content does not match its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from typing import BinaryIO

from services.common.errors import InvalidArgument, NotFound

_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
CHUNK = 1024 * 1024


def check_digest(digest: str) -> str:
    if not _DIGEST_RE.fullmatch(digest or ""):
        raise InvalidArgument(f"invalid digest {digest!r}: want sha256:<64 lowercase hex>")
    return digest


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    """Blobs under <root>/blobs/sha256, ingests under <root>/ingest."""

    def __init__(self, root: str):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        os.makedirs(self.blob_dir, mode=0o700, exist_ok=True)
        # Downloads interrupted by a crash stay here, named by the digest they
        # should have, so the next pull resumes them with an HTTP Range request.
        self.partial_dir = os.path.join(root, "partial")
        # Ingests of a previous run were never committed: nothing refers to them.
        shutil.rmtree(self.ingest_dir, ignore_errors=True)
        os.makedirs(self.ingest_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.partial_dir, mode=0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, check_digest(digest)[len("sha256:"):])

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def write(self, chunks: Iterable[bytes], expected_digest: str | None = None,
              expected_size: int | None = None) -> tuple[str, int]:
        """Store a blob from chunks; returns (digest, size). Verifies what is expected."""
        if expected_digest:
            check_digest(expected_digest)
        tmp, digest, size = self.ingest(chunks)
        return self.commit_ingest(tmp, digest, size, expected_digest, expected_size), size

    def ingest(self, chunks: Iterable[bytes]) -> tuple[str, str, int]:
        """Writes chunks to a new, fsynced ingest file: (its path, the digest, the size). It is
        not a blob until commit_ingest (a restart removes it)."""
        fd, tmp = tempfile.mkstemp(dir=self.ingest_dir, prefix="ingest-")
        try:
            h = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb", buffering=0) as out:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[out.write(view):]
                os.fsync(out.fileno())
            return tmp, "sha256:" + h.hexdigest(), size
        except BaseException:
            self.discard_ingest(tmp)
            raise

    def commit_ingest(self, tmp: str, digest: str, size: int, expected_digest: str | None = None,
                      expected_size: int | None = None) -> str:
        """The ingest file, checked against what is expected, renamed into the store as the
        blob `digest` (returned); on a mismatch it is removed and nothing is stored."""
        try:
            if expected_size is not None and size != expected_size:
                raise InvalidArgument(
                    f"blob {expected_digest or digest}: size is {size} bytes, expected {expected_size}")
            if expected_digest and digest != expected_digest:
                raise InvalidArgument(f"blob digest mismatch: expected {expected_digest}, got {digest}")
            final = self.path(digest)
            if os.path.exists(final):
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o600)
                os.rename(tmp, final)
                fsync_dir(self.blob_dir)
            return digest
        except BaseException:
            self.discard_ingest(tmp)
            raise

    def discard_ingest(self, tmp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    def write_bytes(self, data: bytes, expected_digest: str | None = None) -> tuple[str, int]:
        return self.write([data], expected_digest)

    def write_file(self, f: BinaryIO, expected_digest: str | None = None,
                   expected_size: int | None = None) -> tuple[str, int]:
        return self.write(iter(lambda: f.read(CHUNK), b""), expected_digest, expected_size)

    def partial_path(self, digest: str) -> str:
        return os.path.join(self.partial_dir, check_digest(digest)[len("sha256:"):])

    def commit_partial(self, digest: str) -> None:
        """Move a download whose size and digest the caller verified into the store."""
        tmp = self.partial_path(digest)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.path(digest))
        fsync_dir(self.blob_dir)

    def prune_partials(self, max_age: float) -> None:
        """Forget interrupted downloads older than `max_age` seconds."""
        now = time.time()
        for name in os.listdir(self.partial_dir):
            path = os.path.join(self.partial_dir, name)
            try:
                if now - os.stat(path).st_mtime > max_age:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    def list(self) -> list[str]:
        return ["sha256:" + name for name in os.listdir(self.blob_dir) if len(name) == 64]
