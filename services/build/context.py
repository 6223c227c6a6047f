"""A build context on disk: the tar the client sent, unpacked, .dockerignore applied.

Nothing a Dockerfile names may reach outside it. Sources are resolved two ways,
both kept inside `root`:

    COPY ../x /        "../x" leaves the context lexically: refused by name
    COPY link /        link -> /etc/passwd: symlinks resolve as if root were "/",
                       so this reads <root>/etc/passwd, never the host's file

Extraction refuses members that would land outside root (absolute names, `..`,
links out) and device nodes; modes are kept as the client sent them, as docker
does, and ownership is whatever COPY --chown says (root by default).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zlib

from berth_docker import dockerignore
from services.common.errors import InvalidArgument
from services.common.paths import secure_join

DEFAULT_DOCKERFILE = "Dockerfile"


def extract(archive: str, root: str) -> None:
    """Unpack the context tar (plain, gzip, bzip2 or xz) at `archive` into `root`."""
    def keep_modes(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.ischr() or member.isblk() or member.isfifo():
            return None
        checked = tarfile.tar_filter(member, dest)
        return checked.replace(mode=member.mode, uid=0, gid=0, uname="", gname="", deep=False)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(root, filter=keep_modes)
    except tarfile.FilterError as exc:
        raise InvalidArgument(f"build context: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise InvalidArgument(f"build context: not a valid tar archive: {exc}") from None


def read_dockerfile(root: str, name: str) -> bytes:
    """The Dockerfile named (relative to the context) in the unpacked context."""
    rel = name or DEFAULT_DOCKERFILE
    path = inside(root, rel, what="Dockerfile")
    if not os.path.isfile(path) and not name:
        # docker's fallback for a context that spells it in lower case.
        alt = inside(root, "dockerfile", what="Dockerfile")
        if os.path.isfile(alt):
            path = alt
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InvalidArgument(
            f"Cannot locate specified Dockerfile: {rel}: no such file in the build context") from None


def apply_dockerignore(root: str) -> None:
    """Remove what .dockerignore excludes (and the Dockerfile and .dockerignore when it
    excludes them, as docker does), so that no step can see it."""
    path = os.path.join(root, ".dockerignore")
    if not os.path.isfile(path) or os.path.islink(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        matcher = dockerignore.Matcher(dockerignore.parse(f.read()))
    if not matcher.patterns:
        return
    # Bottom-up: a directory goes only when nothing it holds is kept.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if matcher.excluded(rel):
                os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isdir(full):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if matcher.excluded(rel) and not os.listdir(full):
                os.rmdir(full)


def inside(root: str, rel: str, what: str = "path") -> str:
    """`rel` in the context, refused when it climbs out, symlinks kept inside."""
    clean = posixpath.normpath("/" + rel.replace("\\", "/")) if rel.startswith("/") else \
        posixpath.normpath(rel)
    if clean == ".." or clean.startswith("../"):
        raise InvalidArgument(f"forbidden path outside the build context: {rel} ({what})")
    return secure_join(root, clean)


def glob(root: str, pattern: str) -> list[str]:
    """Context paths (relative) that a COPY/ADD source names: a path or a glob."""
    clean = posixpath.normpath(pattern.lstrip("/")) if pattern.strip("/") else "."
    if clean == ".." or clean.startswith("../"):
        raise InvalidArgument(f"forbidden path outside the build context: {pattern}")
    if not any(c in clean for c in "*?["):
        return [clean] if os.path.lexists(inside(root, clean)) or clean == "." else []
    parts = clean.split("/")
    found = [""]
    for part in parts:
        nxt = []
        for base in found:
            directory = inside(root, base) if base else root
            if not os.path.isdir(directory):
                continue
            if any(c in part for c in "*?["):
                for name in sorted(os.listdir(directory)):
                    if fnmatch.fnmatchcase(name, part):
                        nxt.append(f"{base}/{name}" if base else name)
            elif os.path.lexists(os.path.join(directory, part)):
                nxt.append(f"{base}/{part}" if base else part)
        found = nxt
    return found


def digest_paths(root: str, rels: list[str]) -> str:
    """sha256 over names, modes, link targets and contents of the paths (recursively):
    the part of a COPY's cache key that changes when a copied file does."""
    h = hashlib.sha256()
    for rel in rels:
        top = inside(root, rel) if rel != "." else root
        for path in _walk(top):
            st = os.lstat(path)
            name = os.path.relpath(path, root)
            h.update(f"{name}\0{st.st_mode:o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\n")
    return "sha256:" + h.hexdigest()


def _walk(top: str):
    yield top
    if os.path.isdir(top) and not os.path.islink(top):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                yield os.path.join(dirpath, name)


def remove(root: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
