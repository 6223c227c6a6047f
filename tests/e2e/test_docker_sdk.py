"""The Docker SDK for Python against berthd's Docker Engine API socket."""

from __future__ import annotations

import json
import time
import uuid

import pytest

docker = pytest.importorskip("docker")


@pytest.fixture
def client(engine, busybox_image):
    c = docker.DockerClient(base_url=f"unix://{engine.docker_socket}", version="auto", timeout=60)
    try:
        yield c
    finally:
        c.close()


def test_ping_and_version_negotiation(client):
    assert client.ping()
    assert client.api.api_version == "1.47"
    assert client.version()["ApiVersion"] == "1.47"


def test_run_returns_output_and_raises_on_failure(client):
    assert client.containers.run("busybox", ["echo", "hello sdk"], remove=True) == b"hello sdk\n"
    with pytest.raises(docker.errors.ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert err.value.exit_status == 4


def test_detached_lifecycle_and_filters(client):
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    c = client.containers.run("busybox", ["sh", "-c", "echo up; exec sleep 60"], detach=True, name=name,
                              labels={"suite": name}, environment={"A": "1"})
    try:
        c.reload()
        assert c.status == "running"
        assert "A=1" in c.attrs["Config"]["Env"]
        assert [x.id for x in client.containers.list(filters={"label": f"suite={name}"})] == [c.id]
        assert client.containers.list(filters={"name": name, "status": "exited"}) == []
        assert b"up\n" in c.logs()
        c.stop(timeout=1)
        assert c.wait()["StatusCode"] == 137
        c.reload()
        assert c.status == "exited"
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_a_cached_bind_works_and_the_cli_inspect_is_the_api_inspect(client, engine, tmp_path):
    """`-v /a:/b:cached` (here as the SDK's Binds) is a bind mount from either edge, and
    `berth inspect` prints exactly what GET /containers/{id}/json answers."""
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("hi")
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, name=name, tty=True,
                              volumes={str(src): {"bind": "/b", "mode": "cached"}}, ports={"80/tcp": None})
    try:
        assert c.exec_run(["cat", "/b/f"]).output == b"hi"
        api = client.api.inspect_container(c.id)
        assert json.loads(engine.cli("inspect", name, check=True).stdout) == [api]
        assert api["HostConfig"]["Binds"] == [f"{src}:/b"]
        assert list(api["HostConfig"]["PortBindings"]) == ["80/tcp"]
        assert api["Config"]["Tty"] is True and api["NetworkSettings"]["IPAddress"]
        cli_run = engine.cli("run", "--rm", "-v", f"{src}:/b:cached", "busybox", "cat", "/b/f", check=True)
        assert cli_run.stdout == "hi"
    finally:
        c.remove(force=True)


def test_images_list_inspect_tag_remove(client):
    image = client.images.get("busybox")
    assert "busybox:latest" in image.tags
    tag = f"sdk-tag:{uuid.uuid4().hex[:6]}"
    assert image.tag(*tag.split(":"))
    assert tag in client.images.get(tag).tags
    assert any(tag in i.tags for i in client.images.list(filters={"reference": "sdk-tag"}))
    client.images.remove(tag)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)


def test_events_since_until(client):
    import time
    start = time.time()
    client.containers.run("busybox", "true", remove=True)
    events = list(client.events(since=start, until=time.time() + 0.5, decode=True,
                                filters={"type": "container", "event": "start"}))
    assert events and all(e["Action"] == "start" for e in events)


def test_volumes(client):
    name = f"sdk-vol-{uuid.uuid4().hex[:6]}"
    v = client.volumes.create(name, labels={"k": "v"})
    try:
        assert client.volumes.get(name).attrs["Labels"] == {"k": "v"}
        assert name in [x.name for x in client.volumes.list()]
    finally:
        v.remove()


