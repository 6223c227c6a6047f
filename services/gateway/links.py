"""Legacy links on the default bridge: the environment docker gives the linking container.

`docker run --link db:store app` on the default bridge network gives app, besides the
/etc/hosts entry the network service writes:

    STORE_NAME=/app/store                          the link's full name
    STORE_PORT=tcp://172.17.0.2:5432               the linked container's lowest exposed port
    STORE_PORT_5432_TCP=tcp://172.17.0.2:5432      and, for each exposed port,
    STORE_PORT_5432_TCP_ADDR=172.17.0.2            its address,
    STORE_PORT_5432_TCP_PORT=5432                  number
    STORE_PORT_5432_TCP_PROTO=tcp                  and protocol
    STORE_ENV_POSTGRES_DB=shop                     the linked container's environment (not HOME, PATH)

and for a run of consecutive ports (8000-8002/tcp) also `..._PORT_8000_TCP_START`,
`_PORT_START`, `_END` and `_PORT_END`. On user-defined networks links are names only
(the resolver answers them) and give no environment, as in docker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.common.errors import InvalidArgument

# The linked container's variables docker leaves out of <ALIAS>_ENV_*: set for every process.
_NOT_SHARED = ("HOME", "PATH")


@dataclass(frozen=True)
class Linked:
    """What the environment of one link is made from."""

    parent: str                      # the linking container's name, without "/"
    alias: str                       # the name the link gives the linked container
    address: str                     # the linked container's IPv4 address on the bridge
    env: Sequence[str]               # its configured environment
    ports: Iterable[tuple[int, str]]  # its exposed ports: (number, "tcp"/"udp"/"sctp")


def link_env(link: Linked) -> list[str]:
    prefix = link.alias.upper().replace("-", "_")
    # Lowest number first; tcp before another protocol on the same number.
    ports = sorted(set(link.ports), key=lambda p: (p[0], p[1] != "tcp", p[1]))
    env = []
    if ports:
        number, proto = ports[0]
        env.append(f"{prefix}_PORT={proto}://{link.address}:{number}")
    env += _ranges(prefix, link.address, ports)
    for number, proto in ports:
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{key}={proto}://{link.address}:{number}", f"{key}_ADDR={link.address}",
                f"{key}_PORT={number}", f"{key}_PROTO={proto}"]
    env.append(f"{prefix}_NAME=/{link.parent}/{link.alias}")
    for entry in link.env:
        key, sep, value = entry.partition("=")
        if sep and key not in _NOT_SHARED:
            env.append(f"{prefix}_ENV_{key}={value}")
    return env


def _ranges(prefix: str, address: str, ports: list[tuple[int, str]]) -> list[str]:
    """The _START/_END variables of each run of two or more consecutive port numbers."""
    env = []
    i = 0
    while i < len(ports):
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i:
            (first, proto), (last, last_proto) = ports[i], ports[j]
            key = f"{prefix}_PORT_{first}_{proto.upper()}"
            env += [f"{key}_START={proto}://{address}:{first}", f"{key}_ADDR={address}",
                    f"{key}_PROTO={proto}", f"{key}_PORT_START={first}",
                    f"{key}_END={last_proto}://{address}:{last}", f"{key}_PORT_END={last}"]
        i = j + 1
    return env


def exposed_ports(image_exposed: Iterable[str], published: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """A container's exposed ports as docker counts them: the image's EXPOSE and every
    port it publishes."""
    out = set(published)
    for spec in image_exposed:
        number, _, proto = spec.partition("/")
        if number.isdigit():
            out.add((int(number), proto or "tcp"))
    return out


def parse(link: str) -> tuple[str, str]:
    """"name[:alias]" -> (name, alias). Also docker's own form in an inspected HostConfig,
    "/name:/parent/alias", which clients send back."""
    target, _, alias = link.partition(":")
    target = target.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] or target
    if not target:
        raise InvalidArgument(f"invalid link {link!r}: want container[:alias]")
    return target, alias
