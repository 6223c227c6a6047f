"""Mutual TLS for berth's services on TCP: where the certificates are, and how they are made.

A service reached over TCP could be driven by anyone who reaches the port, and every
service acts as root on its host, so TCP is served and called only with mutual TLS:
both ends present a certificate signed by the deployment's own CA, and a caller
without one (or with one from another CA) is refused during the handshake. Unix
sockets stay as they are (root-only files; no handshake on the local fast path).

One directory (BERTH_TLS_DIR, berthd's --tls-dir) holds, for every process on a host:

    ca.pem                        the CA every peer is checked against
    <service>-cert.pem, -key.pem  the service's identity: its server certificate when it
                                  listens, its client certificate when it calls others

`berthd certs DIR --san ADDR ...` makes them (see `issue`); the CA's key stays in
ca-key.pem beside them, to be moved off the hosts once every certificate is issued.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from services.common import errors

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
# Long enough that a test deployment never expires under its users; rotate by issuing again.
VALID_DAYS = 825


def is_tcp(address: str) -> bool:
    return bool(address) and not address.startswith("unix:")


def target(address: str) -> str:
    """The host:port of a TCP address, written either bare or as tcp://host:port."""
    return address.removeprefix("tcp://")


@dataclass(frozen=True)
class Identity:
    """The PEM bytes a service presents and checks its peers against."""
    ca: bytes
    cert: bytes
    key: bytes


def files(tls_dir: str, name: str) -> tuple[str, str, str]:
    return (os.path.join(tls_dir, CA_FILE), os.path.join(tls_dir, f"{name}-cert.pem"),
            os.path.join(tls_dir, f"{name}-key.pem"))


def identity(tls_dir: str, name: str, why: str) -> Identity:
    """The identity of `name` from tls_dir; `why` names the setting that needs it."""
    paths = files(tls_dir, name) if tls_dir else ()
    missing = [p for p in paths if not os.path.isfile(p)]
    if not tls_dir or missing:
        where = f"BERTH_TLS_DIR={tls_dir} lacks {', '.join(missing)}" if tls_dir else "BERTH_TLS_DIR is not set"
        raise errors.InvalidArgument(
            f"{why} is a TCP address, which berth serves and calls only with mutual TLS, but {where} "
            f"(make them with `berthd certs DIR --san HOST`)")
    ca, cert, key = (_read(p) for p in paths)
    return Identity(ca, cert, key)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def check(config) -> None:
    """Every TCP address of this config has the certificates it needs (InvalidArgument naming it)."""
    for service, address in sorted(config.addresses.items()):
        if is_tcp(address):
            identity(config.tls_dir, service, f"BERTH_{service.upper()}_ADDRESS={address}")


# -- making certificates --------------------------------------------------------


def issue(tls_dir: str, names: list[str], sans: list[str], force: bool = False) -> list[str]:
    """Make the CA in tls_dir when it has none, then a certificate and key for each name.

    Every certificate carries the given SANs (host names and IP addresses the name is
    reached at) plus localhost and 127.0.0.1, and may serve as server and as client.
    Returns the files written. An existing certificate is kept unless `force`.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    written: list[str] = []
    ca_path, ca_key_path = os.path.join(tls_dir, CA_FILE), os.path.join(tls_dir, CA_KEY_FILE)
    if os.path.exists(ca_path) != os.path.exists(ca_key_path):
        raise errors.FailedPrecondition(f"{tls_dir} has only one of {CA_FILE} and {CA_KEY_FILE}")
    if os.path.exists(ca_path):
        ca_cert = x509.load_pem_x509_certificate(_read(ca_path))
        ca_key = serialization.load_pem_private_key(_read(ca_key_path), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        _write(ca_key_path, _key_pem(ca_key), 0o600)
        _write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written += [ca_path, ca_key_path]

    alt_names: list[x509.GeneralName] = []
    for san in [*sans, "localhost", "127.0.0.1"]:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(san))
        except ValueError:
            name = x509.DNSName(san)
        if name not in alt_names:
            alt_names.append(name)
    for name in names:
        _, cert_path, key_path = files(tls_dir, name)
        if os.path.exists(cert_path) and not force:
            raise errors.AlreadyExists(f"{cert_path} exists (--force replaces it)")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written += [cert_path, key_path]
    return written


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: str, data: bytes, mode: int) -> None:
    # Written whole under a temporary name: a crash never leaves half a key.
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
