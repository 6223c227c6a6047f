"""Where and how the image service reaches registries, read once from a JSON file.

    {
      "default_registry": "registry-1.docker.io",   # serves docker.io names
      "mirrors": {"docker.io": ["http://127.0.0.1:5000"]},  # tried first, for pulls
      "insecure_registries": ["build-host:5000"],    # plain http allowed (loopback always is)
      "certs_dir": "/etc/berth/certs.d",             # <certs_dir>/<host:port>/*.crt: extra CAs
      "max_concurrent_downloads": 3,
      "max_concurrent_uploads": 3,
      "progress_timeout": 30,                        # seconds without a byte: stalled
      "connect_timeout": 10,
      "chunk_size": 5242880                          # push chunk size
    }
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field

from services.common.errors import InvalidArgument

DOCKER_HUB = "docker.io"


@dataclass(frozen=True)
class Endpoint:
    """One base URL to reach a registry domain with."""

    url: str            # "https://registry-1.docker.io"
    host: str           # "registry-1.docker.io" (with port when given)
    mirror: bool = False

    @property
    def secure(self) -> bool:
        return self.url.startswith("https://")


@dataclass(frozen=True)
class RegistriesConfig:
    default_registry: str = "registry-1.docker.io"
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    insecure_registries: tuple[str, ...] = ()
    certs_dir: str = "/etc/berth/certs.d"
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 3
    progress_timeout: float = 30.0
    connect_timeout: float = 10.0
    chunk_size: int = 5 * 1024 * 1024

    def is_insecure(self, host: str) -> bool:
        return _is_loopback(host) or host in self.insecure_registries

    def url_for(self, host: str) -> str:
        return ("http://" if self.is_insecure(host) else "https://") + host

    def endpoints(self, domain: str, for_push: bool = False) -> list[Endpoint]:
        """Where to send requests for a reference's domain, mirrors first (pulls only)."""
        host = self.default_registry if domain == DOCKER_HUB else domain
        out = []
        if not for_push:
            for url in self.mirrors.get(domain, ()):
                url = url.rstrip("/")
                if "://" not in url:
                    url = self.url_for(url)
                out.append(Endpoint(url, url.split("://", 1)[1], mirror=True))
        out.append(Endpoint(self.url_for(host), host))
        return out

    def ca_dir(self, host: str) -> str | None:
        path = os.path.join(self.certs_dir, host)
        return path if os.path.isdir(path) else None


def _is_loopback(host: str) -> bool:
    name = host
    if name.startswith("["):
        name = name[1:name.index("]")]
    elif name.count(":") == 1:
        name = name.split(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load(path: str) -> RegistriesConfig:
    if not path:
        return RegistriesConfig()
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"registries config {path}: {exc}") from None
    defaults = RegistriesConfig()
    return RegistriesConfig(
        default_registry=doc.get("default_registry", defaults.default_registry),
        mirrors={k: tuple(v) for k, v in (doc.get("mirrors") or {}).items()},
        insecure_registries=tuple(doc.get("insecure_registries") or ()),
        certs_dir=doc.get("certs_dir", defaults.certs_dir),
        max_concurrent_downloads=int(doc.get("max_concurrent_downloads", defaults.max_concurrent_downloads)),
        max_concurrent_uploads=int(doc.get("max_concurrent_uploads", defaults.max_concurrent_uploads)),
        progress_timeout=float(doc.get("progress_timeout", defaults.progress_timeout)),
        connect_timeout=float(doc.get("connect_timeout", defaults.connect_timeout)),
        chunk_size=int(doc.get("chunk_size", defaults.chunk_size)),
    )
