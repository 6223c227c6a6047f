"""run/create's mount flags (-v, --mount, --tmpfs, --volumes-from, --volume-driver): they mean
what berth_docker.mounts says, the same as the Docker API's Binds, Mounts, Tmpfs and VolumeDriver."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("-v", "--volume", action="append", default=[], metavar="[SRC:]DST[:MODE]",
                   help="bind mount a host path or mount a volume")
    p.add_argument("--mount", action="append", default=[], metavar="type=...,dst=...",
                   help="attach a volume, bind or tmpfs mount")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")
    p.add_argument("--volume-driver", default="", help='driver of the volumes it makes ("local")')


def apply(ns, config) -> None:
    from berth_docker.mounts import flag_mounts
    config.mounts.extend(flag_mounts(ns.volume, ns.mount, ns.tmpfs))
    config.volumes_from.extend(ns.volumes_from)
    # As dockerd: the driver is used only for the volumes the container makes.
    if ns.volume_driver not in ("", "local") and any(m.type == "volume" for m in config.mounts):
        raise ValueError(f"--volume-driver: volume driver {ns.volume_driver!r} is not supported (only \"local\")")
    config.volume_driver = ns.volume_driver
