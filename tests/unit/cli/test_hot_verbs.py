"""The everyday verbs (ps, images, inspect, the state verbs, build, logs, exec, run -i, start -a,
and their failures) run without protobuf's runtime, json or re: berth_cli.wire reads and writes
their messages. Each runs as the `berth` command does, against a grpcio server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent import futures

import grpc
import pytest

import berth_errors
from berth.engine.v1 import engine_pb2, engine_pb2_grpc

# What these verbs must not load: protobuf's runtime (its package's __init__ aside: the
# well-known types' generated modules are read from there), json (and through it re, enum).
HEAVY = ("json", "re", "enum", "datetime", "hpack")
# Runs the CLI as its launcher does, then names the heavy modules it loaded.
RUN = ("import os, sys\nexit = os._exit\n"
       "def report(code):\n"
       f"    bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}\n"
       "                 or m.startswith('google.') and m != 'google.protobuf')\n"
       "    sys.stderr.write(f'\\nLOADED {bad}\\n'); sys.stderr.flush(); exit(code)\n"
       "os._exit = report\nimport berth_cli.__main__\n")


def _container() -> engine_pb2.ContainerInfo:
    info = engine_pb2.ContainerInfo(
        id="c" * 64, name="web", image="busybox", image_id="sha256:" + "a" * 64, path="sleep", args=["9"],
        network_mode="bridge", state=engine_pb2.ContainerState(status="running", running=True, pid=42),
        config=engine_pb2.ContainerConfig(labels={"a": "b"}))
    info.created.FromSeconds(1_700_000_000)
    info.state.started_at.FromSeconds(1_700_000_001)
    return info


class FakeEngine(engine_pb2_grpc.EngineServiceServicer):
    def ListContainers(self, request, context):
        assert request.all and list(request.filters["status"].values) == ["running"]
        return engine_pb2.ListContainersResponse(containers=[_container()])

    def ListImages(self, request, context):
        image = engine_pb2.ImageInfo(id="sha256:" + "a" * 64, repo_tags=["busybox:latest"], size=2_000_000)
        image.created.FromSeconds(1_700_000_000)
        return engine_pb2.ListImagesResponse(images=[image])

    def InspectContainer(self, request, context):
        if request.id != "web":
            context.abort_with_status(_Status(berth_errors.NotFound(f"No such container: {request.id}")))
        return engine_pb2.InspectContainerResponse(container=_container())

    def InspectImage(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"No such image: {request.reference}")

    def CreateContainer(self, request, context):
        assert request.config.image == "busybox" and list(request.config.ports)[0].host_port == 8080
        return engine_pb2.CreateContainerResponse(id="c" * 64, warnings=["careful"])

    def RunContainer(self, request, context):
        from berth.types.v1 import stdio_pb2
        assert request.attach and list(request.config.cmd) == ["sh", "-c", "x"]
        yield engine_pb2.RunContainerResponse(id="c" * 64)
        yield engine_pb2.RunContainerResponse(output=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDERR, data=b"to stderr\n"))
        yield engine_pb2.RunContainerResponse(output=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=b"to stdout\n"))
        yield engine_pb2.RunContainerResponse(exit=engine_pb2.ExitStatus(exit_code=3))

    def BuildImage(self, request_iterator, context):
        from berth.types.v1 import build_pb2
        first = next(request_iterator)
        assert first.options.tags == ["app"] and first.options.no_cache
        assert first.options.network_mode == "none"
        context_tar = b"".join(r.chunk for r in request_iterator)
        assert b"Dockerfile" in context_tar and b"FROM busybox" in context_tar
        step = build_pb2.BuildStep(number=2, stage="0", index=2, count=2, instruction="RUN echo hi",
                                   state=build_pb2.BUILD_STEP_STATE_STARTED)
        yield engine_pb2.BuildImageResponse(event=build_pb2.BuildEvent(step=step))
        yield engine_pb2.BuildImageResponse(event=build_pb2.BuildEvent(
            output=build_pb2.BuildOutput(number=2, data=b"hi\n")))
        step.state = build_pb2.BUILD_STEP_STATE_DONE
        step.elapsed.FromMilliseconds(1500)
        yield engine_pb2.BuildImageResponse(event=build_pb2.BuildEvent(step=step))
        yield engine_pb2.BuildImageResponse(event=build_pb2.BuildEvent(result=build_pb2.BuildResult(
            image_id="sha256:" + "b" * 64, tags=["docker.io/library/app:latest"])))

    def GetContainerLogs(self, request, context):
        from berth.types.v1 import stdio_pb2
        assert (request.id, request.tail, request.follow) == ("web", 10, False)
        assert request.since.ToNanoseconds() == 1_700_000_000_500_000_000 and not request.HasField("until")
        chunk = stdio_pb2.OutputChunk(stream=stdio_pb2.OUTPUT_STREAM_STDERR, data=b"err\n")
        chunk.time.FromNanoseconds(1_700_000_001_000_000_042)
        yield engine_pb2.GetContainerLogsResponse(chunk=chunk)
        yield engine_pb2.GetContainerLogsResponse(chunk=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=bytes(range(256))))

    def CreateExec(self, request, context):
        if request.container != "web":
            context.abort(grpc.StatusCode.NOT_FOUND, f"No such container: {request.container}")
        assert list(request.cmd) == ["cat"] and list(request.env) == ["A=1"] and request.attach_stdin
        return engine_pb2.CreateExecResponse(id="e1")

    def StartExec(self, request_iterator, context):
        from berth.types.v1 import stdio_pb2
        first = next(request_iterator)
        assert first.start.exec_id == "e1" and not first.start.detach
        got = b""
        for request in request_iterator:  # stdin until close_stdin, echoed to stdout
            if request.close_stdin:
                break
            got += request.stdin
        yield engine_pb2.StartExecResponse(output=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDERR, data=b"err\n"))
        yield engine_pb2.StartExecResponse(output=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=got))
        yield engine_pb2.StartExecResponse(exit_code=5)

    def AttachContainer(self, request_iterator, context):
        from berth.types.v1 import stdio_pb2
        first = next(request_iterator)
        assert first.start.container == "c" * 64 and first.start.start_container
        got = b""
        if first.start.stdin:
            for request in request_iterator:
                if request.close_stdin:
                    break
                got += request.stdin
        yield engine_pb2.AttachContainerResponse(attached="c" * 64)
        yield engine_pb2.AttachContainerResponse(output=stdio_pb2.OutputChunk(
            stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=b"out:" + got))
        yield engine_pb2.AttachContainerResponse(exit=engine_pb2.ExitStatus(exit_code=7))

    def StopContainer(self, request, context):
        if request.id != "web" or request.timeout != 3:
            context.abort(grpc.StatusCode.NOT_FOUND, f"No such container: {request.id}")
        return engine_pb2.StopContainerResponse()


class _Status(grpc.Status):
    """A failure with berth's ErrorInfo in its details, as the services' interceptor sends it."""

    def __init__(self, err):
        self.code, self.details = grpc.StatusCode.NOT_FOUND, str(err)
        self.trailing_metadata = (("grpc-status-details-bin", berth_errors.status_details(err, 5)),)


@pytest.fixture(scope="module")
def host():
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-hot-")
    path = os.path.join(tmp, "s.sock")
    server = grpc.server(futures.ThreadPoolExecutor(4))
    engine_pb2_grpc.add_EngineServiceServicer_to_server(FakeEngine(), server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    yield f"unix://{path}"
    server.stop(0)
    shutil.rmtree(tmp, ignore_errors=True)


def berth(host: str, *args: str, input: bytes | None = None) -> tuple[int, str, str]:
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys\nsys.path[:0] = {sys.path!r}\n" + RUN,
                          "-H", host, *args], capture_output=True, text=input is None, input=input)
    err, _, loaded = out.stderr.rpartition("\nLOADED " if input is None else b"\nLOADED ")
    assert loaded.strip() in ("[]", b"[]"), f"{args} loaded {loaded.strip()}"
    return out.returncode, out.stdout, err


def test_ps(host):
    code, out, _ = berth(host, "ps", "-a", "-f", "status=running")
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["cccccccccccc", "busybox", '"sleep']
    code, out, _ = berth(host, "ps", "-a", "-f", "status=running", "--format", "{{.Names}} {{.Label \"a\"}}")
    assert out == "web b\n"


def test_images(host):
    code, out, _ = berth(host, "images")
    assert code == 0 and out.splitlines()[1].split()[:3] == ["busybox", "latest", "aaaaaaaaaaaa"]


def test_inspect_and_its_failures(host):
    code, out, _ = berth(host, "inspect", "web")
    assert code == 0 and json.loads(out)[0]["Config"]["Labels"] == {"a": "b"}
    code, out, _ = berth(host, "inspect", "-f", "{{.State.Pid}} {{.Name}}", "web")
    assert out == "42 /web\n"
    code, out, err = berth(host, "inspect", "--type", "container", "nope")
    assert code == 1 and "No such container: nope" in err


def test_state_verbs_and_their_failures(host):
    assert berth(host, "stop", "-t", "3", "web")[:2] == (0, "web\n")
    code, out, err = berth(host, "stop", "-t", "3", "web", "gone ü")
    assert (code, out) == (1, "web\n") and "Error response from daemon: No such container: gone ü" in err


def test_run_and_create(host):
    code, out, err = berth(host, "run", "--rm", "-e", "A=1", "busybox", "sh", "-c", "x")
    assert (code, out) == (3, "to stdout\n") and err.startswith("to stderr\n")
    code, out, err = berth(host, "create", "-p", "8080:80", "busybox")
    assert (code, out) == (0, "c" * 64 + "\n") and "WARNING: careful" in err


def test_build(host, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo hi\n")
    code, out, err = berth(host, "build", "--no-cache", "--network=none", "-t", "app", str(tmp_path))
    assert (code, out) == (0, "")
    assert "#2 [0 2/2] RUN echo hi\n" in err and " hi\n" in err and "#2 DONE 1.5s" in err
    assert "naming to docker.io/library/app:latest done" in err
    code, out, err = berth(host, "build", "-q", "-t", "app", "--no-cache", "--network", "none", str(tmp_path))
    assert (code, out) == (0, "sha256:" + "b" * 64 + "\n")

def test_logs(host):
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys\nsys.path[:0] = {sys.path!r}\n" + RUN,
                          "-H", host, "logs", "--tail", "10", "-t", "--since", "1700000000.5", "web"],
                         capture_output=True)
    err, _, loaded = out.stderr.rpartition(b"\nLOADED ")
    assert loaded.strip() == b"[]"
    assert out.returncode == 0 and out.stdout == b"0001-01-01T00:00:00Z " + bytes(range(256))
    assert err == b"2023-11-14T22:13:21.000000042Z err\n"


def test_exec_and_its_failures(host):
    code, out, err = berth(host, "exec", "-i", "-e", "A=1", "web", "cat", input=bytes(range(256)) * 1000)
    assert (code, out, err) == (5, bytes(range(256)) * 1000, b"err\n")
    code, out, err = berth(host, "exec", "gone", "cat")
    assert code == 1 and "No such container: gone" in err


def test_run_interactive_and_start_attached(host):
    code, out, _ = berth(host, "run", "-i", "--rm", "-p", "8080:80", "busybox", input=b"in\x00put")
    assert (code, out) == (7, b"out:in\x00put")
    code, out, _ = berth(host, "start", "-a", "web")
    assert (code, out) == (7, "out:")
