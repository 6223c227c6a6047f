"""The gateway's mount plan: one mount per destination, user over --volumes-from over VOLUME."""

from __future__ import annotations

import pytest

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.volumes import plan, shared_specs


def spec(**kw):
    return engine_pb2.MountSpec(**kw)


def test_precedence_and_order():
    shared = [spec(type="volume", source="from-other", target="/data"),
              spec(type="volume", source="other2", target="/logs")]
    mine = [spec(type="volume", source="mine", target="/data/"),
            spec(type="tmpfs", target="/data/tmp")]
    out = plan(mine, shared, ["/data", "/cache", "relative", "/"])
    assert [(m.target, m.source) for m in out] == [
        ("/cache", ""), ("/data", "mine"), ("/logs", "other2"), ("/data/tmp", "")]


@pytest.mark.parametrize("bad", [
    spec(type="volume", source="a", target="rel"),
    spec(type="volume", source="a", target="/"),
    spec(type="volume", source="../x", target="/x"),
    spec(type="volume", source="a/b", target="/x"),
    spec(type="bind", source="rel", target="/x"),
    spec(type="tmpfs", source="x", target="/x"),
    spec(type="nfs", target="/x"),
])
def test_bad_specs(bad):
    with pytest.raises(errors.InvalidArgument):
        plan([bad], [], [])


def test_duplicate_target():
    with pytest.raises(errors.InvalidArgument, match="Duplicate mount point: /x"):
        plan([spec(type="volume", target="/x"), spec(type="tmpfs", target="/x/")], [], [])


def test_volumes_from_modes():
    points = [engine_pb2.MountPoint(type="volume", name="v", destination="/v", rw=True),
              engine_pb2.MountPoint(type="bind", source="/h", destination="/h", rw=False,
                                    propagation="rprivate"),
              engine_pb2.MountPoint(type="tmpfs", destination="/t", rw=True)]
    assert [(s.target, s.readonly) for s in shared_specs(points, "")] == [("/v", False), ("/h", True)]
    assert all(s.readonly for s in shared_specs(points, "ro"))
    assert not any(s.readonly for s in shared_specs(points, "rw"))
    with pytest.raises(errors.InvalidArgument):
        shared_specs(points, "rx")
