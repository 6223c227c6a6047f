"""`logs --since/--until` by seeking: exact at the boundaries, with lines in pieces
(P records) open across the seek point and across rotated and compressed files,
compared with what reading every record gives."""

from __future__ import annotations

import gzip
import os
import random
import time

import pytest

from services.container import logs

BASE = 1_700_000_000 * 1_000_000_000


def stamp(t: int) -> bytes:
    sec, ns = divmod(t, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns:09d}+00:00").encode()


def make_records(n: int, seed: int, stderr_rare: bool = False) -> list[tuple[int, str, bool, bytes]]:
    rnd = random.Random(seed)
    out, t = [], BASE
    for k in range(n):
        t += rnd.choice((1, 7, 1000, 123_456))  # some records share no time, none go back
        stream = "stderr" if (rnd.random() < (0.002 if stderr_rare else 0.3)) else "stdout"
        if stderr_rare and k == 3:
            stream = "stderr"
        partial = rnd.random() < 0.3
        content = bytes(rnd.randrange(32, 127) for _ in range(rnd.randrange(0, 40)))
        out.append((t, stream, partial, content))
    return out


def encode(recs) -> bytes:
    return b"".join(stamp(t) + b" " + s.encode() + (b" P " if p else b" F ") + c + b"\n"
                    for t, s, p, c in recs)


def write(tmp_path, recs, cuts: list[int], gz: set[int]) -> str:
    """The records in len(cuts)+1 files: the rotated ones (n = 1..) then the live one."""
    live = str(tmp_path / "ctr.log")
    bounds = [0] + cuts + [len(recs)]
    for k in range(len(bounds) - 1):
        data = encode(recs[bounds[k]:bounds[k + 1]])
        path = live if k == len(bounds) - 2 else f"{live}.{k + 1}"
        if k in gz:
            with gzip.open(path + ".gz", "wb") as f:
                f.write(data)
        else:
            with open(path, "wb") as f:
                f.write(data)
    return live


def expected(recs, since: int, until: int, streams=("stdout", "stderr")):
    """Line mode by brute force: a line is admitted by its first piece's time."""
    flt = logs.LogFilter(since_ns=since, until_ns=until)
    open_: dict[str, tuple[int, bytearray]] = {}
    out = []
    for t, s, p, c in recs:
        if s not in streams:
            continue
        start, pieces = open_.get(s, (t, bytearray()))
        pieces += c
        if p:
            open_[s] = (start, pieces)
            continue
        open_.pop(s, None)
        if flt.in_time(start):
            out.append((s, start, bytes(pieces) + b"\n"))
    for s, (start, pieces) in sorted(open_.items(), key=lambda kv: kv[1][0]):
        if flt.in_time(start) and pieces:
            out.append((s, start, bytes(pieces)))
    return out


def by_stream(lines) -> dict[str, bytes]:
    got: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    for x in lines:
        got[x[0] if isinstance(x, tuple) else x.stream] += x[2] if isinstance(x, tuple) else x.data
    return {k: bytes(v) for k, v in got.items()}


@pytest.mark.parametrize("layout", ["one", "rotated", "compressed"])
def test_since_until_by_seeking_match_reading_everything(tmp_path, layout):
    recs = make_records(12_000, seed=len(layout))
    cuts = {"one": [], "rotated": [4_000, 8_000, 10_000], "compressed": [4_000, 8_000, 10_000]}[layout]
    gz = {0, 1, 2} if layout == "compressed" else set()
    live = write(tmp_path, recs, cuts, gz)
    times = [t for t, *_ in recs]
    rnd = random.Random(7)
    # Exactly on records (also the first of a rotated file), just before and after them.
    points = [times[0], times[-1], times[4_000], times[8_000], times[10_000]] + \
        [times[rnd.randrange(len(times))] + d for _ in range(4) for d in (-1, 0, 1)]
    for since in points:
        for until in (0, since + 1, since + 5_000_000):
            want = expected(recs, since, until)
            flt = logs.LogFilter(since_ns=since, until_ns=until)
            got = [(x.stream, x.time_ns, x.data) for x in logs.read_all(live, flt)]
            assert got == want, (since, until)
            bulk = logs.read_all(live, flt, chunked=True)
            assert by_stream(bulk) == by_stream(want), (since, until)
            if until:
                # --tail with --until: the backward count starts from the seek to --until.
                flt = logs.LogFilter(tail=5, until_ns=until)
                got = [(x.stream, x.time_ns, x.data) for x in logs.read_all(live, flt)]
                assert got == expected(recs, 0, until)[-5:], until


def test_a_line_in_pieces_open_at_the_seek_point_is_refused_whole(tmp_path):
    """stdout's line began before --since and ends after it; stderr's began after."""
    recs = [(BASE + i, "stdout", False, b"x" * 30) for i in range(20_000)]
    mid = BASE + 10_000
    recs[9_990] = (BASE + 9_990, "stdout", True, b"old-")
    for i in range(9_991, 10_010):
        recs[i] = (BASE + i, "stdout", True, b"piece-")
    recs[10_010] = (BASE + 10_010, "stdout", False, b"end")
    recs[10_005] = (BASE + 10_005, "stderr", True, b"new-")
    recs[10_020] = (BASE + 10_020, "stderr", False, b"err")
    live = write(tmp_path, recs, [], set())
    got = logs.read_all(live, logs.LogFilter(since_ns=mid))
    assert [x.data for x in got if x.stream == "stderr"] == [b"new-err\n"]
    assert all(b"piece" not in x.data and b"end" not in x.data for x in got)
    assert [(x.stream, x.time_ns, x.data) for x in got] == expected(recs, mid, 0)


def test_since_near_the_end_reads_little_and_a_silent_stream_costs_nothing(tmp_path):
    recs = make_records(200_000, seed=3, stderr_rare=True)
    recs = [(t, "stdout", p, c) if k > 10 else (t, s, p, c) for k, (t, s, p, c) in enumerate(recs)]
    live = write(tmp_path, recs, [], set())
    size = os.path.getsize(live)
    stats: dict = {}
    since = recs[-100][0]
    got = logs.read_all(live, logs.LogFilter(since_ns=since), stats=stats)
    assert [(x.stream, x.time_ns, x.data) for x in got] == expected(recs, since, 0)
    assert stats["bytes_read"] < size // 20


def test_until_stops_reading_once_no_admitted_line_is_open(tmp_path):
    recs = [(BASE + i, "stdout", False, b"y" * 30) for i in range(100_000)]
    live = write(tmp_path, recs, [], set())
    stats: dict = {}
    got = logs.read_all(live, logs.LogFilter(until_ns=BASE + 100), stats=stats)
    assert len(got) == 100
    assert stats["bytes_read"] <= 2 * logs.BLOCK


def test_follow_with_since_starts_at_the_seek(tmp_path):
    recs = make_records(20_000, seed=11)
    live = write(tmp_path, recs, [7_000], {0})
    since = recs[12_345][0]
    f = logs._Follower(live, logs.LogFilter(since_ns=since), chunked=False)
    try:
        out = f.history()
        more, _ = f.step(True)
        got = [(x.stream, x.time_ns, x.data) for x in out + more]
    finally:
        f.close()
    assert got == expected(recs, since, 0)
