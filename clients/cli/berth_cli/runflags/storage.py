"""run/create's mount flags (-v, --mount, --tmpfs, --volumes-from): they mean what
berth_docker.mounts says, the same as the Docker API's Binds, Mounts and Tmpfs."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("-v", "--volume", action="append", default=[], metavar="[SRC:]DST[:MODE]",
                   help="bind mount a host path or mount a volume")
    p.add_argument("--mount", action="append", default=[], metavar="type=...,dst=...",
                   help="attach a volume, bind or tmpfs mount")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")


def apply(ns, config) -> None:
    from berth_docker.mounts import flag_mounts
    config.mounts.extend(flag_mounts(ns.volume, ns.mount, ns.tmpfs))
    config.volumes_from.extend(ns.volumes_from)
