"""A container's files: `berth cp` in both directions and `berth export`."""

from __future__ import annotations

import os
import sys

from berth_cli.archives import write_archive

VERBS = ("cp", "export")


def add_parsers(add_verb) -> None:
    p = add_verb("cp", help="copy files between a container and the local filesystem")
    p.add_argument("source", help="CONTAINER:PATH, a local path, or - (a tar on stdin)")
    p.add_argument("destination", help="CONTAINER:PATH, a local path, or - (a tar to stdout)")

    p = add_verb("export", help="export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default="")
    p.add_argument("container")


def _split_ref(arg: str):
    """("container", "/path") for CONTAINER:PATH, None for a local path."""
    if arg.startswith(("/", ".", "~")) or ":" not in arg:
        return None
    name, _, path = arg.partition(":")
    if not name or "/" in name:
        return None
    return name, path or "/"


def cp(client, ns) -> int:
    src, dst = _split_ref(ns.source), _split_ref(ns.destination)
    if (src is None) == (dst is None):
        raise ValueError("copying between containers or between local paths is not supported: "
                         "one of source and destination must be CONTAINER:PATH")
    if src is not None:
        return _copy_out(client, src[0], src[1], ns.destination)
    return _copy_in(client, ns.source, dst[0], dst[1])


def _copy_out(client, container: str, path: str, dest: str) -> int:
    import tarfile
    import tempfile

    from berth.engine.v1 import engine_pb2 as pb
    stream = client.stub.CopyFromContainer(pb.CopyFromContainerRequest(
        id=container, path=path if path.startswith("/") else "/" + path))
    if dest == "-":
        for chunk in stream:
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
        return 0
    with tempfile.TemporaryFile() as f:
        for chunk in stream:
            f.write(chunk.data)
        f.seek(0)
        with tarfile.open(fileobj=f, mode="r:") as tar:
            members = tar.getmembers()
            if os.path.isdir(dest):
                target = dest
            else:
                parent = os.path.dirname(os.path.abspath(dest))
                if not os.path.isdir(parent):
                    raise ValueError(f"no such directory: {parent}")
                top = members[0].name.split("/")[0] if members else ""
                new = os.path.basename(os.path.abspath(dest))
                for m in members:
                    head, sep, rest = m.name.partition("/")
                    if head == top:
                        m.name = new + sep + rest
                target = parent
            # The "tar" filter refuses members that would land outside `target`.
            tar.extractall(target, members=members, filter="tar")
    return 0


def _copy_in(client, source: str, container: str, path: str) -> int:
    import tarfile
    import tempfile

    from berth.engine.v1 import engine_pb2 as pb
    with tempfile.TemporaryFile() as f:
        if source == "-":
            while data := sys.stdin.buffer.read(1 << 20):
                f.write(data)
        else:
            if not os.path.lexists(source):
                raise ValueError(f"could not find the file {source}: no such file or directory")
            with tarfile.open(fileobj=f, mode="w:") as tar:
                tar.add(source, arcname=os.path.basename(os.path.abspath(source)))
        f.seek(0)

        def requests():
            yield pb.CopyToContainerRequest(header=pb.CopyToContainerHeader(
                id=container, path=path if path.startswith("/") else "/" + path))
            while data := f.read(1 << 20):
                yield pb.CopyToContainerRequest(chunk=data)
        client.stub.CopyToContainer(requests())
    return 0


def export(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    return write_archive(ns.output, lambda: client.stub.ExportContainer(pb.ContainerRef(id=ns.container)))


HANDLERS = {"cp": cp, "export": export}
