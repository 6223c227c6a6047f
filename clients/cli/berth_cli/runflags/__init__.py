"""The flags of `berth run` and `berth create`, one module per group.

Each group module has `add_flags(p)` (its argparse arguments; nothing heavy imported
at module level) and `apply(ns, config)` (the parsed values onto the engine's
ContainerConfig; a bad value is refused with ValueError("--flag: why")). A group is
listed once, in GROUPS. Every flag of docker's run that no group defines is refused
at parse time with a message naming it (refused.py), so a flag is never silently
dropped.
"""

from __future__ import annotations

import importlib

GROUPS = ("general", "storage", "network", "lifecycle", "client", "security", "isolation", "logging")


def _modules():
    return [importlib.import_module(f"berth_cli.runflags.{name}") for name in GROUPS]


def add_flags(p) -> None:
    for module in _modules():
        module.add_flags(p)
    from berth_cli.runflags import refused
    refused.add_flags(p)


def apply(ns, config) -> None:
    for module in _modules():
        module.apply(ns, config)
