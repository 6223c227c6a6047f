"""Small conversions between the CRI's shapes and the node services' (names, users, DNS, filters)."""

from __future__ import annotations

import json
import re

from k8s.cri.runtime.v1 import api_pb2 as cri

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


def valid_name(text: str) -> str:
    """`text` with the characters the container service refuses in names replaced."""
    name = _NAME_CHARS.sub("-", text)
    return name if name and name[0].isalnum() else ""


def sandbox_name(m: cri.PodSandboxMetadata) -> str:
    """The unique name of a sandbox, as the kubelet's dockershim spelled it."""
    return valid_name(f"{m.name}_{m.namespace}_{m.uid}_{m.attempt}") or "pod"


def container_name(m: cri.ContainerMetadata, sandbox: cri.PodSandboxMetadata) -> str:
    return valid_name(f"k8s_{m.name}_{sandbox.name}_{sandbox.namespace}_{sandbox.uid}_{m.attempt}")


def user_of(sc, image_user: str) -> str:
    """The container service's `user` ("uid", "name", "uid:gid", ...) for a CRI security context.

    run_as_user / run_as_username win over the image's user; run_as_group
    replaces the group (the image's, or the user's primary group)."""
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
    elif getattr(sc, "run_as_username", ""):
        user = sc.run_as_username
    else:
        user = image_user
    if sc.HasField("run_as_group"):
        return f"{(user.partition(':')[0] or '0')}:{sc.run_as_group.value}"
    return user


def resolv_conf(dns: cri.DNSConfig) -> str:
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def labels_match(labels, selector) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def json_info(value) -> str:
    return json.dumps(value, sort_keys=True)
