"""A gateway on one host drives the image, network, volume and container services of
another (two network namespaces, their own roots, mutual TLS between them)."""

from __future__ import annotations

import json
import subprocess

import grpc
import pytest

from berth.image.v1 import image_pb2, image_pb2_grpc
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
