"""Pull and push as a user does them, against real peers on 127.0.0.1: Debian's
docker-registry, berth's own registry, and skopeo copying into and out of berth's."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.support.engine import PYTHON, REPO
from tests.support.images import docker_archive_bytes, tar_bytes
from tests.support.registries import DOCKER_REGISTRY, BerthRegistry, DockerRegistry, SlowProxy, free_port

needs_docker_registry = pytest.mark.skipif(not os.path.exists(DOCKER_REGISTRY), reason="docker-registry not installed")
needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


def cli(engine, *args, config_dir: str | None = None, input: str | None = None, timeout: float = 120):
    env = dict(os.environ)
    if config_dir:
        env["BERTH_CONFIG"] = config_dir
    return subprocess.run([PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, input=input)


@needs_docker_registry
def test_push_to_and_pull_from_docker_registry(engine, busybox_image):
    with DockerRegistry() as reg:
        name = f"{reg.host}/berth/busybox:1"
        cli(engine, "tag", busybox_image, name)
        pushed = cli(engine, "push", name)
        assert pushed.returncode == 0, pushed.stderr
        assert f"The push refers to repository [{reg.host}/berth/busybox]" in pushed.stdout
        assert ": Pushed" in pushed.stdout and "1: digest: sha256:" in pushed.stdout
        again = cli(engine, "push", name)
        assert ": Layer already exists" in again.stdout
        assert cli(engine, "rmi", name).returncode == 0
        pulled = cli(engine, "pull", name)
        assert pulled.returncode == 0, pulled.stderr
        lines = pulled.stdout.splitlines()
        assert lines[0] == "1: Pulling from berth/busybox"
        assert any(line.endswith(": Already exists") or line.endswith(": Pull complete") for line in lines)
        assert any(line.startswith("Digest: sha256:") for line in lines)
        assert f"Status: Image is up to date for {name}" in lines or \
            f"Status: Downloaded newer image for {name}" in lines
        assert lines[-1] == name
        run = cli(engine, "run", "--rm", name, "echo", "pulled")
        assert run.stdout == "pulled\n", run.stderr
        cli(engine, "rmi", name)


@needs_docker_registry
def test_login_basic_auth_and_credentials_in_config_json(engine, busybox_image, tmp_path):
    with DockerRegistry(htpasswd={"alice": "s3cret"}) as reg:
        name = f"{reg.host}/private/busybox:latest"
        cli(engine, "tag", busybox_image, name)
        denied = cli(engine, "push", name, config_dir=str(tmp_path))
        assert denied.returncode != 0 and "authentication required" in denied.stderr
        bad = cli(engine, "login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n",
                  config_dir=str(tmp_path))
        assert bad.returncode != 0 and "unauthorized" in bad.stderr.lower()
        assert not (tmp_path / "config.json").exists()
        good = cli(engine, "login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n",
                   config_dir=str(tmp_path))
        assert good.returncode == 0 and "Login Succeeded" in good.stdout, good.stderr
        doc = json.loads((tmp_path / "config.json").read_text())
        assert base64.b64decode(doc["auths"][reg.host]["auth"]) == b"alice:s3cret"
        pushed = cli(engine, "push", "-q", name, config_dir=str(tmp_path))
        assert pushed.returncode == 0 and pushed.stdout == name + "\n", pushed.stderr
        cli(engine, "rmi", name)
        pulled = cli(engine, "pull", "-q", name, config_dir=str(tmp_path))
        assert pulled.returncode == 0 and pulled.stdout == name + "\n", pulled.stderr
        out = cli(engine, "logout", reg.host, config_dir=str(tmp_path))
        assert f"Removing login credentials for {reg.host}" in out.stdout
        cli(engine, "rmi", name)
        denied = cli(engine, "pull", name, config_dir=str(tmp_path))
        assert denied.returncode != 0 and "authentication required" in denied.stderr


@needs_skopeo
def test_skopeo_copies_into_and_out_of_berth_registry(engine, busybox_image, tmp_path):
    archive = tmp_path / "busybox.tar"
    assert cli(engine, "save", "-o", str(archive), busybox_image).returncode == 0
    with BerthRegistry() as reg:
        dest = f"docker://{reg.host}/skopeo/busybox:copied"
        copy = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest],
                              capture_output=True, text=True, timeout=120)
        assert copy.returncode == 0, copy.stderr
        back = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", dest, f"oci:{tmp_path}/oci:copied"],
                              capture_output=True, text=True, timeout=120)
        assert back.returncode == 0, back.stderr
        assert json.loads((tmp_path / "oci" / "index.json").read_text())["manifests"]
        # What skopeo pushed, berth pulls and runs; a missing image is pulled by run.
        name = f"{reg.host}/skopeo/busybox:copied"
        run = cli(engine, "run", "--rm", name, "echo", "from skopeo")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "from skopeo\n"
        assert f"Unable to find image '{name}' locally" in run.stderr
        cli(engine, "rmi", name)


def test_missing_repository_and_unreachable_registry_fail_clearly(engine):
    with BerthRegistry() as reg:
        missing = cli(engine, "pull", f"{reg.host}/no/such:thing")
        assert missing.returncode != 0
        assert "Error response from daemon" in missing.stderr and "manifest unknown" in missing.stderr
    started = time.monotonic()
    gone = cli(engine, "pull", f"127.0.0.1:{free_port()}/nothing/here:1")
    assert gone.returncode != 0 and "Cannot connect" in gone.stderr or "connect" in gone.stderr.lower()
    assert time.monotonic() - started < 30
    assert cli(engine, "images", "-q", "nothing/here").stdout == ""


def _two_layer_archive(name: str) -> tuple[bytes, bytes, bytes]:
    small = gzip.compress(tar_bytes({"etc/hello": b"hello\n"}))
    # Random bytes do not compress: the big layer really is big on the wire.
    big = gzip.compress(tar_bytes({"data/blob.bin": os.urandom(6 * 1024 * 1024)}), compresslevel=1)
    return docker_archive_bytes([small, big], {"Cmd": ["sh"]}, [name]), small, big


def test_pull_survives_image_service_kills_and_resumes(fresh_engine):
    """SIGKILL the image service twice during a pull: the store stays consistent, completed
    blobs are not fetched again, and the interrupted layer resumes with a Range request."""
    import hashlib
    engine = fresh_engine
    with BerthRegistry() as reg:
        name = f"{reg.host}/crash/test:1"
        archive, small, big = _two_layer_archive(name)
        assert engine.cli("load", input=archive).returncode == 0
        assert engine.cli("push", name).returncode == 0
        assert engine.cli("rmi", name).returncode == 0
        big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        state = engine.config.state_dir("image")
        partial = os.path.join(state, "partial", big_digest[7:])
        with SlowProxy(reg.host, delay=0.05, chunk=32 * 1024) as proxy:
            via = f"{proxy.host}/crash/test:1"
            for want_bytes in (64 * 1024, 1024 * 1024):
                puller = subprocess.Popen(
                    [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", "pull", via],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if os.path.exists(partial) and os.path.getsize(partial) >= want_bytes and \
                            os.path.exists(os.path.join(state, "blobs", "sha256", small_digest[7:])):
                        break
                    time.sleep(0.02)
                else:
                    puller.kill()
                    pytest.fail("the big layer never started downloading")
                engine.kill_service("image")
                _, err = puller.communicate(timeout=60)
                assert puller.returncode != 0
                engine.wait_serving("image", 30)
                assert engine.cli("images", "-q", via).stdout == ""
                assert os.path.getsize(partial) >= want_bytes
            proxy.delay = 0
            done = engine.cli("pull", via)
            assert done.returncode == 0, done.stderr
            assert engine.cli("images", "-q", via).stdout.strip()
            assert not os.path.exists(partial)
            # Counted at the registry: each completed blob was fetched once, the big one
            # three times, the second and third time from where the last one stopped.
            assert len(reg.blob_gets(small_digest)) == 1
            big_gets = reg.blob_gets(big_digest)
            assert len(big_gets) == 3
            assert big_gets[0]["range"] == ""
            starts = [int(r["range"].removeprefix("bytes=").rstrip("-")) for r in big_gets[1:]]
            assert starts[0] >= 64 * 1024 and starts[1] >= 1024 * 1024
