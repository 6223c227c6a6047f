"""Image builds end to end: the docker CLI's legacy builder, `berth build`, the cache,
.dockerignore, stages built at the same time, and errors that name their line."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest

DOCKER = shutil.which("docker")


@pytest.fixture
def docker(engine, busybox_image):
    if DOCKER is None:
        pytest.skip("no docker CLI installed")
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}", "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, cwd: str | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, cwd=cwd, input=input, capture_output=True,
                              timeout=180)
    return run


def _tag() -> str:
    return f"bt-build-{uuid.uuid4().hex[:8]}"


def _context(tmp_path, dockerfile: str, files: dict[str, str] | None = None) -> str:
    for name, text in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return str(tmp_path)


def _build_containers(docker) -> list[str]:
    names = docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()
    return [n for n in names if n.startswith("build-")]


def test_docker_build_runs_copies_and_caches(docker, tmp_path):
    ctx = _context(tmp_path, "FROM busybox\nRUN echo hi > /x\nCOPY file /file\nCMD cat /x /file\n",
                   {"file": "one\n"})
    tag = _tag()
    r = docker("build", "-t", tag, ".", cwd=ctx)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode() + out
    assert "Step 2/4 : RUN echo hi > /x" in out and "Successfully tagged " + tag in out
    # The RUN step's container is removed once the build has ended, not later.
    assert _build_containers(docker) == []
    assert docker("run", "--rm", tag).stdout == b"hi\none\n"

    # Nothing changed: every step from the cache, the same image.
    again = docker("build", "-t", tag, ".", cwd=ctx).stdout.decode()
    assert again.count("Using cache") == 3
    assert again.split("Successfully built ")[1][:12] == out.split("Successfully built ")[1][:12]

    # A file of the context no step takes: nothing to rebuild.
    (tmp_path / "unused").write_text("not copied\n")
    unused = docker("build", "-t", tag, ".", cwd=ctx).stdout.decode()
    assert unused.count("Using cache") == 3

    # One copied file changed: the steps before it are cached, it and those after it run.
    (tmp_path / "file").write_text("two\n")
    changed = docker("build", "-t", tag, ".", cwd=ctx).stdout.decode()
    assert changed.count("Using cache") == 1
    assert docker("run", "--rm", tag).stdout == b"hi\ntwo\n"

    # --no-cache re-uses nothing.
    fresh = docker("build", "--no-cache", "-t", tag, ".", cwd=ctx).stdout.decode()
    assert "Using cache" not in fresh and "Running in" in fresh

    # The cache is counted by system df and emptied by builder prune.
    df = json.loads(docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[-1])
    assert df["Type"] == "Build Cache" and int(df["TotalCount"]) >= 3
    docker("rmi", tag)
    pruned = docker("builder", "prune", "-af")
    assert pruned.returncode == 0, pruned.stderr.decode()
    rebuilt = docker("build", "-t", tag, ".", cwd=ctx).stdout.decode()
    assert "Using cache" not in rebuilt
    docker("rmi", tag)


def test_dockerignore_exceptions_and_the_context_boundary(docker, tmp_path):
    ctx = _context(tmp_path, "FROM busybox\nCOPY . /ctx\nCMD find /ctx -type f\n", {
        ".dockerignore": "ignored\n**/*.log\n!keep.log\nDockerfile\n",
        "ignored/secret": "x", "a/b/debug.log": "x", "keep.log": "k", "src/main.c": "c"})
    os.symlink("/etc/passwd", tmp_path / "link")
    tag = _tag()
    r = docker("build", "-q", "-t", tag, ".", cwd=ctx)
    assert r.returncode == 0, r.stderr.decode()
    found = sorted(docker("run", "--rm", tag).stdout.decode().split())
    assert found == ["/ctx/.dockerignore", "/ctx/keep.log", "/ctx/src/main.c"]
    # The symlink was copied as a link, never followed to the host's file.
    listing = docker("run", "--rm", tag, "ls", "-l", "/ctx/link").stdout
    assert listing.startswith(b"l") and listing.rstrip().endswith(b"-> /etc/passwd"), listing
    docker("rmi", tag)

    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY ../outside /x\n")
    r = docker("build", ".", cwd=ctx)
    assert r.returncode != 0 and b"outside the build context" in r.stderr + r.stdout


def test_errors_name_the_dockerfile_line_and_a_failing_run_its_code(docker, tmp_path):
    ctx = _context(tmp_path, "FROM busybox\n\nFROBNICATE x\n")
    r = docker("build", ".", cwd=ctx)
    assert r.returncode != 0 and b"Dockerfile:3: unknown instruction: FROBNICATE" in r.stderr

    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo before; exit 3\n")
    r = docker("build", ".", cwd=ctx)
    assert r.returncode != 0
    assert b"The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3" in r.stderr
    assert b"before" in r.stdout
    assert _build_containers(docker) == []

    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=secret,id=x cat /run/secrets/x\n")
    r = docker("build", ".", cwd=ctx)
    assert r.returncode != 0 and b"Dockerfile:2: RUN --mount=type=secret is not supported" in r.stderr


def test_config_instructions_args_and_heredocs(docker, tmp_path):
    ctx = _context(tmp_path, "\n".join([
        "ARG BASE=busybox",
        "FROM $BASE",
        "ARG WHO=nobody",
        "ENV GREETING=hello \\",
        "    PLACE=world",
        "LABEL a.b=\"c d\"",
        "WORKDIR /srv",
        "WORKDIR app",
        "RUN <<EOF",
        "echo \"$GREETING $WHO\" > greeting",
        "EOF",
        "COPY --chown=1000:1000 --chmod=600 <<EOF /srv/app/note",
        "note for $PLACE",
        "EOF",
        "EXPOSE 80 53/udp",
        "VOLUME /data",
        "USER 1000:1000",
        "STOPSIGNAL SIGINT",
        "HEALTHCHECK --interval=5s --retries=2 CMD true",
        "ONBUILD RUN echo child",
        "ENTRYPOINT [\"cat\"]",
        "CMD [\"greeting\", \"note\"]",
    ]) + "\n")
    tag = _tag()
    r = docker("build", "--build-arg", "WHO=berth", "-t", tag, ".", cwd=ctx)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    assert docker("run", "--rm", tag).stdout == b"hello berth\nnote for world\n"
    cfg = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "1000:1000"
    assert cfg["Labels"] == {"a.b": "c d"} and cfg["StopSignal"] == "SIGINT"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"} and set(cfg["Volumes"]) == {"/data"}
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and cfg["Healthcheck"]["Retries"] == 2
    assert cfg["OnBuild"] == ["RUN echo child"] and cfg["Entrypoint"] == ["cat"]
    assert "GREETING=hello" in cfg["Env"] and not any(e.startswith("WHO=") for e in cfg["Env"])
    docker("rmi", tag)


def test_independent_stages_run_at_the_same_time(engine, busybox_image, tmp_path):
    # Each stage waits until it sees the other's mark in a shared cache mount: the
    # build can only finish if both stages ran at once.
    wait = ("RUN --mount=type=cache,id=meet,target=/meet echo {me} > /stage && touch /meet/{me}-$RUN_ID && "
            "for i in $(seq 300); do ls /meet | grep -q {other}-$RUN_ID && exit 0; sleep 0.1; done; exit 1")
    (tmp_path / "Dockerfile").write_text("\n".join([
        "FROM busybox AS one", "ARG RUN_ID", wait.format(me="one", other="two"),
        "FROM busybox AS two", "ARG RUN_ID", wait.format(me="two", other="one"),
        "FROM busybox",
        "COPY --from=one /stage /one",
        "COPY --from=two /stage /two",
    ]) + "\n")
    tag = _tag()
    r = engine.cli("build", "--no-cache", "--build-arg", f"RUN_ID={uuid.uuid4().hex}", "-t", tag,
                   str(tmp_path))
    assert r.returncode == 0, r.stderr + r.stdout
    assert "[one 3/3] RUN" in r.stderr and "[two 3/3] RUN" in r.stderr
    out = engine.cli("run", "--rm", tag, "cat", "/one", "/two")
    assert out.stdout == "one\ntwo\n"
    assert engine.cli("rmi", tag).returncode == 0


def test_berth_build_with_a_dockerfile_outside_the_context_and_target(engine, busybox_image, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("data\n")
    dockerfile = tmp_path / "build.Dockerfile"
    dockerfile.write_text("FROM busybox AS base\nCOPY *.txt /in/\nFROM base AS extra\nRUN false\n")
    tag = _tag()
    iid = tmp_path / "iid"
    r = engine.cli("build", "-f", str(dockerfile), "--target", "base", "-t", tag, "--iidfile", str(iid),
                   str(ctx))
    assert r.returncode == 0, r.stderr
    assert "CACHED" in r.stderr or "DONE" in r.stderr
    image_id = iid.read_text()
    assert image_id.startswith("sha256:")
    out = engine.cli("run", "--rm", tag, "cat", "/in/data.txt")
    assert out.stdout == "data\n"

    # The cache outlives the build service: killed, restarted, every step still cached.
    engine.kill_service("build")
    engine.wait_serving("build", timeout=60)
    again = engine.cli("build", "-f", str(dockerfile), "--target", "base", "-t", tag, str(ctx))
    assert again.returncode == 0, again.stderr
    assert "#2 CACHED" in again.stderr
    assert engine.cli("rmi", tag).returncode == 0


def test_a_build_whose_client_goes_away_leaves_no_container(engine, busybox_image, tmp_path):
    from berth.engine.v1 import engine_pb2 as pb
    from berth.types.v1 import build_pb2

    # A RUN step that would outlast the test; the client hangs up once it runs.
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 300\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(tmp_path / "Dockerfile"), arcname="Dockerfile")

    def requests():
        yield pb.BuildImageRequest(options=build_pb2.BuildOptions(no_cache=True))
        yield pb.BuildImageRequest(chunk=buf.getvalue())
    def build_containers() -> list[str]:
        return [n for n in engine.cli("ps", "-a", "--format", "{{.Names}}").stdout.split()
                if n.startswith("build-")]

    call = engine.engine_stub().BuildImage(requests())
    for reply in call:
        if reply.event.HasField("output") and b"started" in reply.event.output.data:
            break
    assert build_containers() != []
    call.cancel()
    deadline = time.monotonic() + 120
    while build_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert build_containers() == []


def test_run_steps_take_an_endpoint_made_ahead_one_container_each(engine, busybox_image, tmp_path):
    from berth.engine.v1 import engine_pb2 as pb
    from berth.network.v1 import network_pb2, network_pb2_grpc
    from berth.types.v1 import build_pb2

    network = network_pb2_grpc.NetworkServiceStub(engine.channel("network"))

    def spares() -> set[str]:
        """Endpoints of no container: the build service's spare (made ahead) only."""
        containers = set(engine.cli("ps", "-aq", "--no-trunc").stdout.split())
        endpoints = network.ListEndpoints(network_pb2.ListEndpointsRequest()).endpoints
        return {e.container_id for e in endpoints} - containers

    def one_spare(other_than: set[str] = frozenset()) -> str:
        deadline = time.monotonic() + 60
        while (found := spares()) and (len(found) != 1 or found & other_than) or not found:
            assert time.monotonic() < deadline, f"not one new spare endpoint: {found}"
            time.sleep(0.2)
        return found.pop()

    def build(dockerfile: str, *tags: str) -> tuple[str, build_pb2.BuildResult]:
        """The RUN step's container id and the result."""
        (tmp_path / "Dockerfile").write_text(dockerfile)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(tmp_path / "Dockerfile"), arcname="Dockerfile")

        def requests():
            yield pb.BuildImageRequest(options=build_pb2.BuildOptions(no_cache=True, tags=tags))
            yield pb.BuildImageRequest(chunk=buf.getvalue())
        cid, result = "", None
        for reply in engine.engine_stub().BuildImage(requests()):
            if reply.event.step.container_id:
                cid = reply.event.step.container_id
            if reply.event.HasField("result"):
                result = reply.event.result
        assert cid and result is not None
        return cid, result

    # A step writes its /etc/hosts; the spare is made once the build has ended, and
    # the last step's commit named the image with both tags.
    one, two = _tag(), _tag()
    first, result = build("FROM busybox\nRUN echo 10.9.9.9 leaked >> /etc/hosts\n", one, two)
    assert [t.split("/")[-1] for t in result.tags] == [f"{one}:latest", f"{two}:latest"]
    for tag in (one, two):
        assert engine.cli("inspect", "-f", "{{.Id}}", tag).stdout.strip() == result.image_id
    spare = one_spare()
    assert spare != first

    # The next RUN takes that spare, sees a fresh /etc/hosts, and a new spare is made.
    second, _ = build("FROM busybox\nRUN ! grep leaked /etc/hosts\n")
    assert second == spare
    spare = one_spare(other_than={second})

    # A spare a killed build service left is deleted by the next one when it starts.
    engine.kill_service("build")
    engine.wait_serving("build", timeout=60)
    deadline = time.monotonic() + 60
    while spares():
        assert time.monotonic() < deadline, f"the killed service's spare is still there: {spares()}"
        time.sleep(0.2)
    third, _ = build("FROM busybox\nRUN true\n")
    assert third != spare
    one_spare(other_than={spare, third})
    for tag in (one, two):
        engine.cli("rmi", tag)
