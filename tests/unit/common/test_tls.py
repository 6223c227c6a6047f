"""berthd certs' CA and certificates, and the rule that a TCP address needs them."""

from __future__ import annotations

import ipaddress
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common import errors, tls
from services.common.config import Config


def _cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def test_issue_makes_a_ca_and_certificates_for_server_and_client_use(tmp_path):
    written = tls.issue(str(tmp_path), ["image", "client"], ["10.0.0.2", "node2.example"])
    assert {os.path.basename(p) for p in written} == {
        "ca.pem", "ca-key.pem", "image-cert.pem", "image-key.pem", "client-cert.pem", "client-key.pem"}
    assert os.stat(tmp_path / "image-key.pem").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "ca-key.pem").st_mode & 0o777 == 0o600
    ca, image = _cert(str(tmp_path / "ca.pem")), _cert(str(tmp_path / "image-cert.pem"))
    assert image.issuer == ca.subject
    image.verify_directly_issued_by(ca)
    sans = image.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.0.0.2") in sans.get_values_for_type(x509.IPAddress)
    assert {"node2.example", "localhost"} <= set(sans.get_values_for_type(x509.DNSName))
    usage = image.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)


def test_a_second_issue_reuses_the_ca_and_keeps_certificates(tmp_path):
    tls.issue(str(tmp_path), ["image"], [])
    ca_before = (tmp_path / "ca.pem").read_bytes()
    tls.issue(str(tmp_path), ["network"], [])
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    _cert(str(tmp_path / "network-cert.pem")).verify_directly_issued_by(_cert(str(tmp_path / "ca.pem")))
    with pytest.raises(errors.AlreadyExists, match="--force"):
        tls.issue(str(tmp_path), ["image"], [])
    tls.issue(str(tmp_path), ["image"], [], force=True)


def test_a_tcp_address_without_certificates_is_an_error_naming_it(tmp_path):
    config = Config(addresses={"image": "10.0.0.2:7401", "network": "unix:///run/x.sock"})
    with pytest.raises(errors.InvalidArgument, match=r"BERTH_IMAGE_ADDRESS=10\.0\.0\.2:7401.*BERTH_TLS_DIR is not set"):
        tls.check(config)
    tls.issue(str(tmp_path), ["network"], [])
    with pytest.raises(errors.InvalidArgument, match="image-cert.pem"):
        tls.check(Config(addresses=config.addresses, tls_dir=str(tmp_path)))
    tls.issue(str(tmp_path), ["image"], [])
    tls.check(Config(addresses=config.addresses, tls_dir=str(tmp_path)))


def test_unix_addresses_need_nothing():
    tls.check(Config(addresses={"image": "unix:///run/berth/image.sock"}))
    assert not tls.is_tcp("unix:///x") and tls.is_tcp("tcp://h:1") and tls.is_tcp("h:1")
    assert tls.target("tcp://h:1") == "h:1"


def test_the_local_socket_is_served_beside_a_tcp_address():
    config = Config(run_root="/r", addresses={"image": "10.0.0.2:7401", "volume": "unix:///v.sock"})
    assert config.local_address("image") == "unix:///r/image.sock"
    assert config.local_address("volume") == "unix:///v.sock"
    assert config.address("image") == "10.0.0.2:7401"
