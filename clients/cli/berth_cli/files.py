"""A container's files: `berth cp` in both directions and `berth export`."""

from __future__ import annotations

import os
import stat
import sys

from berth_cli.archives import CHUNK, write_archive
from berth_cli.tarheaders import read_plain_file

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
    from berth.engine.v1 import engine_pb2 as pb
    from berth_docker.tarstream import ForwardReader
    stream = client.channel.call("/berth.engine.v1.EngineService/CopyFromContainer", [pb.CopyFromContainerRequest(
        id=container, path=path if path.startswith("/") else "/" + path)], _ArchiveChunk)
    if dest == "-":
        out = sys.stdout.buffer
        for chunk in _pieces(stream):
            out.write(chunk)
        out.flush()
        return 0
    if os.path.isdir(dest):
        target, new = dest, None
    else:
        target = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(target):
            raise ValueError(f"no such directory: {target}")
        new = os.path.basename(os.path.abspath(dest))
    # Extracted as it arrives, not spooled to a file first.
    reader = ForwardReader(_pieces(stream))
    first = reader.read(512)
    top = None
    plain = read_plain_file(first)
    if plain is not None and not os.path.islink(os.path.join(target, new or plain.name)):
        _write_plain_file(reader, plain, os.path.join(target, new or plain.name))
        first, top = reader.read(512), plain.name
        if not first.strip(b"\0"):  # the archive's end
            reader.drain()
            return 0
    from berth_cli.archives import prefetched
    with _tar_class().open(fileobj=ForwardReader(prefetched(_chain(first, reader.rest()))), mode="r:",
                           copybufsize=CHUNK) as tar:
        for m in tar:
            if new is not None:
                head, sep, rest = m.name.partition("/")
                if top is None:
                    top = head
                if head == top:
                    m.name = new + sep + rest
            # The "tar" filter refuses members that would land outside `target`.
            tar.extract(m, target, filter="tar")
    return 0


def _chain(first, rest):
    yield first
    yield from rest


def _write_plain_file(reader, plain, targetpath: str) -> None:
    """A single regular file (the common `cp` out) written as tarfile's extract with the "tar"
    filter writes it, without tarfile: its data straight from the pieces it arrived in, then
    its owner (as root: by name where this host knows it), mode and times."""
    from berth_docker.tarstream import write_member
    with open(targetpath, "wb", buffering=0) as target:
        try:
            write_member(reader, 512, plain.size, target.fileno())
        except EOFError:
            raise ValueError("the archive ended inside the file's data") from None
    reader.seek(512 + plain.size + (-plain.size % 512))
    if os.geteuid() == 0:
        import grp
        import pwd
        try:
            gid = grp.getgrnam(plain.gname)[2] if plain.gname else plain.gid
        except KeyError:
            gid = plain.gid
        try:
            uid = pwd.getpwnam(plain.uname)[2] if plain.uname else plain.uid
        except KeyError:
            uid = plain.uid
        try:
            os.chown(targetpath, uid, gid)
        except OSError:
            pass  # as tarfile: an owner that cannot be set is not an error
    try:
        os.chmod(targetpath, plain.mode & 0o755)
        os.utime(targetpath, (plain.mtime, plain.mtime))
    except OSError:
        pass


class _ArchiveChunk:
    """CopyFromContainerResponse as the response type of the call: each message's bytes as a
    view of the message (berth_docker.tarstream.bytes_field), not parsed and copied out;
    a message that came in several frames as a tuple of views of them, not joined."""

    @staticmethod
    def FromString(raw):
        from berth_docker.tarstream import bytes_field
        data = bytes_field(raw, 1)
        if data is None:
            from berth.engine.v1 import engine_pb2 as pb
            return pb.CopyFromContainerResponse.FromString(raw).data
        return data

    @staticmethod
    def FromPieces(pieces: tuple):
        first, total = pieces[0], sum(len(p) for p in pieces)
        # The field's tag and length (at most 11 bytes), read from the first piece.
        n, shift, at = 0, 0, 1
        while 0 < len(first) and first[0] == 0x0A and at < min(len(first), 11):
            byte = first[at]
            at += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if at + n == total:
                    return (first[at:], *pieces[1:])
                break
        # Anything else (another field, a header split across frames): as protobuf reads it.
        return (_ArchiveChunk.FromString(b"".join(pieces)),)


def _pieces(stream):
    """The archive's bytes as the views the chunks arrived in."""
    for chunk in stream:
        if type(chunk) is tuple:
            yield from chunk
        else:
            yield chunk


def _tar_class():
    """tarfile's TarFile, but a regular member's data goes from the pieces it arrived in
    straight to its file, rather than read into new buffers and copied again."""
    import tarfile

    from berth_docker.tarstream import write_member

    class StreamedTar(tarfile.TarFile):
        def makefile(self, tarinfo, targetpath):
            if tarinfo.sparse is not None:
                return super().makefile(tarinfo, targetpath)
            with open(targetpath, "wb", buffering=0) as target:
                try:
                    write_member(self.fileobj, tarinfo.offset_data, tarinfo.size, target.fileno())
                except EOFError:
                    raise tarfile.ReadError("unexpected end of data") from None
    return StreamedTar


def _copy_in(client, source: str, container: str, path: str) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli.archives import BytesMessage, chunks, file_tar, tar_chunks
    if source == "-":
        data = chunks(sys.stdin.buffer)
    else:
        if not os.path.lexists(source):
            raise ValueError(f"could not find the file {source}: no such file or directory")
        arcname = os.path.basename(os.path.abspath(source))
        try:
            # A regular file (not a link to one: that is copied as the link) goes from the
            # file to the socket; anything else is archived by tarfile.
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode):
            data = file_tar(fd, arcname)
        else:
            if fd >= 0:
                os.close(fd)
            fd = -1
            data = tar_chunks(source, arcname)

    def requests():
        yield pb.CopyToContainerRequest(header=pb.CopyToContainerHeader(
            id=container, path=path if path.startswith("/") else "/" + path))
        for piece in data:
            yield BytesMessage(2, piece)  # a CopyToContainerRequest chunk
    try:
        client.stub.CopyToContainer(requests())
    finally:
        if fd >= 0:
            os.close(fd)
    return 0


def export(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    return write_archive(
        ns.output, lambda: client.stub.ExportContainer(pb.ExportContainerRequest(id=ns.container)))


HANDLERS = {"cp": cp, "export": export}
