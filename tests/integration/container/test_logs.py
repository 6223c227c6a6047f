"""Container output through the container service, byte for byte: attach from before
the start to the exit, Logs in bulk and by line, rotation, drivers, tail."""

from __future__ import annotations

import asyncio
import gzip
import os
import time

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.container import logfiles
from tests.integration.container.conftest import logs, new_id, run

MB50 = 50_000_000
SHORT = b"abcdefghijklmnopqrstuvwxyz\n"


def json_file(**opts) -> pb.LogConfig:
    return pb.LogConfig(driver="json-file", options=opts)


async def create(client, roots, script: str, name: str | None = None, **kw) -> str:
    id = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name=name or f"t{id[:10]}",
                                                           spec=roots.spec("sh", "-c", script, **kw)))
    return id


async def attach_and_start(client, id: str, stall: float = 0.0, on_stall=None):
    """Attaches before Start, starts, collects every output byte per stream, and the exit.
    With `stall`, reads nothing for that long after the first output."""
    got = {stdio_pb2.OUTPUT_STREAM_STDOUT: bytearray(), stdio_pb2.OUTPUT_STREAM_STDERR: bytearray()}
    order = []
    exit = None
    queue: asyncio.Queue = asyncio.Queue()
    queue.put_nowait(pb.AttachContainerRequest(start=pb.AttachStart(container_id=id)))

    async def requests():
        while (item := await queue.get()) is not None:
            yield item

    stream = client.AttachContainer(requests())
    stalled = False
    async for reply in stream:
        kind = reply.WhichOneof("msg")
        if kind == "attached":
            await client.StartContainer(pb.StartContainerRequest(id=id))
        elif kind == "output":
            assert exit is None, "output after the exit"
            got[reply.output.stream] += reply.output.data
            order.append(reply.output.stream)
            if stall and not stalled:
                stalled = True
                await asyncio.sleep(stall)
                if on_stall:
                    await on_stall()
        elif kind == "exit":
            exit = reply.exit
    queue.put_nowait(None)
    return got[stdio_pb2.OUTPUT_STREAM_STDOUT], got[stdio_pb2.OUTPUT_STREAM_STDERR], exit


async def bulk(client, id: str, **kw) -> tuple[bytes, bytes, int]:
    """Logs in bulk mode: (stdout, stderr, entries)."""
    out, err, n = bytearray(), bytearray(), 0
    async for e in (reply.chunk async for reply in client.GetContainerLogs(
            pb.GetContainerLogsRequest(id=id, tail=-1, chunked=True, **kw))):
        (out if e.stream == stdio_pb2.OUTPUT_STREAM_STDOUT else err).extend(e.data)
        n += 1
    return bytes(out), bytes(err), n


def rchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def file_contents(live: str) -> tuple[bytes, bytes]:
    """What the log files hold, read directly: (stdout, stderr) joined in file order."""
    out, err = bytearray(), bytearray()
    # No live file when the last rotation came as conmon exited (before a reopen).
    paths = [p for _, p in logfiles.segments(live)] + ([live] if os.path.exists(live) else [])
    for p in paths:
        with (gzip.open(p) if p.endswith(".gz") else open(p, "rb")) as f:
            data = f.read()
        for rec in data.split(b"\n")[:-1]:
            ts, stream, tag, content = rec.split(b" ", 3)
            (out if stream == b"stdout" else err).extend(content + (b"\n" if tag == b"F" else b""))
    return bytes(out), bytes(err)


