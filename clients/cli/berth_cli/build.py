"""`berth build`: a directory (or a tar on stdin) sent as a build context, and the
build's progress printed the way BuildKit's plain output reads:

    #1 [stage-0 1/3] FROM busybox
    #1 DONE 0.0s
    #2 [stage-0 2/3] RUN echo hi > /x
    #2 0.412 hi
    #2 DONE 0.5s
    #3 [stage-0 3/3] COPY file /file
    #3 CACHED
    #4 writing image sha256:9f8e... done
    #4 naming to docker.io/library/app:latest done

The context is packed here with .dockerignore applied (what it excludes is never
sent); the Dockerfile and .dockerignore always go, and the engine applies the
same rules to them.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from berth_cli.tarheaders import tar_header

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
    from collections.abc import Iterator

VERBS = ("build",)
CHUNK = 1 << 20


def add_parsers(add_verb) -> None:
    p = add_verb("build", help="build an image from a Dockerfile")
    p.add_argument("path", help="the context: a directory, or - for a tar archive on stdin")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag for the image (repeatable)")
    p.add_argument("-f", "--file", default="", help="the Dockerfile (default PATH/Dockerfile; - for stdin)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--no-cache", action="store_true", help="re-use nothing from the build cache")
    p.add_argument("--pull", action="store_true", help="pull every FROM image, even when stored")
    p.add_argument("--target", default="", help="build up to this stage")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--network", default="", help="network of RUN steps: default, host, none or a name")
    p.add_argument("--platform", default="")
    p.add_argument("--cache-from", action="append", default=[], metavar="IMAGE")
    p.add_argument("--add-host", action="append", default=[], metavar="HOST:IP")
    p.add_argument("--shm-size", default="", help="size of /dev/shm of RUN steps, e.g. 64m")
    p.add_argument("--iidfile", default="", help="write the image id to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--progress", default="auto", choices=("auto", "plain", "quiet"))


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not key:
            raise ValueError(f"invalid {flag} {v!r}: use KEY=VALUE")
        out[key] = value if eq else os.environ.get(key, "")
    return out


def _pack(root: str, dockerfile_rel: str | None) -> Iterator[bytes]:
    """The context directory as a tar stream, in pieces of about CHUNK bytes, made
    while it is sent (so the engine receives the start of it while the rest is read)."""
    matcher = None
    ignore = os.path.join(root, ".dockerignore")
    if os.path.isfile(ignore):
        from berth_docker import dockerignore
        with open(ignore, encoding="utf-8", errors="replace") as f:
            matcher = dockerignore.Matcher(dockerignore.parse(f.read()))
    always = {".dockerignore", dockerfile_rel or "Dockerfile"}
    out = bytearray()
    linked: dict[tuple[int, int], str] = {}   # files with more than one name: the first sent
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if matcher is not None and matcher.excluded(rel) and rel not in always:
                # An excluded directory is still walked when a ! pattern may
                # re-include something in it; it is not sent itself.
                if name in dirnames and not matcher.exceptions:
                    dirnames.remove(name)
                continue
            st = os.lstat(full)
            first = linked.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if stat.S_ISREG(st.st_mode) and first is not None:
                out += tar_header(rel, st, b"1", link=first)   # a hard link, as tarfile sends it
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    linked[(st.st_dev, st.st_ino)] = rel
                out += tar_header(rel, st, b"0", size=st.st_size)
                with open(full, "rb") as f:
                    left = st.st_size
                    while left:
                        data = f.read(min(left, CHUNK))
                        if not data:
                            raise ValueError(f"{full} became shorter while it was being sent")
                        out += data
                        left -= len(data)
                        if len(out) >= CHUNK:
                            yield bytes(out)
                            out.clear()
                out += bytes(-st.st_size % 512)
            elif stat.S_ISDIR(st.st_mode):
                out += tar_header(rel + "/", st, b"5")
            elif stat.S_ISLNK(st.st_mode):
                out += tar_header(rel, st, b"2", link=os.readlink(full))
            elif stat.S_ISFIFO(st.st_mode):
                out += tar_header(rel, st, b"6")
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out += tar_header(rel, st, b"3" if stat.S_ISCHR(st.st_mode) else b"4", dev=st.st_rdev)
            # Sockets have no tar form (tarfile leaves them out too).
            if len(out) >= CHUNK:
                yield bytes(out)
                out.clear()
    out += bytes(1024)   # the two zero blocks that end an archive
    yield bytes(out)


def build(client, ns) -> int:
    # Sent and read with berth_cli.wire's messages, as run and create: protobuf (upb, the
    # descriptors, the well-known types) is never loaded, which was a good part of the
    # CLI's own time for a small build.
    from berth_cli import messages
    with messages.wire_classes():
        return _build(client, ns)


def _build(client, ns) -> int:
    from berth.types.v1 import build_pb2
    from berth_cli import wire
    from berth_cli.archives import BytesMessage
    from berth_docker.units import parse_bytes

    dockerfile_rel, dockerfile_content = "", b""
    if ns.file == "-":
        dockerfile_content = sys.stdin.buffer.read()
    elif ns.file and ns.path != "-":
        full = os.path.abspath(ns.file if os.path.isabs(ns.file) or os.path.exists(ns.file)
                               else os.path.join(ns.path, ns.file))
        rel = os.path.relpath(full, os.path.abspath(ns.path))
        if rel.startswith(".."):
            with open(full, "rb") as f:
                dockerfile_content = f.read()
        else:
            dockerfile_rel = rel
    elif ns.file:
        dockerfile_rel = ns.file
    options = build_pb2.BuildOptions(
        dockerfile=dockerfile_rel, dockerfile_content=dockerfile_content, tags=ns.tag,
        build_args=_pairs(ns.build_arg, "--build-arg"), no_cache=ns.no_cache, pull=ns.pull,
        target=ns.target, labels=_pairs(ns.label, "--label"), network_mode=ns.network,
        platform=ns.platform, cache_from=ns.cache_from, extra_hosts=ns.add_host,
        shm_size=parse_bytes(ns.shm_size) if ns.shm_size else 0)

    if ns.path == "-":
        if ns.file == "-":
            raise ValueError("cannot read both the context and the Dockerfile from stdin")
        stdin = sys.stdin.buffer
        chunks: Iterator[bytes] = iter(lambda: stdin.read(CHUNK), b"")
    else:
        if not os.path.isdir(ns.path):
            raise ValueError(f"unable to prepare context: path {ns.path!r} not found")
        chunks = _pack(ns.path, dockerfile_rel or None)

    failed: list[Exception] = []

    def requests():
        yield first
        try:
            for chunk in chunks:
                yield BytesMessage(2, chunk)  # BuildImageRequest.chunk, sent as it is
        except (OSError, ValueError) as exc:
            # The context is sent while it is read: a file that cannot be read ends the
            # call unfinished, so the engine never builds from part of a context.
            failed.append(exc)
            call.cancel()
    quiet = ns.quiet or ns.progress == "quiet"
    printer = _Plain(quiet)
    result = None
    first = wire.request("BuildImageRequest", options=options)
    call = client.stream("BuildImage", requests())
    try:
        for reply in call:
            if reply.event.HasField("result"):
                result = reply.event.result
            printer.event(reply.event)
    except Exception:
        if failed:
            raise ValueError(f"unable to prepare context: {failed[0]}") from None
        raise
    if result is None:
        raise ValueError("the build ended without a result")
    printer.finish(result)
    if ns.iidfile:
        with open(ns.iidfile, "w") as f:
            f.write(result.image_id)
    if quiet:
        print(result.image_id)
    return 0


class _Plain:
    """BuildKit's plain progress format, step by step."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.started: dict[int, float] = {}
        self.partial: dict[int, bytes] = {}
        self.last = 0

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def event(self, event) -> None:
        from berth.types.v1 import build_pb2 as b  # the enum's numbers (wire's, see build)
        kind = event.WhichOneof("event")
        if kind == "warning":
            self._print(event.warning)
        elif kind == "output":
            n = event.output.number
            data = self.partial.pop(n, b"") + event.output.data
            *lines, rest = data.split(b"\n")
            if rest:
                self.partial[n] = rest
            since = time.monotonic() - self.started.get(n, time.monotonic())
            for line in lines:
                self._print(f"#{n} {since:.3f} {line.decode('utf-8', 'replace')}")
        elif kind == "step":
            s = event.step
            self.last = max(self.last, s.number)
            if s.state == b.BUILD_STEP_STATE_STARTED and not s.container_id:
                self.started[s.number] = time.monotonic()
                self._print(f"#{s.number} [{s.stage} {s.index}/{s.count}] {s.instruction}")
            elif s.state == b.BUILD_STEP_STATE_CACHED:
                self._print(f"#{s.number} CACHED")
            elif s.state == b.BUILD_STEP_STATE_DONE:
                if s.number in self.partial:
                    self._print(f"#{s.number} {self.partial.pop(s.number).decode('utf-8', 'replace')}")
                secs = s.elapsed.seconds + s.elapsed.nanos / 1e9
                self._print(f"#{s.number} DONE {secs:.1f}s")
            elif s.state == b.BUILD_STEP_STATE_FAILED:
                self._print(f"#{s.number} ERROR")

    def finish(self, result) -> None:
        n = self.last + 1
        self._print(f"#{n} writing image {result.image_id} done")
        for tag in result.tags:
            self._print(f"#{n} naming to {tag} done")


HANDLERS = {"build": build}
