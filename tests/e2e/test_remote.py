"""A gateway on one host drives the image, network, volume and container services of
another (two network namespaces, their own roots, mutual TLS between them)."""

from __future__ import annotations

import json
import shutil
import subprocess

import grpc
import pytest

from berth.image.v1 import image_pb2, image_pb2_grpc
from services.common import tls
from tests.support.engine import PYTHON
from tests.support.remote import RemotePair
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes


@pytest.fixture(scope="module")
def pair():
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    pair = RemotePair().start()
    try:
        yield pair
    finally:
        pair.stop()


def _links(ns: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_a_container_runs_through_a_gateway_on_another_host(pair, tmp_path):
    gateway = pair.gateway
    tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path / "rootfs")))
    gateway.cli("import", "-", "remote:1", input=tar, check=True)
    # The image is the node's: its own image service lists it.
    with grpc.insecure_channel(f"unix://{pair.node.socket('image')}") as channel:
        listed = image_pb2_grpc.ImageServiceStub(channel).ListImages(image_pb2.ListImagesRequest(), timeout=10)
    assert any("remote:1" in str(image) for image in listed.images), listed
    ran = gateway.cli("run", "--rm", "remote:1", "sh", "-c", "echo hello; hostname -i", check=True)
    lines = ran.stdout.split()
    assert lines[0] == "hello", ran
    # The container's address is on the node's bridge, which is only in the node's namespace.
    bridge = pair.node.config.bridge_name
    assert f" {bridge}:" in _links(pair.ns_b) and f" {bridge}:" not in _links(pair.ns_a)


def test_volumes_and_networks_are_made_on_the_node(pair):
    gateway = pair.gateway
    gateway.cli("volume", "create", "remote-vol", check=True)
    gateway.cli("network", "create", "remote-net", check=True)
    try:
        mountpoint = json.loads(gateway.cli("volume", "inspect", "remote-vol", check=True).stdout)[0]["Mountpoint"]
        assert mountpoint.startswith(pair.node.config.data_root), mountpoint
        assert "remote-net" in gateway.cli("network", "ls", check=True).stdout
    finally:
        gateway.cli("volume", "rm", "remote-vol")
        gateway.cli("network", "rm", "remote-net")


def _client_tls(pair, name: str = "client") -> list[str]:
    d = pair.tls_dir
    return ["--tlsverify", f"--tlscacert={d}/ca.pem", f"--tlscert={d}/{name}-cert.pem", f"--tlskey={d}/{name}-key.pem"]


def test_the_cli_reaches_a_gateway_on_another_host_over_mutual_tls(pair):
    ps = pair.in_node(PYTHON, "-m", "berth_cli", "-H", f"tcp://{pair.gateway_address}", *_client_tls(pair), "ps", "-a")
    assert ps.returncode == 0 and ps.stdout.startswith("CONTAINER ID"), ps
    # Without --tlsverify the CLI says what TCP needs instead of trying plain text.
    plain = pair.in_node(PYTHON, "-m", "berth_cli", "-H", f"tcp://{pair.gateway_address}", "ps")
    assert plain.returncode == 125 and "mutual TLS" in plain.stderr, plain


def test_the_docker_cli_reaches_the_docker_api_over_mutual_tls(pair, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    docker = ["docker", f"--config={tmp_path}", "-H", f"tcp://{pair.docker_address}"]
    ps = pair.in_node(*docker, *_client_tls(pair), "ps", "-a")
    assert ps.returncode == 0 and ps.stdout.startswith("CONTAINER ID"), ps
    # A client certificate from no CA of this deployment: refused in the handshake.
    stranger = tmp_path / "stranger"
    tls.issue(str(stranger), ["client"], [])
    refused = pair.in_node(*docker, "--tlsverify", f"--tlscacert={pair.tls_dir}/ca.pem",
                           f"--tlscert={stranger}/client-cert.pem", f"--tlskey={stranger}/client-key.pem", "ps")
    assert refused.returncode != 0, refused
