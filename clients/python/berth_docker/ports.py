"""Published ports in docker's syntaxes, parsed and checked once for both edges:
`-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` from the CLI and HostConfig.PortBindings
({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}) from the Docker API become the same
engine PortBinding. The network service, which owns the host's ports, stays the
authority on whether a binding can be made (in use, not an address of the host).

And back: the PORTS column of `ps`, NetworkSettings.Ports and HostConfig.PortBindings.
"""

from __future__ import annotations

from berth.types.v1 import port_pb2
from berth_errors import InvalidArgument, not_implemented

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc loads all of collections, and `ps` imports this module
    from collections.abc import Iterable, Mapping

PROTOCOLS = ("tcp", "udp")


def _number(text: str, what: str, spec: str) -> int:
    if "-" in text:
        raise not_implemented("port ranges")
    if not text.isdigit():
        raise InvalidArgument(f"invalid {what}: {text!r} in port spec {spec!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"invalid {what}: {port} is out of range 1-65535 in port spec {spec!r}")
    return port


def port_key(key: str) -> tuple[int, str]:
    """"80/tcp" (a PortBindings or ExposedPorts key, or -p's container side) -> (80, "tcp")."""
    number, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto} in port spec {key!r}")
    return _number(number, "containerPort", key), proto


def binding(key: str, host_ip: str, host_port: str, spec: str | None = None) -> port_pb2.PortBinding:
    """One binding of container port `key` ("80/tcp") to host_ip:host_port; an empty
    host_ip is every address, an empty host_port an ephemeral port."""
    container_port, proto = port_key(key)
    spec = spec or key
    if host_ip:
        import ipaddress  # here: `ps` imports this module for ports_column alone
        try:
            ipaddress.IPv4Address(host_ip.strip("[]"))
        except ValueError:
            raise InvalidArgument(f"invalid IP address {host_ip!r} in port spec {spec!r}") from None
    number = _number(host_port, "hostPort", spec) if host_port else 0
    return port_pb2.PortBinding(protocol=proto, host_ip=host_ip.strip("[]"), host_port=number,
                                container_port=container_port)


def publish_flag(spec: str) -> port_pb2.PortBinding:
    """The CLI's -p: [ip:][hostPort:]containerPort[/proto].

    >>> publish_flag("127.0.0.1:8080:80/udp").host_port
    8080
    """
    rest, slash, proto = spec.partition("/")
    parts = rest.rsplit(":", 2)
    host_ip, host_port = "", ""
    if len(parts) == 3:
        host_ip, host_port, container = parts
    elif len(parts) == 2:
        host_port, container = parts
    else:
        (container,) = parts
    return binding(container + slash + proto, host_ip, host_port, spec)


def port_bindings(bindings: Mapping) -> list[port_pb2.PortBinding]:
    """HostConfig.PortBindings: {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}; no entry
    (or an empty HostPort) asks for an ephemeral host port."""
    from collections.abc import Mapping
    if not isinstance(bindings, Mapping):
        raise InvalidArgument("invalid PortBindings: expected an object")
    out = []
    for key, hosts in bindings.items():
        for h in hosts or [{}]:
            h = h or {}
            out.append(binding(key, h.get("HostIp") or "", str(h.get("HostPort") or "")))
    return out


def ports_column(ports: Iterable[port_pb2.PortBinding]) -> str:
    """docker ps's PORTS: 0.0.0.0:8080->80/tcp, ..."""
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol or 'tcp'}"
                     for p in ports)


def ports_json(ports: Iterable[port_pb2.PortBinding]) -> dict:
    """NetworkSettings.Ports and HostConfig.PortBindings: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}."""
    out: dict = {}
    for p in ports:
        out.setdefault(f"{p.container_port}/{p.protocol or 'tcp'}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return out
