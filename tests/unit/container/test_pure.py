"""Pure pieces of the container service: no root, no runtime."""

from __future__ import annotations

import gzip
import os
import signal

import pytest

from services.common import errors
from services.container import logs, spec
from services.container.model import Event, EventType, Exit, Mount, Process, Record, Resources, Spec
from services.container.runtime import runtime_message
from services.container.service import parse_signal
from services.container.store import ContainerStore, NameTaken, Pruned


@pytest.mark.parametrize("text,want", [
    ("", signal.SIGKILL), ("KILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM),
    ("term", signal.SIGTERM), ("10", 10), ("SIGRTMIN", signal.SIGRTMIN),
])
def test_parse_signal(text, want):
    assert parse_signal(text) == int(want)


@pytest.mark.parametrize("text", ["FOO", "SIGFOO", "0", "99"])
def test_parse_signal_rejects_unknown(text):
    with pytest.raises(errors.InvalidArgument, match=f"invalid signal: {text}"):
        parse_signal(text)


def test_k8s_file_parsing_joins_partials_per_stream(tmp_path):
    path = tmp_path / "ctr.log"
    path.write_bytes(
        b"2026-01-02T03:04:05.000000001+00:00 stdout P ab\n"
        b"2026-01-02T03:04:05.000000002+00:00 stderr F err line\n"
        b"2026-01-02T03:04:05.000000003+00:00 stdout F cd\n"
        b"2026-01-02T03:04:06.5Z stdout F\n"
        b"2026-01-02T03:04:07.000000000+00:00 stdout P no newline")
    # The last record lacks its own newline: a reader sees only whole records. A joined
    # line comes out when it completes, stamped with the time of its first piece.
    got = logs.read_all(str(path), logs.LogFilter())
    assert [(x.stream, x.data) for x in got] == [
        ("stderr", b"err line\n"), ("stdout", b"abcd\n"), ("stdout", b"\n")]
    assert got[1].time_ns == got[0].time_ns - 1
    assert got[2].time_ns % 1_000_000_000 == 500_000_000
    t = got[0].time_ns
    assert [x.data for x in logs.read_all(str(path), logs.LogFilter(since_ns=t))] == [b"err line\n", b"\n"]
    assert [x.data for x in logs.read_all(str(path), logs.LogFilter(until_ns=t))] == [b"abcd\n"]
    assert [x.data for x in logs.read_all(str(path), logs.LogFilter(tail=1))] == [b"\n"]
    assert logs.read_all(str(path), logs.LogFilter(tail=0)) == []
    assert [x.data for x in logs.read_all(str(path), logs.LogFilter(streams=frozenset({"stderr"})))] == [
        b"err line\n"]


def _records(*recs: tuple[str, str, bytes], t0: int = 0) -> bytes:
    """k8s-file records as conmon writes them (35-byte times)."""
    return b"".join(b"2026-01-02T03:04:%02d.%09d+00:00 %s %s %s\n" % (
        5 + (t0 + i) // 1000, (t0 + i) % 1000, stream.encode(), tag.encode(), content)
        for i, (stream, tag, content) in enumerate(recs))


def test_follower_reads_across_rotations_in_order_without_a_gap(tmp_path):
    live = str(tmp_path / "ctr.log")
    with open(live, "wb") as f:
        f.write(_records(("stdout", "F", b"one"), ("stdout", "P", b"tw")))
    follower = logs._Follower(live, logs.LogFilter(), chunked=True)
    assert [x.data for x in follower.history()] == [b"one\ntw"]
    # Rotated twice before the follower looks again; the second file starts mid-line.
    os.rename(live, live + ".1")
    with open(live + ".1", "ab") as f:
        f.write(_records(("stdout", "P", b"o-"), t0=2))
    with open(live + ".2", "wb") as f:
        f.write(_records(("stdout", "F", b"end of two"), ("stderr", "F", b"e"), t0=3))
    with open(live, "wb") as f:
        f.write(_records(("stdout", "F", b"three"), t0=5))
    got = []
    more = True
    while more:
        out, more = follower.step(done=True)
        got += out
    # Bulk entries: the bytes of each stream exactly, the pieces of a line as they came.
    assert b"".join(x.data for x in got if x.stream == "stdout") == b"o-end of two\nthree\n"
    assert [x.data for x in got if x.stream == "stderr"] == [b"e\n"]
    assert [x.stream for x in got].index("stderr") == 2
    follower.close()


def test_follower_that_starts_while_conmon_has_not_reopened_reads_the_renamed_file_on(tmp_path):
    live = str(tmp_path / "ctr.log")
    with open(live + ".1", "wb") as f:  # renamed away; conmon still writes to it
        f.write(_records(("stdout", "F", b"a")))
    follower = logs._Follower(live, logs.LogFilter(), chunked=True)
    assert [x.data for x in follower.history()] == [b"a\n"]
    with open(live + ".1", "ab") as f:
        f.write(_records(("stdout", "F", b"b"), t0=1))
    with open(live, "wb") as f:
        f.write(_records(("stdout", "F", b"c"), t0=2))
    got, more = [], True
    while more:
        out, more = follower.step(done=True)
        got += out
    assert b"".join(x.data for x in got) == b"b\nc\n"
    follower.close()


def test_bulk_and_by_line_reads_agree_and_tail_reads_backwards(tmp_path):
    live = str(tmp_path / "ctr.log")
    recs = []
    for i in range(3000):
        recs.append(("stdout", "F", b"line %d" % i))
        if i % 7 == 0:
            recs += [("stderr", "P", b"x" * 10), ("stderr", "F", b"y %d" % i)]
    with open(live + ".1", "wb") as f:
        f.write(_records(*recs[:1500]))
    with open(live, "wb") as f:
        f.write(_records(*recs[1500:], t0=1500) + b"2026-01-02T03:04:09.000000000+00:00 stdout F unfini")
    with gzip.open(live + ".1.gz", "wb") as f:  # mid-compression: both are complete
        f.write(open(live + ".1", "rb").read())
    by_line = logs.read_all(live, logs.LogFilter())
    bulk = logs.read_all(live, logs.LogFilter(), chunked=True)
    for stream in ("stdout", "stderr"):
        joined = b"".join(x.data for x in by_line if x.stream == stream)
        assert joined == b"".join(x.data for x in bulk if x.stream == stream)
    assert b"".join(x.data for x in by_line if x.stream == "stdout") == b"".join(
        b"line %d\n" % i for i in range(3000))
    stats: dict = {}
    tail = logs.read_all(live, logs.LogFilter(tail=3), stats=stats)
    assert [x.data for x in tail] == [x.data for x in by_line[-3:]] == [
        b"line 2997\n", b"line 2998\n", b"line 2999\n"]
    # From the end backwards: the last records, not the 150 KB of the files.
    assert stats["bytes_read"] < 1000
    only_err = logs.read_all(live, logs.LogFilter(tail=2, streams=frozenset({"stderr"})))
    assert [x.data for x in only_err] == [b"x" * 10 + b"y 2989\n", b"x" * 10 + b"y 2996\n"]
    t = by_line[100].time_ns
    until = by_line[2000].time_ns
    since = logs.read_all(live, logs.LogFilter(since_ns=t, until_ns=until), chunked=True)
    for stream in ("stdout", "stderr"):
        assert b"".join(x.data for x in since if x.stream == stream) == b"".join(
            x.data for x in by_line if x.stream == stream and t <= x.time_ns < until)
    assert since[0].time_ns == t and since[-1].time_ns < until


def test_log_config_resolution_and_rotation_of_a_closed_log(tmp_path):
    from services.container import logfiles
    from services.container.model import LogConfig
    local = logfiles.resolve(LogConfig(), LogConfig("local"))
    assert local == LogConfig("local", (("compress", "true"), ("max-file", "5"), ("max-size", "20m")))
    p = logfiles.policy(logfiles.resolve(LogConfig("json-file", (("max-size", "1k"), ("max-file", "2"))),
                                         local))
    assert (p.max_size, p.max_file, p.compress) == (1024, 2, False)
    assert logfiles.policy(logfiles.resolve(LogConfig("json-file"), local)).max_size == -1
    live = str(tmp_path / "ctr.log")
    for run in range(3):
        with open(live, "wb") as f:
            f.write(b"r%d" % run * 600)
        logfiles.rotate_closed(live, p)
    # Each full log was rotated; max-file 2 keeps one rotated file beside the live one.
    assert [n for n, _ in logfiles.segments(live)] == [3] and not os.path.exists(live)


def _spec(**kw) -> Spec:
    return Spec(process=Process(args=("sh",), env=("A=1",)), rootfs=(Mount("overlay", "overlay"),), **kw)


def test_oci_config_shape():
    s = _spec(hostname="h", netns_path="/run/netns/x",
              resources=Resources(memory_bytes=8 << 20, nano_cpus=1_500_000_000, cpu_shares=512,
                                  pids_limit=100),
              mounts=(Mount("bind", "/src", "/dst", ("ro",)),))
    cfg = spec.oci_config("a" * 64, s, "/b/rootfs", spec.User(0, 0, (), "/root"))
    assert cfg["ociVersion"] == "1.0.2"
    assert "rlimits" not in cfg["process"]
    assert cfg["process"]["env"][0].startswith("PATH=")
    assert "HOSTNAME=h" in cfg["process"]["env"] and "HOME=/root" in cfg["process"]["env"]
    assert {"type": "network", "path": "/run/netns/x"} in cfg["linux"]["namespaces"]
    assert cfg["linux"]["cgroupsPath"] == "/berth/" + "a" * 64
    r = cfg["linux"]["resources"]
    assert r["memory"] == {"limit": 8 << 20}
    assert r["cpu"] == {"quota": 150000, "period": 100000, "shares": 512}
    assert r["pids"] == {"limit": 100}
    assert cfg["mounts"][-1] == {"destination": "/dst", "type": "bind", "source": "/src",
                                 "options": ["ro", "rbind"]}
    assert [m["destination"] for m in cfg["mounts"][:6]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    host = spec.oci_config("a" * 64, _spec(), "/r", spec.User(0, 0, (), "/root"))
    assert all(ns["type"] != "network" for ns in host["linux"]["namespaces"])


def test_an_env_entry_without_a_value_is_left_out_of_the_process(tmp_path):
    """dockerd keeps `Foo` in the config (the image's Foo=x merged away) and runs without it:
    runc refuses an entry without "="."""
    s = Spec(process=Process(args=("sh",), env=("Foo", "Other=one", "Blank=")), rootfs=(Mount("overlay", "overlay"),))
    env = spec.oci_config("a" * 64, s, "/r", spec.User(0, 0, (), "/root"))["process"]["env"]
    assert "Other=one" in env and "Blank=" in env and all(e.split("=", 1)[0] != "Foo" for e in env)
    assert all("=" in e for e in env)


def _rootfs(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app\n")
    return str(tmp_path)


@pytest.mark.parametrize("user,want", [
    ("app", (1000, 1000, (10,), "/home/app")),
    ("1000", (1000, 1000, (10,), "/home/app")),
    ("app:wheel", (1000, 10, (), "/home/app")),
    ("app:0", (1000, 0, (10,), "/home/app")),
    ("4242", (4242, 0, (), "/")),
    ("4242:4343", (4242, 4343, (), "/")),
])
def test_resolve_user(tmp_path, user, want):
    s = Spec(process=Process(args=("sh",), user=user))
    u = spec.resolve_user(_rootfs(tmp_path), s)
    assert (u.uid, u.gid, u.additional_gids, u.home) == want


def test_resolve_user_unknown(tmp_path):
    root = _rootfs(tmp_path)
    with pytest.raises(errors.InvalidArgument, match="unable to find user bob"):
        spec.resolve_user(root, Spec(process=Process(args=("sh",), user="bob")))
    with pytest.raises(errors.InvalidArgument, match="unable to find group staff"):
        spec.resolve_user(root, Spec(process=Process(args=("sh",), user="app:staff")))


def test_secure_join_keeps_symlinks_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/../../../etc/shadow", root / "etc" / "passwd")
    assert spec.secure_join(str(root), "/etc/passwd") == str(root / "etc" / "shadow")


def test_runtime_message_extracts_runc_text():
    raw = ('time="2026-11-29T06:58:04Z" level=error msg="runc create failed: unable to start container'
           ' process: exec: \\"nosuch\\": executable file not found in $PATH"\n')
    assert runtime_message(raw) == ('runc create failed: unable to start container process: '
                                    'exec: "nosuch": executable file not found in $PATH')


def test_store_round_trip_and_name_conflict(tmp_path):
    store = ContainerStore(str(tmp_path / "c.db"))
    rec = Record(id="a" * 64, name="web", spec=_spec(hostname="h"), labels={"k": "v"},
                 metadata=b"\x00m", created_at=1.5)
    store.insert(rec)
    assert store.get(rec.id) == rec
    assert store.by_name("web") == rec
    assert store.by_prefix("aaa") == [rec]
    with pytest.raises(NameTaken) as exc:
        store.insert(Record(id="b" * 64, name="web", spec=_spec()))
    assert exc.value.owner == "a" * 64
    assert [(e.type, e.exit_code) for e in store.set_exit(rec.id, Exit(3, 2.0, True))] == [
        (EventType.OOM, 0), (EventType.EXIT, 3)]
    assert store.set_exit(rec.id, Exit(4, 3.0)) == []
    assert store.get(rec.id).exit == Exit(3, 2.0, True)
    assert store.set_started(rec.id, 1.75).type is EventType.START
    # A new run: the last one's start and exit go, the rest of the row stays.
    store.clear_run(rec.id)
    assert store.get(rec.id) == rec
    assert [e.type for e in store.set_exit(rec.id, Exit(4, 3.0))] == [EventType.EXIT]
    assert store.delete(rec.id).type is EventType.DELETE
    assert store.all() == []
    assert [e.seq for e in store.events_after(0, 100)] == [1, 2, 3, 4, 5]


def test_event_log_seq_survives_reopen_and_pruning(tmp_path, monkeypatch):
    from services.container import store as store_mod
    monkeypatch.setattr(store_mod, "EVENT_RETENTION", 5)
    monkeypatch.setattr(store_mod, "PRUNE_EVERY", 1)
    path = str(tmp_path / "c.db")
    store = ContainerStore(path)
    seqs = [store.append(Event(EventType.PAUSE, "c", float(i))).seq for i in range(3)]
    store.close()
    store = ContainerStore(path)
    seqs += [store.append(Event(EventType.RESUME, "c", float(i))).seq for i in range(6)]
    assert seqs == list(range(1, 10))
    # Only the newest 5 are kept; a position among them (or just before them) replays.
    assert [e.seq for e in store.events_after(4, 100)] == [5, 6, 7, 8, 9]
    assert [e.seq for e in store.events_after(7, 1)] == [8]
    assert store.events_after(9, 100) == []
    with pytest.raises(Pruned, match="events after 3 were pruned; the oldest retained event is 5"):
        store.events_after(3, 100)
    with pytest.raises(Pruned, match="ahead of the newest event 9"):
        store.events_after(10, 100)
    # Pruning every row there is never reuses a seq.
    monkeypatch.setattr(store_mod, "EVENT_RETENTION", 0)
    assert store.append(Event(EventType.PAUSE, "c", 0.0)).seq == 10
    with pytest.raises(Pruned, match="events after 9 were pruned"):
        store.events_after(9, 100)
    assert store.events_after(10, 100) == []
    store.close()
    assert ContainerStore(path).append(Event(EventType.PAUSE, "c", 0.0)).seq == 11


def test_exec_exit_is_committed_once(tmp_path):
    store = ContainerStore(str(tmp_path / "c.db"))
    store.insert(Record(id="a" * 64, name="web", spec=_spec()))
    assert store.exec_exit_committed("e1") is None
    start = store.exec_started(Event(EventType.EXEC_START, "a" * 64, 1.0, exec_id="e1"))
    assert store.exec_exit_committed("e1") is False
    exit = store.exec_exited(Event(EventType.EXEC_EXIT, "a" * 64, 2.0, 7, "e1"))
    assert start.seq < exit.seq and exit.exit_code == 7
    assert store.exec_exit_committed("e1") is True
    assert store.exec_exited(Event(EventType.EXEC_EXIT, "a" * 64, 3.0, 7, "e1")) is None
    # An exec whose start predates the table still gets its exit announced, once.
    assert store.exec_exited(Event(EventType.EXEC_EXIT, "a" * 64, 3.0, 0, "e0")) is not None
    assert store.exec_exited(Event(EventType.EXEC_EXIT, "a" * 64, 3.0, 0, "e0")) is None


