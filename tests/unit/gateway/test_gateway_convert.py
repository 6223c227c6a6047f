"""Docker's merging rules and the import --change parser, without a daemon."""

from __future__ import annotations

import pytest

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from services.common import errors
from services.gateway import convert


@pytest.mark.parametrize("image_ep,image_cmd,ep,cmd,want", [
    ([], ["sh"], None, [], ["sh"]),
    ([], ["sh"], None, ["echo", "hi"], ["echo", "hi"]),
    (["/entry"], ["--serve"], None, [], ["/entry", "--serve"]),
    (["/entry"], ["--serve"], None, ["--debug"], ["/entry", "--debug"]),
    # A new entrypoint drops the image's cmd: it was written for the old entrypoint.
    (["/entry"], ["--serve"], ["/bin/sh"], [], ["/bin/sh"]),
    (["/entry"], ["--serve"], ["/bin/sh"], ["-c", "x"], ["/bin/sh", "-c", "x"]),
    # An empty entrypoint clears the image's one.
    (["/entry"], ["--serve"], [], ["ls"], ["ls"]),
])
def test_merge_args(image_ep, image_cmd, ep, cmd, want):
    assert convert.merge_args(image_ep, image_cmd, ep, cmd) == want


def test_merge_env_overrides_by_key_and_adds_path():
    env = convert.merge_env(["A=1", "B=2"], ["B=3", "C=4"])
    assert env == [convert.DEFAULT_PATH, "A=1", "B=3", "C=4"]


def test_merge_env_keeps_image_path():
    assert convert.merge_env(["PATH=/x"], []) == ["PATH=/x"]


def test_resolve_process_without_command_is_invalid():
    with pytest.raises(errors.InvalidArgument, match="no command specified"):
        convert.resolve_process(image_pb2.ImageConfig(), engine_pb2.ContainerConfig(image="x"))


def test_resolve_process_defaults_and_overrides():
    image = image_pb2.ImageConfig(cmd=["sh"], env=["A=1"], working_dir="/srv", user="app")
    p = convert.resolve_process(image, engine_pb2.ContainerConfig(image="x"))
    assert (p.args, p.cwd, p.user) == (("sh",), "/srv", "app")
    cfg = engine_pb2.ContainerConfig(image="x", working_dir="/tmp", user="0", env=["A=2"])
    cfg.entrypoint.SetInParent()
    cfg.cmd.append("id")
    p = convert.resolve_process(image, cfg)
    assert (p.args, p.cwd, p.user) == (("id",), "/tmp", "0")
    assert "A=2" in p.env and "A=1" not in p.env
    assert convert.resolve_process(image_pb2.ImageConfig(cmd=["sh"]),
                                   engine_pb2.ContainerConfig()).cwd == "/"


@pytest.mark.parametrize("name,ok", [
    ("web", True), ("a.b_c-1", True), ("9lives", True),
    ("", False), ("-web", False), ("_x", False), ("we b", False), ("wéb", False), ("a/b", False),
])
def test_valid_name(name, ok):
    assert convert.valid_name(name) is ok


def test_parse_changes():
    c = convert.parse_changes([
        'CMD ["sh"]', "ENV K=V", 'ENV A="x y" B=2', "ENV LEGACY some value", "WORKDIR /x",
        'ENTRYPOINT ["/e", "-v"]', "USER app", "LABEL k=v", "EXPOSE 80 53/udp", "STOPSIGNAL SIGINT",
        "VOLUME /data",
    ])
    assert list(c.cmd) == ["sh"]
    assert list(c.env) == ["K=V", "A=x y", "B=2", "LEGACY=some value"]
    assert c.working_dir == "/x"
    assert list(c.entrypoint) == ["/e", "-v"]
    assert c.user == "app"
    assert dict(c.labels) == {"k": "v"}
    assert list(c.exposed_ports) == ["80/tcp", "53/udp"]
    assert c.stop_signal == "SIGINT"
    assert list(c.volumes) == ["/data"]


def test_parse_changes_shell_form_runs_through_sh():
    assert list(convert.parse_changes(["CMD sh -c x"]).cmd) == ["/bin/sh", "-c", "sh -c x"]
    assert list(convert.parse_changes(["cmd echo hi"]).cmd) == ["/bin/sh", "-c", "echo hi"]


@pytest.mark.parametrize("change", ["RUN echo hi", "FROM busybox", "CMD", "ENV =x", "EXPOSE http"])
def test_parse_changes_rejects(change):
    with pytest.raises(errors.InvalidArgument):
        convert.parse_changes([change])


def test_metadata_round_trip():
    cfg = engine_pb2.ContainerConfig(image="busybox", cmd=["sleep", "1"], labels={"a": "b"}, stop_timeout=3)
    meta = convert.Metadata("busybox", "sha256:" + "a" * 64, cfg, "host", True, 3)
    assert convert.Metadata.decode(meta.encode()) == meta
    empty = convert.Metadata.decode(b"")
    assert (empty.network_mode, empty.stop_timeout, empty.auto_remove) == ("none", 10, False)


def test_container_info():
    cfg = engine_pb2.ContainerConfig(image="busybox", cmd=["sleep", "1"])
    meta = convert.Metadata("busybox", "sha256:" + "a" * 64, cfg, "none", False, 10)
    c = container_pb2.Container(
        id="c" * 64, name="/web", status=container_pb2.STATUS_STOPPED, exit_code=3, pid=42,
        metadata=meta.encode(), spec=container_pb2.Spec(
            hostname="h", process=container_pb2.Process(args=["sleep", "1"], cwd="/")))
    info = convert.container_info(c)
    assert (info.name, info.path, list(info.args)) == ("web", "sleep", ["1"])
    assert (info.state.status, info.state.running, info.state.exit_code, info.state.pid) == ("exited", False, 3, 0)
    assert (info.image, info.image_id, info.network_mode) == ("busybox", meta.image_id, "none")