def test_exec_run_exit_code_output_and_demux(client):
    c = client.containers.run("busybox", ["sleep", "120"], detach=True)
    try:
        result = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        assert result.exit_code == 3 and b"out\n" in result.output and b"err\n" in result.output
        result = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert result.exit_code == 0 and result.output == (b"out\n", b"err\n")
        result = c.exec_run(["sh", "-c", "test -t 1 && echo is-a-tty"], tty=True)
        assert result.output == b"is-a-tty\r\n"
        # Framed as the start request asks, not as the exec was made (moby): a tty exec
        # started with Tty false comes in frames, all of it on stdout.
        api = client.api
        made = api.exec_create(c.id, ["sh", "-c", "echo hello out; echo hello err >&2"], tty=True)
        assert api.exec_start(made, demux=True) == (b"hello out\r\nhello err\r\n", None)
        made = api.exec_create(c.id, ["sh", "-c", "echo hello out"], tty=True)
        assert api.exec_start(made, tty=True) == b"hello out\r\n"
        result = c.exec_run(["no-such-command"])
        assert result.exit_code == 127 and b"no-such-command" in result.output
        assert c.top()["Processes"] and "PID" in c.top()["Titles"]
        stats = c.stats(stream=False)
        assert stats["cpu_stats"]["online_cpus"] >= 1 and stats["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        bits, stat = c.get_archive("/bin/busybox")
        assert stat["name"] == "busybox" and stat["size"] > 0
        assert sum(len(b) for b in bits) > stat["size"]
    finally:
        c.remove(force=True)


def test_attach_socket_with_stdin_reaches_a_stdin_once_container(client):
    import socket
    c = client.containers.create("busybox", ["sh", "-c", "read line; echo got-$line"],
                                 stdin_open=True, tty=False)
    try:
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        c.start()
        raw.sendall(b"hello\n")
        out = b""
        raw.settimeout(10)
        while True:
            try:
                data = raw.recv(4096)
            except socket.timeout:
                break
            if not data:
                break
            out += data
        raw.close()
        assert out == _frame(b"got-hello\n")
        assert c.wait()["StatusCode"] == 0
    finally:
        c.remove(force=True)


def _frame(data: bytes) -> bytes:
    import struct
    return struct.pack(">BxxxI", 1, len(data)) + data


def test_legacy_links_give_the_environment_and_rm_link_removes_one(client):
    tag = uuid.uuid4().hex[:8]
    target = client.containers.run("busybox", ["sleep", "60"], detach=True, name=f"lt-{tag}",
                                   environment={"FOO": "1"}, ports={"80/tcp": None})
    try:
        api = client.api
        linker = api.create_container("busybox", ["sh", "-c", "env; cat /etc/hosts; sleep 60"],
                                      name=f"ll-{tag}", host_config=api.create_host_config(
                                          links={f"lt-{tag}": "my-db"}, network_mode="bridge"))["Id"]
        api.start(linker)
        address = api.inspect_container(target.id)["NetworkSettings"]["IPAddress"]

        def output():
            return api.logs(linker).decode()
        deadline = time.monotonic() + 30
        while "localhost" not in output() and time.monotonic() < deadline:
            time.sleep(0.2)
        out = output()
        assert f"MY_DB_NAME=/ll-{tag}/my-db" in out and "MY_DB_ENV_FOO=1" in out
        assert f"MY_DB_PORT=tcp://{address}:80" in out and "MY_DB_PORT_80_TCP_PROTO=tcp" in out
        assert f"{address}\tmy-db lt-{tag}" in out
        inspected = api.inspect_container(linker)
        assert inspected["HostConfig"]["Links"] == [f"/lt-{tag}:/ll-{tag}/my-db"]
        assert not any(e.startswith("MY_DB_") for e in inspected["Config"]["Env"])
        api.remove_container(f"ll-{tag}/my-db", link=True)
        assert api.inspect_container(linker)["HostConfig"]["Links"] is None
        assert "my-db" not in api.exec_start(api.exec_create(linker, ["cat", "/etc/hosts"])).decode()
        assert target.status and client.containers.get(target.id)   # the linked container stays
        with pytest.raises(docker.errors.NotFound):
            api.remove_container(f"ll-{tag}/my-db", link=True)
        api.remove_container(linker, force=True)
    finally:
        target.remove(force=True)


def test_a_stopped_container_holds_no_host_port(client):
    """docker binds published ports while a container runs: the next one may take them at once."""
    first = client.containers.run("busybox", ["sleep", "60"], detach=True, ports={"80/tcp": 18473})
    try:
        first.kill()
        first.wait()
        first.reload()
        assert first.attrs["NetworkSettings"]["Ports"] == {}
        second = client.containers.run("busybox", ["sleep", "60"], detach=True, ports={"80/tcp": 18473})
        try:
            second.reload()
            assert second.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18473"}]}
            # The first one's start now finds the port taken, as docker's does.
            with pytest.raises(docker.errors.APIError, match="port is already allocated"):
                first.start()
        finally:
            second.remove(force=True)
        first.start()
        first.reload()
        assert first.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18473"}]}
    finally:
        first.remove(force=True)


def test_streamed_run_logs_yield_a_line_per_item(client):
    """docker-py yields one item per frame: a block of the log must go out a line a frame."""
    name = f"streamed-{uuid.uuid4().hex[:8]}"
    try:
        out = client.containers.run("busybox", ["sh", "-c", "echo hello && echo world"], stream=True,
                                    remove=False, name=name)
        assert list(out) == [b"hello\n", b"world\n"]
    finally:
        client.containers.get(name).remove(force=True)  # the engine is shared with other tests


def _wait_running(client, exec_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not client.api.exec_inspect(exec_id)["Pid"]:  # running on the node, not only starting
        assert time.monotonic() < deadline, "the exec never ran"
        time.sleep(0.1)


def _read_until(raw, wanted: bytes, timeout: float = 20) -> bytes:
    raw.settimeout(timeout)
    out = b""
    while wanted not in out:
        data = raw.recv(4096)
        assert data, f"closed before {wanted!r}; got {out!r}"
        out += data
    return out


def _read_until_closed(raw, timeout: float = 20) -> bytes:
    import socket
    raw.settimeout(timeout)
    out = b""
    while True:
        try:
            data = raw.recv(4096)
        except socket.timeout:
            raise AssertionError(f"the stream was not closed; got {out!r}")
        except ConnectionResetError:
            return out
        if not data:
            return out
        out += data


def test_detach_keys_close_a_hijacked_attach_and_the_container_runs_on(client):
    """A terminal's attach: ctrl-p ctrl-q by default, `detachKeys` otherwise; a broken
    prefix reaches the process; unknown keys are a 400 before any upgrade."""
    since = time.time() - 1
    c = client.containers.run("busybox", ["cat"], detach=True, stdin_open=True, tty=True)
    try:
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        raw.sendall(b"\x10x\n")  # ctrl-p then x: not the sequence, so the terminal echoes both
        out = _read_until(raw, b"x")
        raw.sendall(b"\x10\x11")
        out += _read_until_closed(raw)
        raw.close()
        assert b"^Px" in out, out
        c.reload()
        assert c.status == "running"
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x"})
        raw = getattr(sock, "_sock", sock)
        raw.sendall(b"\x18")
        _read_until_closed(raw)
        raw.close()
        c.reload()
        assert c.status == "running"
        actions = [e["Action"] for e in client.events(since=since, until=time.time() + 1, decode=True,
                                                       filters={"container": c.id})]
        assert actions.count("detach") == 2, actions
        with pytest.raises(docker.errors.APIError) as err:
            client.api.attach_socket(c.id, params={"stdin": 1, "stream": 1, "detachKeys": "ctrl-pq"})
        assert err.value.status_code == 400 and "ctrl-pq" in str(err.value)
    finally:
        c.remove(force=True)


def test_an_execs_detach_keys_come_from_its_create(client):
    c = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        plain = client.api.exec_create(c.id, ["cat"], stdin=True, tty=True)["Id"]
        # What docker-py sends from the client config's detachKeys (moby reads names in any case).
        client.api._general_configs["detachKeys"] = "ctrl-a"
        keyed = client.api.exec_create(c.id, ["cat"], stdin=True, tty=True)["Id"]
        del client.api._general_configs["detachKeys"]
        for exec_id, keys in ((plain, b"\x10\x11"), (keyed, b"\x01")):
            sock = client.api.exec_start(exec_id, tty=True, socket=True)
            raw = getattr(sock, "_sock", sock)
            _wait_running(client, exec_id)  # keys typed once it runs (as a user types them)
            raw.sendall(keys)
            _read_until_closed(raw)
            raw.close()
            assert client.api.exec_inspect(exec_id)["Running"] is True
        detached = [e for e in client.events(since=time.time() - 60, until=time.time() + 1, decode=True,
                                             filters={"container": c.id}) if e["Action"] == "exec_detach"]
        assert sorted(e["Actor"]["Attributes"]["execID"] for e in detached) == sorted([plain, keyed])
        with pytest.raises(docker.errors.APIError) as err:
            client.api.exec_create(c.id, ["cat"], stdin=True, tty=True, detach_keys="ctrl-")
        assert err.value.status_code == 400
    finally:
        c.remove(force=True)


def test_a_volume_subpath_mounts_only_that_directory_and_never_leads_out(client):
    name = f"sub-{uuid.uuid4().hex[:8]}"
    client.volumes.create(name)
    made = []

    def run(subpath, cmd, **kw):
        mount = docker.types.Mount(type="volume", source=name, target="/m", read_only=True, subpath=subpath)
        c = client.containers.create("busybox", cmd, mounts=[mount], **kw)
        made.append(c)
        return c
    try:
        client.containers.run("busybox", ["sh", "-c", "mkdir -p /v/sub/deep && echo in > /v/sub/deep/f"
                                          " && echo top > /v/top && ln -s / /v/sub/out"],
                              volumes={name: {"bind": "/v"}}, remove=True)
        c = run("sub", ["sh", "-c", "cat /m/deep/f; ls /m; test -e /m/top || echo no-top"])
        c.start()
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"in\ndeep\nout\nno-top\n"
        c.start()  # a second run resolves it again (and lets go of the first run's mount)
        assert c.wait()["StatusCode"] == 0
        assert c.logs() == b"in\ndeep\nout\nno-top\n" * 2
        # Resolved where the runtime mounts it: berth's runtime create, at container create.
        for bad, words in (("sub/out", "symlink"), ("sub/nope", "nope"), ("top/x", "not a directory")):
            with pytest.raises(docker.errors.APIError) as err:
                run(bad, ["true"]).start()
            assert err.value.status_code == 409 and words in str(err.value)
        with pytest.raises(docker.errors.APIError) as err:
            run("../x", ["true"])
        assert err.value.status_code == 400 and "relative path within the volume" in str(err.value)
    finally:
        for c in made:
            c.remove(force=True)
        client.volumes.get(name).remove(force=True)