async def test_50mb_of_short_lines_every_byte_by_attach_and_by_logs_and_tail_reads_little(
        client, roots, service):
    want = (SHORT * (MB50 // len(SHORT) + 1))[:MB50]
    id = await create(client, roots, f"yes abcdefghijklmnopqrstuvwxyz | head -c {MB50}",
                      log_config=json_file())
    t = time.monotonic()
    out, err, exit = await attach_and_start(client, id)
    print(f"Attach from before Start: {len(out)} bytes in {time.monotonic() - t:.2f} s")
    assert exit is not None and exit.exit_code == 0
    assert len(out) == MB50 and out == want and err == b""

    t = time.monotonic()
    logged, logged_err, entries = await bulk(client, id)
    took = time.monotonic() - t
    print(f"Logs (chunked) of a {MB50}-byte log: {len(logged)} bytes in {took:.2f} s, {entries} entries")
    assert logged == want and logged_err == b""
    assert entries < 200  # bulk: about 1 MiB an entry, not one per line

    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.log_size > MB50 and dict(c.spec.log_config.options) == {
        "compress": "false", "max-file": "1", "max-size": "-1"}
    before = rchar(service.proc.pid)
    last = [e.chunk async for e in client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, tail=3))]
    read = rchar(service.proc.pid) - before
    assert [e.data for e in last] == [SHORT] * 2 + [want[-(MB50 % len(SHORT)):]]
    # Read backwards from the end: a few blocks, not the 130 MB file.
    assert read < 2_000_000, read
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_50mb_without_a_newline_every_byte_by_attach_and_by_logs(client, roots):
    id = await create(client, roots, f"head -c {MB50} /dev/zero | tr '\\0' a", log_config=json_file())
    out, err, exit = await attach_and_start(client, id)
    assert exit.exit_code == 0 and out == b"a" * MB50 and err == b""
    logged, _, _ = await bulk(client, id)
    assert logged == b"a" * MB50
    # By line: one line without an end, in pieces no message is too big for.
    pieces = [e.chunk async for e in client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, tail=-1))]
    assert b"".join(e.data for e in pieces) == b"a" * MB50
    assert max(len(e.data) for e in pieces) <= 2 << 20
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_binary_output_and_mixed_streams_stay_exact_and_in_order(client, roots):
    every = bytes(range(256))
    spec_mounts = roots.rootfs()
    upper = next(o for o in spec_mounts[0].options if o.startswith("upperdir=")).split("=", 1)[1]
    with open(os.path.join(upper, "all.bin"), "wb") as f:
        f.write(every * 64)
    id = new_id()
    script = "for i in $(seq 1 200); do cat /all.bin; echo out$i; cat /all.bin >&2; echo err$i >&2; done"
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name=f"b{id[:8]}", spec=pb.Spec(
        rootfs=spec_mounts, process=pb.Process(args=["sh", "-c", script], cwd="/", env=["PATH=/bin"]),
        log_config=json_file())))
    out, err, exit = await attach_and_start(client, id)
    want_out = b"".join(every * 64 + b"out%d\n" % i for i in range(1, 201))
    want_err = b"".join(every * 64 + b"err%d\n" % i for i in range(1, 201))
    assert exit.exit_code == 0 and out == want_out and err == want_err
    logged_out, logged_err, _ = await bulk(client, id)
    assert (logged_out, logged_err) == (want_out, want_err)
    by_line = await logs(client, id)
    assert b"".join(e.data for e in by_line if e.stream == stdio_pb2.OUTPUT_STREAM_STDOUT) == want_out
    assert b"".join(e.data for e in by_line if e.stream == stdio_pb2.OUTPUT_STREAM_STDERR) == want_err
    only_err, _, _ = await bulk(client, id, stderr=True)
    assert only_err == b""  # the stream filter: nothing of stdout comes
    _, only_err, _ = await bulk(client, id, stderr=True)
    assert only_err == want_err
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_a_reader_that_stalls_slows_the_container_and_loses_nothing(client, roots):
    total = 30_000_000
    want = (SHORT * (total // len(SHORT) + 1))[:total]
    id = await create(client, roots, f"yes abcdefghijklmnopqrstuvwxyz | head -c {total}; echo done >&2",
                      log_config=json_file())
    states = []

    async def check():
        states.append(((await client.GetContainer(pb.GetContainerRequest(id=id))).container).status)

    out, err, exit = await attach_and_start(client, id, stall=3.0, on_stall=check)
    # While the reader stalled, conmon waited for it and the container for conmon.
    assert states == [pb.STATUS_RUNNING]
    assert exit.exit_code == 0 and out == want and err == b"done\n"
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_rotation_keeps_max_file_files_and_logs_returns_exactly_what_they_hold(client, roots):
    id = await create(client, roots, "for i in $(seq 1 40000); do echo line $i; done; printf end",
                      log_config=json_file(**{"max-size": "64k", "max-file": "3"}))
    out, _, exit = await attach_and_start(client, id)
    want = b"".join(b"line %d\n" % i for i in range(1, 40001)) + b"end"
    assert exit.exit_code == 0 and out == want
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    rotated = logfiles.segments(c.log_path)
    assert len(rotated) == 2  # max-file counts the live file
    assert all(os.path.getsize(p) >= 64 * 1024 for _, p in rotated)
    held_out, held_err = file_contents(c.log_path)
    logged, logged_err, _ = await bulk(client, id)
    assert logged == held_out and logged_err == held_err == b""
    # The newest output is kept whole, the oldest was rotated away.
    assert want.endswith(logged) and logged.endswith(b"end") and len(logged) < len(want)
    # (The oldest kept file may begin inside a line: conmon cuts lines at its 8 KiB
    # reads, and a rotation falls between records, not between lines.)
    by_line = [e.data for e in await logs(client, id)]
    assert b"".join(by_line) == held_out
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_follow_across_rotations_and_compression_misses_nothing(client, roots):
    id = await create(client, roots, "for i in $(seq 1 30000); do echo line $i; echo e$i >&2; done",
                      log_config=json_file(**{"max-size": "32k", "max-file": "1000", "compress": "true"}))
    stream = client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, follow=True, tail=-1, chunked=True))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    out, err = bytearray(), bytearray()
    async for e in (reply.chunk async for reply in stream):
        (out if e.stream == stdio_pb2.OUTPUT_STREAM_STDOUT else err).extend(e.data)
    assert bytes(out) == b"".join(b"line %d\n" % i for i in range(1, 30001))
    assert bytes(err) == b"".join(b"e%d\n" % i for i in range(1, 30001))
    # Wait returns once a rotation under way at the exit (compressing) is done.
    await client.WaitContainer(pb.WaitContainerRequest(id=id))
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    rotated = logfiles.segments(c.log_path)
    # Rotated while followed (how often depends on how far the writer outruns the checks).
    assert rotated and all(p.endswith(".gz") for _, p in rotated)
    assert file_contents(c.log_path) == (bytes(out), bytes(err))
    assert (await bulk(client, id))[:2] == (bytes(out), bytes(err))
    assert c.log_size == logfiles.total_size(c.log_path)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_runs_of_a_restarted_container_append_and_rotate(client, roots):
    id = await run(client, roots, "sh", "-c", "n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; "
                   "yes 0123456789 | head -n 5000; echo end $n",
                   log_config=json_file(**{"max-size": "40k", "max-file": "100"}))
    for n in (1, 2, 3):
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
        if n < 3:
            await client.StartContainer(pb.StartContainerRequest(id=id))
    logged, _, _ = await bulk(client, id)
    run_out = lambda n: b"0123456789\n" * 5000 + b"end %d\n" % n  # noqa: E731
    assert logged == run_out(1) + run_out(2) + run_out(3)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_default_driver_is_json_file_capped_and_rotated(client, roots):
    id = await run(client, roots, "true")
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.spec.log_config.driver == "json-file"
    assert dict(c.spec.log_config.options) == {"max-size": "20m", "max-file": "5", "compress": "false"}
    await client.WaitContainer(pb.WaitContainerRequest(id=id))
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_driver_none_keeps_no_file_refuses_logs_and_still_attaches(client, roots):
    id = await create(client, roots, "echo hello; echo oops >&2", log_config=pb.LogConfig(driver="none"))
    out, err, exit = await attach_and_start(client, id)
    assert (out, err, exit.exit_code) == (b"hello\n", b"oops\n", 0)
    with pytest.raises(errors.NotImplementedYet, match="configured logging driver does not support reading"):
        await logs(client, id)
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.log_path == "" and c.log_size == 0
    bundle = os.path.join(roots.data_root, "container", "bundles", id)
    assert not [n for n in os.listdir(bundle) if n.startswith("ctr.log")]
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


@pytest.mark.parametrize("cfg,text", [
    (pb.LogConfig(driver="syslog"), "no log driver named 'syslog'"),
    (pb.LogConfig(driver="json-file", options={"labels": "a"}), "unknown log opt 'labels' for json-file"),
    (pb.LogConfig(driver="none", options={"max-size": "1m"}), "unknown log opt 'max-size' for none"),
    (pb.LogConfig(driver="json-file", options={"max-size": "ten"}), "invalid max-size"),
    (pb.LogConfig(driver="local", options={"max-file": "0"}), "max-file cannot be less than 1"),
])
async def test_bad_log_config_is_refused_and_creates_nothing(client, roots, cfg, text):
    id = new_id()
    with pytest.raises(errors.InvalidArgument, match=text):
        await client.CreateContainer(
            pb.CreateContainerRequest(id=id, name="bad", spec=roots.spec("true", log_config=cfg)))
    assert (await client.ListContainers(pb.ListContainersRequest())).containers == []
