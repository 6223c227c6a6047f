"""Protobuf <-> image service model types. Protobuf stops here and in api.py."""

from __future__ import annotations

from datetime import datetime

from berth.image.v1 import image_pb2
from berth.types.v1 import mount_pb2
from berth.types.v1 import healthcheck_pb2
from berth.types.v1 import registry_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.image.distribution import Credentials
from services.image.model import Image, ImageConfig, Mount, PreparedSnapshot, Progress, Snapshot


def _timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def config_to_pb(config: ImageConfig) -> image_pb2.ImageConfig:
    return image_pb2.ImageConfig(
        env=config.env, entrypoint=config.entrypoint, cmd=config.cmd,
        working_dir=config.working_dir, user=config.user, labels=config.labels,
        exposed_ports=config.exposed_ports, volumes=config.volumes,
        stop_signal=config.stop_signal, healthcheck=health_to_pb(config.healthcheck),
        shell=config.shell, on_build=config.on_build)


def config_from_pb(pb: image_pb2.ImageConfig) -> ImageConfig:
    return ImageConfig(
        env=tuple(pb.env), entrypoint=tuple(pb.entrypoint), cmd=tuple(pb.cmd),
        working_dir=pb.working_dir, user=pb.user, labels=dict(pb.labels),
        exposed_ports=tuple(pb.exposed_ports), volumes=tuple(pb.volumes),
        stop_signal=pb.stop_signal,
        healthcheck=health_from_pb(pb.healthcheck) if pb.HasField("healthcheck") else {},
        shell=tuple(pb.shell), on_build=tuple(pb.on_build))


# docker's Healthcheck keys and the proto's fields; durations are nanoseconds in both.
_HEALTH_FIELDS = (("Interval", "interval"), ("Timeout", "timeout"), ("Retries", "retries"),
                  ("StartPeriod", "start_period"), ("StartInterval", "start_interval"))


def health_to_pb(health: dict) -> healthcheck_pb2.HealthConfig | None:
    if not health:
        return None
    out = healthcheck_pb2.HealthConfig(test=[str(t) for t in health.get("Test") or ()])
    for key, name in _HEALTH_FIELDS:
        value = health.get(key)
        if isinstance(value, int):
            setattr(out, name, value)
    return out


def health_from_pb(pb: healthcheck_pb2.HealthConfig) -> dict:
    out: dict = {"Test": list(pb.test)} if pb.test else {}
    for key, name in _HEALTH_FIELDS:
        if getattr(pb, name):
            out[key] = getattr(pb, name)
    return out


def image_to_pb(image: Image) -> image_pb2.Image:
    return image_pb2.Image(
        id=image.id, repo_tags=image.repo_tags, repo_digests=image.repo_digests,
        manifest_digest=image.manifest_digest, created=_timestamp(image.created),
        size=image.size, architecture=image.architecture, os=image.os,
        diff_ids=image.diff_ids, config=config_to_pb(image.config),
        config_json=image.config_json, labels=image.labels, parent=image.parent)


def mount_to_pb(mount: Mount) -> mount_pb2.Mount:
    return mount_pb2.Mount(type=mount.type, source=mount.source, target=mount.target,
                           options=mount.options)


def prepared_to_pb(prepared: PreparedSnapshot, reply=image_pb2.PrepareSnapshotResponse):
    """A snapshot's mounts as the reply of PrepareSnapshot (or, with `reply`, GetSnapshotMounts)."""
    return reply(mounts=[mount_to_pb(m) for m in prepared.mounts], image_id=prepared.image_id)


def snapshot_to_pb(snap: Snapshot) -> image_pb2.Snapshot:
    return image_pb2.Snapshot(key=snap.key, image_id=snap.image_id, labels=snap.labels,
                              created=_timestamp(snap.created), size=snap.size)


def auth_from_pb(auth: registry_pb2.RegistryAuth) -> Credentials:
    return Credentials(auth.username, auth.password, auth.identity_token)


def progress_to_pb(p: Progress) -> registry_pb2.Progress:
    return registry_pb2.Progress(id=p.id, status=p.status, current=p.current, total=p.total,
                                 image_id=p.image_id, digest=p.digest)
