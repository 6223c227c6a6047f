"""Domain types of the image service: plain frozen dataclasses, no protobuf."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from berth_docker import reference

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Annotations that carry an image's name in an OCI layout's index.json.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its blob in the content store and what it unpacks to."""

    diff_id: str        # sha256 of the uncompressed tar
    digest: str         # sha256 of the blob as stored (maybe gzip)
    media_type: str
    size: int           # bytes of the stored blob


@dataclass(frozen=True)
class ImageConfig:
    """The part of an OCI image config that decides how a container runs."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    # docker's Healthcheck object as the config spells it: Test, Interval (ns), Timeout, ...
    healthcheck: dict = field(default_factory=dict)
    # SHELL and ONBUILD, as docker's config keeps them (Shell, OnBuild).
    shell: tuple[str, ...] = ()
    on_build: tuple[str, ...] = ()

    @classmethod
    def from_oci(cls, section: dict | None) -> ImageConfig:
        """From the "config" object of an OCI image config (Docker spelling)."""
        c = section or {}
        return cls(
            env=tuple(c.get("Env") or ()),
            entrypoint=tuple(c.get("Entrypoint") or ()),
            cmd=tuple(c.get("Cmd") or ()),
            working_dir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
            labels=dict(c.get("Labels") or {}),
            exposed_ports=tuple(sorted(c.get("ExposedPorts") or {})),
            volumes=tuple(sorted(c.get("Volumes") or {})),
            stop_signal=c.get("StopSignal") or "",
            healthcheck=dict(c.get("Healthcheck") or {}),
            shell=tuple(c.get("Shell") or ()),
            on_build=tuple(c.get("OnBuild") or ()),
        )

    def to_oci(self) -> dict:
        out: dict = {}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.shell:
            out["Shell"] = list(self.shell)
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        return out


@dataclass(frozen=True)
class ImageRecord:
    """An image as the store keeps it."""

    id: str                     # "sha256:<hex>" of the config blob
    manifest_digest: str
    config_json: bytes
    layers: tuple[Layer, ...]
    stored_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    parent: str = ""            # the image committed or created from; "" when pulled or loaded

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(layer.diff_id for layer in self.layers)


@dataclass(frozen=True)
class Image:
    """An image as callers see it: the record plus its names and decoded config."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    manifest_digest: str
    created: datetime
    size: int
    architecture: str
    os: str
    diff_ids: tuple[str, ...]
    config: ImageConfig
    config_json: bytes
    labels: dict[str, str]
    parent: str = ""

    @classmethod
    def from_record(cls, record: ImageRecord, tags: list[str]) -> Image:
        cfg = json.loads(record.config_json)
        repos = sorted({reference.parse(t).name for t in tags})
        return cls(
            id=record.id,
            repo_tags=tuple(sorted(tags)),
            repo_digests=tuple(f"{repo}@{record.manifest_digest}" for repo in repos),
            manifest_digest=record.manifest_digest,
            created=_parse_time(cfg.get("created")) or record.stored_at,
            size=sum(layer.size for layer in record.layers),
            architecture=cfg.get("architecture") or "",
            os=cfg.get("os") or "",
            diff_ids=record.diff_ids,
            config=ImageConfig.from_oci(cfg.get("config")),
            config_json=record.config_json,
            labels=dict(record.labels),
            parent=record.parent,
        )


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    target: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class SnapshotRecord:
    key: str
    image_id: str
    labels: dict[str, str]
    created: datetime
    # Chain IDs of the lower layers, top first: kept so the layers outlive a
    # forced removal of the image.
    chain_ids: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    key: str
    image_id: str
    labels: dict[str, str]
    created: datetime
    size: int


@dataclass(frozen=True)
class PreparedSnapshot:
    mounts: tuple[Mount, ...]
    image_id: str


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Progress:
    """One line of pull or push progress, as docker's JSON messages carry them.

    `id` is a short layer digest, or empty for lines about the whole image.
    `image_id` and `digest` are set on the last message of a successful transfer.
    """

    status: str
    id: str = ""
    current: int = 0
    total: int = 0
    image_id: str = ""
    digest: str = ""
