"""Disk use by reachability: the one computation behind DiskUsage and PruneImages.

An image needs "items": its config, manifest and layer blobs, and its unpacked
layer directories (by chain ID, shared between images with the same base).
An item costs its bytes once, however many images need it. So:

    size(image)            sum of the items it needs
    shared_size(image)     of those, items another image needs too
    freed(removed images)  items needed by the removed images and by nothing kept
                           (kept images, snapshots' layers)

`system df` reports freed(every unused image) as reclaimable; `image prune`
reports freed(what it removes), computed the same way just before removing,
so the two agree to the byte.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.image.model import ImageRecord, SnapshotRecord
from services.image.snapshotter import chain_ids


@dataclass(frozen=True)
class ImageUsage:
    id: str
    size: int
    shared_size: int
    snapshots: int


def tree_size(root: str) -> int:
    """Bytes of the files under root, hardlinks once (directories not counted, like du --apparent)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


@dataclass(frozen=True)
class DiskUsage:
    images: list[ImageUsage]
    snapshots: list[tuple[str, int]]   # (key, bytes in its writable layer)
    images_size: int                   # all images together, shared bytes once
    images_reclaimable: int            # freed() of every image no snapshot uses


@dataclass(frozen=True)
class PruneResult:
    untagged: list[str]
    deleted: list[str]
    space_reclaimed: int


class Usage:
    """Sizes of items; unpacked layers never change once made, so their sizes are cached."""

    def __init__(self, blob_size: Callable[[str], int], layer_dir: Callable[[str], str]):
        self._blob_size = blob_size
        self._layer_dir = layer_dir
        self._layer_sizes: dict[str, int] = {}
        self._guard = threading.Lock()

    def items(self, record: ImageRecord) -> set[str]:
        out = {f"blob:{record.id}", f"blob:{record.manifest_digest}"}
        out.update(f"blob:{layer.digest}" for layer in record.layers)
        out.update(f"layer:{c}" for c in chain_ids(record.diff_ids))
        return out

    def size(self, item: str) -> int:
        kind, _, key = item.partition(":")
        if kind == "blob":
            try:
                return self._blob_size(key)
            except Exception:  # noqa: BLE001 - a missing blob costs nothing
                return 0
        with self._guard:
            cached = self._layer_sizes.get(key)
        if cached is not None:
            return cached
        path = self._layer_dir(key)
        if not os.path.isdir(path):
            return 0
        size = tree_size(path)
        with self._guard:
            self._layer_sizes[key] = size
        return size

    def forget_layers(self, present: Iterable[str]) -> None:
        with self._guard:
            keep = set(present)
            for key in list(self._layer_sizes):
                if key not in keep:
                    del self._layer_sizes[key]

    def images(self, records: list[ImageRecord], snapshots: list[SnapshotRecord]) -> list[ImageUsage]:
        needs = {r.id: self.items(r) for r in records}
        counts = Counter(item for items in needs.values() for item in items)
        in_use = Counter(s.image_id for s in snapshots)
        out = []
        for r in records:
            items = needs[r.id]
            out.append(ImageUsage(
                id=r.id, size=sum(self.size(i) for i in items),
                shared_size=sum(self.size(i) for i in items if counts[i] > 1),
                snapshots=in_use.get(r.id, 0)))
        return out

    def total(self, records: list[ImageRecord]) -> int:
        return sum(self.size(i) for i in set().union(*(self.items(r) for r in records)))

    def freed(self, records: list[ImageRecord], snapshots: list[SnapshotRecord],
              removed: set[str]) -> int:
        """Bytes that removing the images `removed` (ids) would free."""
        kept: set[str] = set()
        for r in records:
            if r.id not in removed:
                kept |= self.items(r)
        for s in snapshots:
            kept.update(f"layer:{c}" for c in s.chain_ids)
        gone: set[str] = set()
        for r in records:
            if r.id in removed:
                gone |= self.items(r)
        return sum(self.size(i) for i in gone - kept)
