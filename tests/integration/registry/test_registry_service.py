"""berth-registry over HTTP: the OCI distribution API as clients use it, its checks, auth, GC."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.support.engine import PYTHON, REPO
from tests.support.registries import BerthRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Http:
    def __init__(self, base: str, auth: tuple[str, str] | None = None):
        self.base = base
        self.auth = auth

    def __call__(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def push_blob(http: Http, repo: str, data: bytes) -> str:
    digest = sha(data)
    status, _, _ = http("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data)
    assert status == 201
    return digest


def push_image(http: Http, repo: str, tag: str, layer: bytes = b"layer") -> tuple[str, bytes]:
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    c, lay = push_blob(http, repo, config), push_blob(http, repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay, "size": len(layer)}]}).encode()
    status, headers, body = http("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST})
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == sha(manifest)
    return sha(manifest), manifest


@pytest.fixture
def registry():
    with BerthRegistry() as reg:
        yield reg


def test_chunked_upload_checks_content_range_and_digest(registry):
    http = Http(registry.url)
    data = b"a" * 1000 + b"b" * 500
    status, headers, _ = http("POST", "/v2/team/app/blobs/uploads/")
    assert status == 202
    location = headers["Location"]
    status, headers, _ = http("PATCH", location, data[:1000], {"Content-Range": "0-999"})
    assert status == 202 and headers["Range"] == "0-999"
    # A chunk that does not start where the upload ends is refused.
    status, _, _ = http("PATCH", location, data[1000:], {"Content-Range": "900-1399"})
    assert status == 416
    status, _, _ = http("PATCH", location, data[1000:], {"Content-Range": "1000-1499"})
    assert status == 202
    status, _, body = http("PUT", f"{location}?digest={sha(b'other')}", b"")
    assert status == 400 and json.loads(body)["errors"][0]["code"] == "DIGEST_INVALID"
    status, _, _ = http("HEAD", f"/v2/team/app/blobs/{sha(data)}")
    assert status == 404


def test_pull_manifest_blob_range_and_deletes(registry):
    http = Http(registry.url)
    digest, manifest = push_image(http, "team/app", "v1", b"0123456789")
    status, headers, body = http("GET", "/v2/team/app/manifests/v1")
    assert status == 200 and body == manifest and headers["Content-Type"] == OCI_MANIFEST
    layer = sha(b"0123456789")
    status, headers, body = http("GET", f"/v2/team/app/blobs/{layer}", headers={"Range": "bytes=4-"})
    assert status == 206 and body == b"456789" and headers["Content-Range"] == "bytes 4-9/10"
    # Another repository has to mount a blob before it may serve it.
    assert http("GET", f"/v2/other/blobs/{layer}")[0] == 404
    status, _, _ = http("POST", f"/v2/other/blobs/uploads/?mount={layer}&from=team/app")
    assert status == 201
    assert http("GET", f"/v2/other/blobs/{layer}")[0] == 200
    assert http("DELETE", f"/v2/team/app/manifests/{digest}")[0] == 202
    assert http("GET", "/v2/team/app/manifests/v1")[0] == 404
    assert http("DELETE", f"/v2/other/blobs/{layer}")[0] == 202
    assert http("GET", f"/v2/other/blobs/{layer}")[0] == 404


def test_manifest_checks(registry):
    http = Http(registry.url)
    bad = [
        (b"{not json", "MANIFEST_INVALID"),
        (json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode(), "MANIFEST_INVALID"),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"digest": sha(b"missing"), "size": 7}, "layers": []}).encode(),
         "MANIFEST_BLOB_UNKNOWN"),
    ]
    for body, code in bad:
        status, _, answer = http("PUT", "/v2/team/app/manifests/v1", body, {"Content-Type": OCI_MANIFEST})
        assert status == 400 and json.loads(answer)["errors"][0]["code"] == code
    status, _, _ = http("PUT", "/v2/team/app/manifests/v1", b" " * (4 * 1024 * 1024 + 10),
                        {"Content-Type": OCI_MANIFEST})
    assert status == 413
    assert http("GET", "/v2/team/app/tags/list")[0] == 404


def test_tags_and_catalog_paginate(registry):
    http = Http(registry.url)
    for tag in ("a", "b", "c"):
        push_image(http, "team/app", tag)
    push_image(http, "zeta", "x")
    status, headers, body = http("GET", "/v2/team/app/tags/list?n=2")
    assert json.loads(body) == {"name": "team/app", "tags": ["a", "b"]}
    assert headers["Link"] == '</v2/team/app/tags/list?n=2&last=b>; rel="next"'
    _, headers, body = http("GET", "/v2/team/app/tags/list?n=2&last=b")
    assert json.loads(body)["tags"] == ["c"] and "Link" not in headers
    _, _, body = http("GET", "/v2/_catalog?n=1")
    assert json.loads(body) == {"repositories": ["team/app"]}
    _, _, body = http("GET", "/v2/_catalog?n=5&last=team/app")
    assert json.loads(body) == {"repositories": ["zeta"]}


def test_htpasswd_basic_auth():
    with BerthRegistry(htpasswd={"alice": "s3cret"}) as reg:
        status, headers, _ = Http(reg.url)("GET", "/v2/")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        assert Http(reg.url, ("alice", "wrong"))("GET", "/v2/")[0] == 401
        assert Http(reg.url, ("alice", "s3cret"))("GET", "/v2/")[0] == 200


def test_garbage_collect_keeps_what_manifests_reach(registry):
    http = Http(registry.url)
    push_image(http, "team/app", "v1", b"kept")
    orphan = push_blob(http, "team/app", b"orphan")
    gc = subprocess.run([PYTHON, "-m", "services.registry", "garbage-collect", "--root", registry.storage],
                        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert gc.returncode == 0, gc.stderr
    assert f"deleted blob {orphan}" in gc.stdout
    assert http("GET", f"/v2/team/app/blobs/{orphan}")[0] == 404
    assert http("GET", f"/v2/team/app/blobs/{sha(b'kept')}")[0] == 200
