"""Pulls that must fail with a clear error and store nothing: bad digests, truncated or
stalled bodies, oversize or malformed manifests, unknown media types, 401 and 404."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest

from services.common.errors import (
    BerthError, DeadlineExceeded, InvalidArgument, NotFound, Unauthorized, Unavailable,
)
from services.image.distribution import Credentials
from services.image.registries import RegistriesConfig
from services.image.service import ImageService
from tests.support.registries import FakeRegistry, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_routes(layer: bytes, served_layer: bytes | None = None, manifest_type: str = OCI_MANIFEST,
                 layer_type: str = "application/vnd.oci.image.layer.v1.tar") -> dict:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": manifest_type,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": layer_type, "digest": sha(layer),
                                       "size": len(layer)}]}).encode()
    return {
        "/v2/t/img/manifests/1": (200, {"Content-Type": manifest_type}, manifest),
        f"/v2/t/img/blobs/{sha(config)}": (200, {}, config),
        f"/v2/t/img/blobs/{sha(layer)}": (200, {}, layer if served_layer is None else served_layer),
    }


def pull(svc: ImageService, name: str, creds: Credentials | None = None) -> list:
    async def run():
        return [p async for p in svc.pull(name, creds=creds)]
    return asyncio.run(run())


@pytest.fixture
def svc(tmp_path):
    service = ImageService(str(tmp_path / "image"), registries=RegistriesConfig(progress_timeout=1, connect_timeout=2))
    yield service
    service.close()


def assert_nothing_stored(svc: ImageService) -> None:
    assert svc.store.list_images() == []
    # The config may be stored (it verified); no layer that failed is.
    for digest in svc.content.list():
        assert json.loads(svc.content.read(digest))  # only JSON (the config) got in


def expect(svc, routes, exc_type, text, name="t/img:1"):
    with FakeRegistry(routes) as fake:
        with pytest.raises(exc_type) as info:
            pull(svc, f"{fake.host}/{name}")
    assert text in info.value.message, info.value.message
    assert_nothing_stored(svc)
    return info.value


LAYER = b"x" * 5000


def test_wrong_digest_is_never_stored(svc):
    expect(svc, image_routes(LAYER, served_layer=b"y" * 5000), InvalidArgument, "verification failed")
    assert os.listdir(svc.content.partial_dir) == []


def test_truncated_body_is_kept_only_as_a_partial_download(svc):
    expect(svc, image_routes(LAYER, served_layer=LAYER[:1000]), Unavailable, "truncated")
    assert os.listdir(svc.content.partial_dir) == [sha(LAYER)[7:]]
    assert not svc.content.exists(sha(LAYER))


def test_oversize_body_is_refused(svc):
    expect(svc, image_routes(LAYER, served_layer=LAYER + b"more"), InvalidArgument, "more than")


def test_malformed_oversize_and_unknown_manifests(svc):
    expect(svc, {"/v2/t/img/manifests/1": (200, {"Content-Type": OCI_MANIFEST}, b"{nope")},
           InvalidArgument, "not valid JSON")
    expect(svc, {"/v2/t/img/manifests/1": (200, {"Content-Type": OCI_MANIFEST}, b" " * (5 * 1024 * 1024))},
           InvalidArgument, "too large")
    expect(svc, image_routes(LAYER, manifest_type="application/x-strange"), InvalidArgument,
           "unsupported media type")
    expect(svc, image_routes(LAYER, layer_type="application/x-foreign"), InvalidArgument,
           "unsupported media type")


def test_not_found_and_unauthorized(svc):
    expect(svc, {}, NotFound, "repository name not known")
    challenge = {"WWW-Authenticate": 'Basic realm="test"'}
    unauthorized = {"/v2/t/img/manifests/1": (401, challenge, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')}
    expect(svc, unauthorized, Unauthorized, "berth login")
    with FakeRegistry(unauthorized) as fake:
        with pytest.raises(Unauthorized, match="authentication required"):
            pull(svc, f"{fake.host}/t/img:1", Credentials("alice", "wrong"))


def test_stalled_transfer_times_out(svc):
    routes = image_routes(LAYER)
    routes[f"/v2/t/img/blobs/{sha(LAYER)}"] = (200, {"Content-Length": str(len(LAYER))}, "hang")
    expect(svc, routes, DeadlineExceeded, "stalled")


def test_unreachable_registry_fails_fast(svc):
    with pytest.raises(Unavailable):
        pull(svc, f"127.0.0.1:{free_port()}/t/img:1")
    assert_nothing_stored(svc)


def test_good_image_pulls_and_unpacks(svc):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = buf.getvalue()
    with FakeRegistry(image_routes(layer)) as fake:
        progress = pull(svc, f"{fake.host}/t/img:1")
    assert progress[-1].status.startswith("Status: Downloaded newer image for")
    assert len(svc.store.list_images()) == 1
