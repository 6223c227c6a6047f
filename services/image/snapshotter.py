"""The overlayfs snapshotter: unpacked layers shared by chain ID, writable snapshots per key.

On disk, under the image service's state directory:

    layers/<chain id hex>/fs     a layer unpacked once, read-only lower dir
    layers/.tmp-*                unpacks in progress (removed at start)
    snapshots/<key>/{upper,work} a container's writable layer
    trash/                       directories being deleted (removed at start)

Importing an image's layers goes like this: for diff_ids [A, B], the chain IDs
are C1 = A and C2 = sha256(C1 + " " + B). If layers/<C1> is missing, blob A is
unpacked into layers/.tmp-x/fs and layers/.tmp-x is renamed to layers/<C1>,
so a layer directory either exists whole or not at all. Two images that share
a base share its directories. The snapshotter returns mounts; it never mounts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO

import structlog

from services.common import tracing
from services.common.errors import InvalidArgument
from services.image.content import fsync_dir
from services.image.model import Layer, Mount
from services.image.layerstream import LayerStream
from services.image.unpack import unpack_layer

log = structlog.get_logger(__name__)
tracer = tracing.tracer(__name__)


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Chain IDs per the OCI image spec, lowest layer first."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def check_key(key: str) -> str:
    if not key:
        raise InvalidArgument("snapshot key must not be empty")
    if "/" in key or key in (".", "..") or "\0" in key:
        raise InvalidArgument(f"invalid snapshot key {key!r}: it may not contain '/' or be '.' or '..'")
    return key


class Snapshotter:
    def __init__(self, root: str, open_blob: Callable[[str], BinaryIO]):
        self.layers_dir = os.path.join(root, "layers")
        self.snapshots_dir = os.path.join(root, "snapshots")
        self.trash_dir = os.path.join(root, "trash")
        self._open_blob = open_blob
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        for d in (self.layers_dir, self.snapshots_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        shutil.rmtree(self.trash_dir, ignore_errors=True)
        os.makedirs(self.trash_dir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.layers_dir):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.layers_dir, name), ignore_errors=True)

    # -- layers -----------------------------------------------------------------

    def layer_dir(self, chain_id: str) -> str:
        return os.path.join(self.layers_dir, chain_id.split(":", 1)[-1])

    def layer_fs(self, chain_id: str) -> str:
        return os.path.join(self.layer_dir(chain_id), "fs")

    def is_unpacked(self, chain_id: str) -> bool:
        return os.path.isdir(self.layer_dir(chain_id))

    def unpacked_layers(self) -> set[str]:
        return {"sha256:" + n for n in os.listdir(self.layers_dir) if not n.startswith(".")}

    def _lock(self, chain_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(chain_id, threading.Lock())

    def unpack(self, layers: Sequence[Layer]) -> list[str]:
        """Unpack what is missing of an image's layers; returns chain IDs, lowest first."""
        chains = chain_ids([layer.diff_id for layer in layers])
        for layer, chain in zip(layers, chains):
            if self.is_unpacked(chain):
                continue
            # Concurrent callers for the same chain wait here, then find it done.
            with self._lock(chain):
                if not self.is_unpacked(chain):
                    self._unpack_one(layer, chain)
        return chains

    def _unpack_one(self, layer: Layer, chain: str) -> None:
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=self.layers_dir)
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        try:
            with tracer.start_as_current_span("unpack_layer") as span, self._open_blob(layer.digest) as f:
                span.set_attribute("chain_id", chain)
                stream = LayerStream(f)
                unpack_layer(stream, fs)
                stream.finish()
                # Checked here, in the one pass over the data, for every source of layers.
                if stream.diff_id != layer.diff_id:
                    raise InvalidArgument(
                        f"layer {layer.digest} unpacks to {stream.diff_id}, but the image config "
                        f"says {layer.diff_id}")
            os.chmod(tmp, 0o700)
            os.rename(tmp, self.layer_dir(chain))
            fsync_dir(self.layers_dir)
            log.info("layer_unpacked", chain_id=chain, diff_id=layer.diff_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove_layer(self, chain_id: str) -> None:
        self._discard(self.layer_dir(chain_id))

    # -- snapshots ----------------------------------------------------------------

    def snapshot_dir(self, key: str) -> str:
        return os.path.join(self.snapshots_dir, check_key(key))

    def create(self, key: str) -> None:
        d = self.snapshot_dir(key)
        os.makedirs(os.path.join(d, "upper"), mode=0o755)
        os.mkdir(os.path.join(d, "work"), 0o700)

    def mounts(self, key: str, chains: Sequence[str]) -> tuple[Mount, ...]:
        """The overlay mount: lowerdir lists the top layer first, as overlayfs wants."""
        d = self.snapshot_dir(key)
        if not chains:
            # An image of no layers (FROM scratch): overlayfs needs a lower dir,
            # and there is nothing to lie under the writable one anyway.
            return (Mount(type="bind", source=os.path.join(d, "upper"), target="",
                          options=("rbind", "rw")),)
        lower = ":".join(self.layer_fs(c) for c in reversed(chains))
        return (Mount(type="overlay", source="overlay", target="", options=(
            f"lowerdir={lower}",
            f"upperdir={os.path.join(d, 'upper')}",
            f"workdir={os.path.join(d, 'work')}",
        )),)

    def remove(self, key: str) -> None:
        self._discard(self.snapshot_dir(key))

    def snapshot_keys_on_disk(self) -> set[str]:
        return set(os.listdir(self.snapshots_dir))

    def usage(self, key: str) -> int:
        """Bytes used by the writable layer, hardlinks counted once."""
        total = 0
        seen: set[int] = set()
        for dirpath, dirnames, filenames in os.walk(os.path.join(self.snapshot_dir(key), "upper")):
            for name in filenames + dirnames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                if st.st_ino not in seen and not stat.S_ISDIR(st.st_mode):
                    seen.add(st.st_ino)
                    total += st.st_size
        return total

    def _discard(self, path: str) -> None:
        """Remove a directory: renamed into trash first, so it vanishes from its place atomically."""
        if not os.path.lexists(path):
            return
        dest = tempfile.mkdtemp(dir=self.trash_dir)
        target = os.path.join(dest, "x")
        os.rename(path, target)
        shutil.rmtree(dest, ignore_errors=True)
