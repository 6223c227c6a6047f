"""The CLI's archive chunks, serialized without protobuf, are the messages protobuf makes."""

import os

import pytest

from berth.engine.v1 import engine_pb2
from berth_cli.archives import BytesMessage
from berth_cli.files import _ArchiveChunk


@pytest.mark.parametrize("n", [1, 127, 128, 16384, (1 << 20) + 1])
def test_chunks_are_protobufs_bytes(n):
    data = bytes(range(256)) * (n // 256) + b"q" * (n % 256)
    assert BytesMessage(1, data).SerializeToString() == engine_pb2.LoadImagesRequest(data=data).SerializeToString()
    assert BytesMessage(2, data).SerializeToString() == engine_pb2.CopyToContainerRequest(chunk=data).SerializeToString()
    raw = engine_pb2.CopyFromContainerResponse(data=data).SerializeToString()
    assert bytes(_ArchiveChunk.FromString(raw)) == data


def test_an_empty_or_other_response_reads_as_protobuf_does():
    assert bytes(_ArchiveChunk.FromString(b"")) == b""
    with_unknown = engine_pb2.CopyFromContainerResponse(data=b"ab").SerializeToString() + b"\x10\x01"
    assert bytes(_ArchiveChunk.FromString(with_unknown)) == b"ab"


@pytest.mark.parametrize("size", [0, 1, 511, 512, (1 << 20) + 3])
@pytest.mark.parametrize("name", ["f.bin", "ü-" + "n" * 120])
def test_a_files_tar_is_what_tarfile_reads(tmp_path, size, name):
    """archives.file_tar (cp of one file): the pieces, its ranges read, are a tar holding
    the file, its mode and its owner, and nothing else."""
    import io
    import tarfile

    from berth_cli.archives import file_tar
    from berth_cli.transport import FileRange
    content = os.urandom(size)
    path = tmp_path / "src"
    path.write_bytes(content)
    os.chmod(path, 0o751)
    os.chown(path, 1234, 3_000_000)  # a gid past ustar's field: carried in a PAX header
    fd = os.open(path, os.O_RDONLY)
    try:
        archive = b"".join(p.read() if isinstance(p, FileRange) else p for p in file_tar(fd, name))
    finally:
        os.close(fd)
    assert len(archive) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        assert [(m.name, m.size, m.mode, m.uid, m.gid, m.isreg()) for m in members] == [
            (name, size, 0o751, 1234, 3_000_000, True)]
        assert tar.extractfile(members[0]).read() == content


def _tar_of(info, data=b""):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def test_a_plain_files_header_reads_as_tarfile_reads_it_and_anything_else_is_left_to_tarfile():
    import tarfile

    from berth_cli.tarheaders import read_plain_file
    info = tarfile.TarInfo("big.bin")
    info.size, info.mode, info.uid, info.gid, info.mtime = 3, 0o4751, 12, 34, 1_700_000_000
    info.uname, info.gname = "someone", "staff"
    archive = _tar_of(info, b"abc")
    plain = read_plain_file(archive[:512])
    assert (plain.name, plain.size, plain.mode, plain.uid, plain.gid, plain.mtime, plain.uname, plain.gname) == (
        "big.bin", 3, 0o4751, 12, 34, 1_700_000_000, "someone", "staff")
    assert read_plain_file(archive[:511] + b"x") is None  # its checksum no longer holds
    long = tarfile.TarInfo("n" * 150)  # a PAX header first
    directory = tarfile.TarInfo("d")
    directory.type = tarfile.DIRTYPE
    nested = tarfile.TarInfo("d/f")
    link = tarfile.TarInfo("l")
    link.type, link.linkname = tarfile.SYMTYPE, "big.bin"
    for other in (long, directory, nested, link):
        assert read_plain_file(_tar_of(other)[:512]) is None, other.name


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 700, 5000])
def test_a_chunk_across_frames_reads_as_its_bytes_in_views(cut):
    """A CopyFromContainerResponse that arrived in pieces (frames) cut anywhere: its data,
    as views of the pieces where the field's header is whole in the first."""
    data = os.urandom(10_000)
    raw = engine_pb2.CopyFromContainerResponse(data=data).SerializeToString()
    pieces = (memoryview(raw)[:cut], memoryview(raw)[cut:cut + 3000], memoryview(raw)[cut + 3000:])
    got = _ArchiveChunk.FromPieces(pieces)
    assert b"".join(got) == data
    if cut >= 3:  # the tag and the two bytes of the length in the first piece
        assert got[1].obj is raw  # not copied
    with_unknown = engine_pb2.CopyFromContainerResponse(data=b"ab").SerializeToString() + b"\x10\x01"
    assert b"".join(_ArchiveChunk.FromPieces((with_unknown[:2], with_unknown[2:]))) == b"ab"
