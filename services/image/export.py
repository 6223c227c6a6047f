"""A path of an image as a tar stream: the content copy-up fills a new volume with.

The layers are merged by the kernel: a read-only overlay of the image's layer
directories, mounted by a short-lived helper process in a mount namespace of
its own. The mount is private to the helper and goes away with it, so a crash
at any point leaves no mount behind on the host, and the image service never
has an overlay of its own to track.

    python -m services.image.export <path> <layer dir, top first>...  > tar
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import stat
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator, Sequence

from services.common.paths import secure_join

CHUNK = 256 * 1024
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REC, MS_PRIVATE = 1, 16384, 1 << 18


async def export_path(layer_dirs: Sequence[str], path: str, tmp_dir: str) -> AsyncIterator[bytes]:
    """Tar of the directory at `path` in the merged layers (top layer first); empty when
    `path` is missing or not a directory."""
    # Imported here: the helper process needs none of grpc.
    from services.common.errors import Internal, InvalidArgument
    if not path.startswith("/"):
        raise InvalidArgument(f"path {path!r} must be absolute")
    os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.image.export", path, tmp_dir, *layer_dirs,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        while chunk := await proc.stdout.read(CHUNK):
            yield chunk
        stderr = await proc.stderr.read()
        if await proc.wait() != 0:
            raise Internal(f"exporting {path} from the image failed: {stderr.decode(errors='replace').strip()}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _no_whiteouts(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # A single layer is read without overlayfs: its whiteouts (0/0 char devices) are no files.
    if info.ischr() and info.devmajor == 0 and info.devminor == 0:
        return None
    return info


def _main(path: str, tmp_dir: str, layers: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    mnt = ""
    if len(layers) == 1:
        root = layers[0]
    else:
        if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            print(f"unshare: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            return 1
        mnt = tempfile.mkdtemp(prefix="export-", dir=tmp_dir)
        data = f"lowerdir={':'.join(layers)}".encode()
        if libc.mount(b"overlay", mnt.encode(), b"overlay", MS_RDONLY, data) != 0:
            print(f"mount overlay: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
            os.rmdir(mnt)
            return 1
        root = mnt
    try:
        source = secure_join(root, path)
        is_dir = stat.S_ISDIR(os.lstat(source).st_mode) if os.path.lexists(source) else False
        if is_dir:
            with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(source, arcname=".", recursive=True, filter=_no_whiteouts)
        sys.stdout.buffer.flush()
    finally:
        if mnt:
            # The namespace dies with this process; unmount anyway so the directory can go.
            libc.umount2(mnt.encode(), 2)
            os.rmdir(mnt)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2], sys.argv[3:]))
