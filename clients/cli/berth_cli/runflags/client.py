"""run/create's flags that the CLI itself carries out: --cidfile, --pull, --platform,
-q/--quiet, --disable-content-trust."""

from __future__ import annotations

import os

PULL_POLICIES = ("always", "missing", "never")


def add_flags(p) -> None:
    p.add_argument("--cidfile", default="", help="write the container's id to this file")
    p.add_argument("--pull", default="missing", help="pull the image: always, missing (default) or never")
    p.add_argument("--platform", default="", help="the image's platform (os/arch), e.g. linux/amd64")
    p.add_argument("-q", "--quiet", action="store_true", help="do not show the pull's progress")
    # docker's default, and the only way berth works: digests are checked, signatures are not.
    p.add_argument("--disable-content-trust", action="store_true", default=True,
                   help="skip image signature verification (always: berth checks digests, not signatures)")


def host_platform() -> str:
    machine = os.uname().machine
    return "linux/" + {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def apply(ns, config) -> None:
    if ns.pull not in PULL_POLICIES:
        raise ValueError(f'--pull: invalid pull option: "{ns.pull}": must be one of "always", '
                         f'"missing" or "never"')
    if ns.platform and ns.platform.lower().split("/")[:2] != host_platform().split("/"):
        # Containers run natively: an image of another platform could not start here.
        raise ValueError(f"--platform: {ns.platform} is not this host's platform ({host_platform()}); "
                         "berth runs images of its host's platform only")
    if ns.cidfile and os.path.exists(ns.cidfile):
        raise ValueError(f"Container ID file found, make sure the other container isn't running "
                         f"or delete {ns.cidfile}")


def write_cidfile(ns, container_id: str) -> None:
    """docker writes the id as soon as the container exists (before it runs)."""
    if getattr(ns, "cidfile", ""):
        try:
            with open(ns.cidfile, "x") as f:
                f.write(container_id)
        except OSError as exc:
            raise ValueError(f"--cidfile: failed to create the container ID file: {exc}") from None
