"""Services on TCP are served only with mutual TLS: a caller without a certificate of the
deployment's CA is refused in the handshake, and a TCP address without certificates is
a config error that names it."""

from __future__ import annotations

import socket
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from berth.image.v1 import image_pb2, image_pb2_grpc
from services.common import tls
from tests.support.engine import PYTHON, REPO, Engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    good = str(tmp_path_factory.mktemp("tls"))
    tls.issue(good, ["image", "client"], [])
    # A second deployment: same names, its own CA.
    other = str(tmp_path_factory.mktemp("tls-other"))
    tls.issue(other, ["client"], [])
    return good, other


@pytest.fixture(scope="module")
def image_on_tcp(certs):
    address = f"127.0.0.1:{free_port()}"
    engine = Engine(services=("image",))
    engine.env = {"BERTH_IMAGE_ADDRESS": address, "BERTH_TLS_DIR": certs[0]}
    engine.start()
    try:
        yield engine, address
    finally:
        engine.stop()


def _credentials(tls_dir: str, ca_dir: str | None = None, with_cert: bool = True):
    me = tls.identity(tls_dir, "client", "test")
    ca = tls.identity(ca_dir, "client", "test").ca if ca_dir else me.ca
    if not with_cert:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=me.key, certificate_chain=me.cert)


def _list_images(channel: grpc.Channel):
    return image_pb2_grpc.ImageServiceStub(channel).ListImages(image_pb2.ListImagesRequest(), timeout=10)


def test_a_caller_with_the_deployments_certificate_is_served(image_on_tcp, certs):
    _, address = image_on_tcp
    with grpc.secure_channel(address, _credentials(certs[0])) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        _list_images(channel)


def test_plain_tcp_is_refused(image_on_tcp):
    _, address = image_on_tcp
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as err:
        _list_images(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_without_a_certificate_is_refused(image_on_tcp, certs):
    _, address = image_on_tcp
    with grpc.secure_channel(address, _credentials(certs[0], with_cert=False)) as channel, \
            pytest.raises(grpc.RpcError) as err:
        _list_images(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused(image_on_tcp, certs):
    _, address = image_on_tcp
    # It trusts the service's CA, so only the service's check of the client can refuse it.
    with grpc.secure_channel(address, _credentials(certs[1], ca_dir=certs[0])) as channel, \
            pytest.raises(grpc.RpcError) as err:
        _list_images(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_local_socket_still_serves_beside_tcp(image_on_tcp):
    engine, _ = image_on_tcp
    with grpc.insecure_channel(f"unix://{engine.socket('image')}") as channel:
        _list_images(channel)


def test_a_tcp_address_without_certificates_is_a_config_error(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [PYTHON, "-m", "services.berthd", "--run-root", str(tmp_path / "run"), "--data-root",
         str(tmp_path / "data"), "--services", "image"],
        env={"BERTH_IMAGE_ADDRESS": address, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"BERTH_IMAGE_ADDRESS={address}" in result.stderr
    assert "BERTH_TLS_DIR" in result.stderr
    assert "Traceback" not in result.stderr
