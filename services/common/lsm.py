"""Which Linux security modules this host runs: berth applies neither SELinux labels nor
AppArmor profiles, so where a module is on, options that name it are refused rather
than accepted without effect (as they are on a host without it, as docker does)."""

from __future__ import annotations

import os


def selinux_enabled() -> bool:
    return os.path.isdir("/sys/fs/selinux") and os.path.exists("/sys/fs/selinux/enforce")


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False
