"""`berth inspect` prints what the Docker API's inspect answers (Binds, PortBindings, Tty,
IPAddress included), because both render berth_docker's shapes."""

from __future__ import annotations

import json

from berth.engine.v1 import engine_pb2
from berth_cli import cli, commands, wire
from berth_cli.errors import RpcError, StatusCode
from berth_docker import api


def _container() -> engine_pb2.ContainerInfo:
    config = commands.container_config(cli.parse(
        ["run", "-t", "-v", "/srv:/data:ro", "-p", "8080:80", "--name", "web", "busybox", "sleep", "9"]))
    info = engine_pb2.ContainerInfo(
        id="c" * 64, name="web", image="busybox", image_id="sha256:" + "a" * 64, path="sleep", args=["9"],
        config=config, network_mode="bridge", ports=list(config.ports),
        state=engine_pb2.ContainerState(status="running", running=True, pid=42),
        mounts=[engine_pb2.MountPoint(type="bind", source="/srv", destination="/data", rw=False)],
        networks=[engine_pb2.ContainerNetwork(network="bridge", network_id="n1", ipv4_address="10.88.0.2",
                                              prefix_len=16, gateway="10.88.0.1")])
    info.created.FromSeconds(1_700_000_000)
    return info


class FakeClient:
    """The engine's replies as the CLI reads them: protobuf's bytes decoded by berth_cli.wire."""

    def __init__(self, info):
        self.info = info

    def call(self, method, **request):
        if method == "InspectContainer" and request["id"] == self.info.name:
            reply = engine_pb2.InspectContainerResponse(container=self.info)
            return wire.message("InspectContainerResponse").FromString(reply.SerializeToString())
        what = "container" if method == "InspectContainer" else "image"
        raise RpcError(StatusCode.NOT_FOUND, f"No such {what}: {next(iter(request.values()))}")


def test_cli_inspect_is_the_docker_api_inspect(capsys):
    info = _container()
    status = commands.inspect(FakeClient(info), cli.parse(["inspect", "web"]))
    printed = json.loads(capsys.readouterr().out)
    assert status == 0
    assert printed == [json.loads(json.dumps(api.container_json(info)))]
    c = printed[0]
    assert c["HostConfig"]["Binds"] == ["/srv:/data:ro"]
    assert c["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    assert c["Config"]["Tty"] is True
    assert c["NetworkSettings"]["IPAddress"] == "10.88.0.2"


def test_cli_inspect_of_nothing(capsys):
    status = commands.inspect(FakeClient(_container()), cli.parse(["inspect", "nope"]))
    out = capsys.readouterr()
    assert status == 1 and json.loads(out.out) == [] and "No such object: nope" in out.err
