"""The CRI service driven as the kubelet drives it: runtime.v1 over <run_root>/cri.sock.

One pod with two containers that share its network, exec, logs in the CRI
format at the kubelet's path, stop and remove with nothing left behind; then
what the node cannot honour, refused by name; security contexts (privileged,
capabilities, seccomp, no_new_privs) as the process sees them; ExecSync's timeout; the image
service; exec and port-forward through the streaming server (SPDY). Clients are
generated from the vendored cri-api proto.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import grpc
import pytest

from berth.image.v1 import image_pb2, image_pb2_grpc
from k8s.cri.runtime.v1 import api_pb2 as cri
from k8s.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from tests.support.engine import PYTHON, REPO
from tests.support.images import busybox_docker_archive
from tests.support.registries import BerthRegistry
from tests.support.rootfs import busybox_available
from tests.support.spdy_client import SpdyClient

PAUSE = "registry.k8s.io/pause:3.6"
IMAGE = "cri-test/busybox:1"
CRI_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) (.*)$")


@pytest.fixture(scope="module")
def rt(engine):
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    engine.wait_serving("cri", 60)
    # The sandbox image (its process only holds the pod's namespaces) and a workload image.
    engine.cli("load", input=busybox_docker_archive(PAUSE, ["sleep", "2147483647"]), check=True)
    engine.cli("load", input=busybox_docker_archive(IMAGE, ["sh"]), check=True)
    channel = grpc.insecure_channel(f"unix://{engine.socket('cri')}")
    try:
        yield cri_grpc.RuntimeServiceStub(channel), cri_grpc.ImageServiceStub(channel), channel
    finally:
        channel.close()


def pod_config(tmp: str, **extra) -> cri.PodSandboxConfig:
    uid = secrets.token_hex(4)
    extra.setdefault("linux", cri.LinuxPodSandboxConfig())
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=f"pod-{uid}", namespace="cri-test", uid=uid, attempt=0),
        hostname="cri-test-host", log_directory=tmp, labels={"app": "cri-test", "run": uid},
        annotations={"note": "kept"}, **extra)


def container_config(name: str, command: list[str], **extra) -> cri.ContainerConfig:
    extra.setdefault("linux", cri.LinuxContainerConfig())
    return cri.ContainerConfig(metadata=cri.ContainerMetadata(name=name), image=cri.ImageSpec(image=IMAGE),
                               command=command, log_path=f"{name}.log", **extra)


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def exec_sync(runtime, cid: str, *cmd: str, timeout: int = 20) -> cri.ExecSyncResponse:
    return runtime.ExecSync(cri.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout), timeout=60)


@pytest.fixture
def pod(rt):
    runtime, _, _ = rt
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-cri-logs-")
    made = []

    def run(**extra):
        config = pod_config(tmp, **extra)
        sid = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        made.append(sid)
        return sid, config

    try:
        yield run, tmp
    finally:
        for sid in made:
            runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
            runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def test_pod_with_two_containers_sharing_its_network(engine, rt, pod):
    runtime, _, channel = rt
    version = runtime.Version(cri.VersionRequest(), timeout=10)
    assert (version.runtime_name, version.runtime_api_version) == ("berth", "v1")
    run, logdir = pod
    sid, config = run(dns_config=cri.DNSConfig(servers=["10.254.0.10"], searches=["cri.test"],
                                               options=["ndots:2"]))
    status = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status
    assert status.state == cri.SANDBOX_READY and status.network.ip
    assert dict(status.annotations) == {"note": "kept"}
    listed = runtime.ListPodSandbox(cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(
        label_selector={"run": config.labels["run"]})), timeout=10).items
    assert [p.id for p in listed] == [sid]

    # A web server in one container; the other reaches it on the pod's loopback.
    server = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=container_config(
            "web", ["sh", "-c", "mkdir -p /www && echo served-in-pod > /www/index.html && "
                               "echo web-up && exec httpd -f -p 8080 -h /www"])), timeout=60).container_id
    client = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=container_config(
            "client", ["sh", "-c", "echo to-stderr >&2; exec sleep 3600"],
            envs=[cri.KeyValue(key="GREETING", value="hi there")])), timeout=60).container_id
    for cid in (server, client):
        runtime.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)

    page = wait_for(lambda: (r := exec_sync(runtime, client, "wget", "-qO-", "http://127.0.0.1:8080/"))
                    .exit_code == 0 and r.stdout, what="the web container answering on the pod's network")
    assert page == b"served-in-pod\n"
    r = exec_sync(runtime, client, "sh", "-c", "hostname; echo $GREETING; cat /etc/resolv.conf; exit 3")
    assert r.exit_code == 3
    lines = r.stdout.decode().splitlines()
    assert lines[:2] == ["cri-test-host", "hi there"]
    assert "nameserver 10.254.0.10" in lines and "search cri.test" in lines and "options ndots:2" in lines

    # Logs at <log_directory>/<log_path> in the CRI format.
    web_log = os.path.join(logdir, "web.log")
    wait_for(lambda: os.path.exists(web_log) and b"web-up" in open(web_log, "rb").read(), what="web log")
    record = open(web_log, "rb").read().splitlines()[0]
    assert CRI_LINE.match(record).groups() == (b"stdout", b"F", b"web-up")
    client_log = os.path.join(logdir, "client.log")
    wait_for(lambda: os.path.exists(client_log) and b"to-stderr" in open(client_log, "rb").read(),
             what="client log")
    assert CRI_LINE.match(open(client_log, "rb").read().splitlines()[0]).groups()[:2] == (b"stderr", b"F")
    # The kubelet's rotation: rename, reopen, the new file gets what follows.
    os.rename(web_log, web_log + ".1")
    runtime.ReopenContainerLog(cri.ReopenContainerLogRequest(container_id=server), timeout=10)
    assert os.path.exists(web_log)

    only_running = cri.ContainerFilter(pod_sandbox_id=sid,
                                       state=cri.ContainerStateValue(state=cri.CONTAINER_RUNNING))
    running = runtime.ListContainers(cri.ListContainersRequest(filter=only_running), timeout=10).containers
    assert {c.id for c in running} == {server, client}
    stats = runtime.ListContainerStats(cri.ListContainerStatsRequest(
        filter=cri.ContainerStatsFilter(pod_sandbox_id=sid)), timeout=30).stats
    assert {s.attributes.id for s in stats} == {server, client}
    assert all(s.cpu.timestamp and s.memory.timestamp for s in stats)
    assert all(s.writable_layer.fs_id.mountpoint for s in stats)

    runtime.StopContainer(cri.StopContainerRequest(container_id=server, timeout=5), timeout=60)
    st = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=server), timeout=30).status
    assert st.state == cri.CONTAINER_EXITED and st.finished_at >= st.started_at > 0
    assert st.log_path == web_log
    runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=server), timeout=60)
    runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=server), timeout=60)  # idempotent

    runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    assert runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid),
                                    timeout=10).status.state == cri.SANDBOX_NOTREADY
    runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
    # Nothing left behind: no CRI records, no node containers, no snapshots.
    assert not [c for c in runtime.ListContainers(cri.ListContainersRequest(), timeout=10).containers
                if c.pod_sandbox_id == sid]
    with pytest.raises(grpc.RpcError) as err:
        runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    ps = engine.cli("ps", "-a", "--no-trunc", "-q", check=True).stdout
    assert not {sid, server, client} & set(ps.split())
    with grpc.insecure_channel(f"unix://{engine.socket('image')}") as ch:
        keys = {s.key for s in image_pb2_grpc.ImageServiceStub(ch).ListSnapshots(
            image_pb2.ListSnapshotsRequest(), timeout=10).snapshots}
    assert not {sid, server, client} & keys


def test_unsupported_fields_are_refused_by_name(rt, pod):
    runtime, _, _ = rt
    run, _ = pod
    sid, config = run()
    before = len(runtime.ListContainers(cri.ListContainersRequest(), timeout=10).containers)
    bad = container_config("bad", ["true"], linux=cri.LinuxContainerConfig(
        resources=cri.LinuxContainerResources(hugepage_limits=[cri.HugepageLimit(page_size="2MB", limit=2 << 20)])))
    with pytest.raises(grpc.RpcError) as err:
        runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=config,
                                                           config=bad), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hugepage_limits" in err.value.details()
    # A privileged container needs a privileged pod (containerd's rule).
    privileged = container_config("priv", ["true"], linux=cri.LinuxContainerConfig(
        security_context=cri.LinuxContainerSecurityContext(privileged=True)))
    with pytest.raises(grpc.RpcError) as err:
        runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=config,
                                                           config=privileged), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "privileged" in err.value.details()
    group_only = container_config("grp", ["true"], linux=cri.LinuxContainerConfig(
        security_context=cri.LinuxContainerSecurityContext(run_as_group=cri.Int64Value(value=5))))
    with pytest.raises(grpc.RpcError) as err:
        runtime.CreateContainer(cri.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=config,
                                                           config=group_only), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "run_as_group" in err.value.details()
    assert len(runtime.ListContainers(cri.ListContainersRequest(), timeout=10).containers) == before
    with pytest.raises(grpc.RpcError) as err:
        runtime.Exec(cri.ExecRequest(container_id="0" * 64, cmd=["sh"], stdout=True), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


MOUNT = "mkdir -p /m && mount -t tmpfs t /m"


def _status_fields(runtime, cid: str) -> dict[str, str]:
    out = exec_sync(runtime, cid, "cat", "/proc/self/status").stdout.decode()
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_security_context_confines_as_asked(rt, pod):
    runtime, _, _ = rt
    run, _ = pod
    sid, config = run(linux=cri.LinuxPodSandboxConfig(
        security_context=cri.LinuxSandboxSecurityContext(privileged=True)))

    def started(name: str, sc: cri.LinuxContainerSecurityContext) -> str:
        cid = runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=config, config=container_config(
                name, ["sleep", "3600"], linux=cri.LinuxContainerConfig(security_context=sc))),
            timeout=60).container_id
        runtime.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)
        return cid

    confined = started("confined", cri.LinuxContainerSecurityContext(
        capabilities=cri.Capability(drop_capabilities=["NET_RAW"]), no_new_privs=True,
        seccomp=cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault)))
    status = _status_fields(runtime, confined)
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
    net_raw, sys_admin = 1 << 13, 1 << 21
    assert not int(status["CapEff"], 16) & net_raw and int(status["CapEff"], 16) & 1  # CHOWN kept
    # Without SYS_ADMIN, mounting is refused; the privileged container may.
    assert exec_sync(runtime, confined, "sh", "-c", MOUNT).exit_code != 0

    privileged = started("privileged", cri.LinuxContainerSecurityContext(
        privileged=True, seccomp_profile_path="runtime/default"))
    status = _status_fields(runtime, privileged)
    # Privileged runs without seccomp whatever the profile says (containerd's rule).
    assert status["Seccomp"] == "0" and int(status["CapEff"], 16) & sys_admin
    done = exec_sync(runtime, privileged, "sh", "-c", MOUNT)
    assert done.exit_code == 0, done.stderr


def test_exec_sync_timeout_kills_the_command(rt, pod):
    runtime, _, _ = rt
    run, _ = pod
    sid, config = run()
    cid = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config,
        config=container_config("sleeper", ["sleep", "3600"])), timeout=60).container_id
    runtime.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)
    with pytest.raises(grpc.RpcError) as err:
        exec_sync(runtime, cid, "sleep", "4321", timeout=1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The pod shares one pid namespace: what ran in the container is visible, and the timed-out one is gone.
    wait_for(lambda: b"4321" not in exec_sync(runtime, cid, "ps", "-o", "args").stdout,
             what="the timed-out exec to be killed")


def test_image_service(rt):
    _, images, _ = rt
    listed = images.ListImages(cri.ListImagesRequest(), timeout=30).images
    mine = [i for i in listed if f"docker.io/{IMAGE}" in i.repo_tags or IMAGE in i.repo_tags]
    assert len(mine) == 1 and mine[0].id.startswith("sha256:") and mine[0].size > 0
    status = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image=IMAGE)), timeout=30)
    assert status.image.id == mine[0].id
    absent = images.ImageStatus(cri.ImageStatusRequest(image=cri.ImageSpec(image="cri-test/absent:0")),
                                timeout=30)
    assert not absent.HasField("image")
    images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image="cri-test/absent:0")), timeout=30)
    fs = images.ImageFsInfo(cri.ImageFsInfoRequest(), timeout=30).image_filesystems
    assert fs and fs[0].fs_id.mountpoint and fs[0].used_bytes.value > 0


def test_streaming_exec_and_port_forward(rt, pod):
    """Exec, attach and port-forward over SPDY as kubectl/crictl speak them; each URL serves once."""
    runtime, _, _ = rt
    run, _ = pod
    sid, config = run()
    cid = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=container_config(
            "web", ["sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && "
                               "exec httpd -f -p 8080 -h /www"])), timeout=60).container_id
    runtime.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)

    url = runtime.Exec(cri.ExecRequest(container_id=cid, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"],
                                       stdout=True, stderr=True), timeout=10).url
    client = SpdyClient(url, "v4.channel.k8s.io")
    try:
        assert client.status == 101 and "v4.channel.k8s.io" in client.headers
        err, out, errout = (client.open({"streamtype": t}) for t in ("error", "stdout", "stderr"))
        got = client.collect({err, out, errout})
    finally:
        client.close()
    assert (got[out], got[errout]) == (b"out\n", b"err\n")
    status = json.loads(got[err])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    again = SpdyClient(url, "v4.channel.k8s.io")
    again.close()
    assert again.status == 404

    # Attach to a shell's own stdio: what it is given on stdin, it runs; closing stdin ends it.
    shell = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=container_config(
            "shell", ["sh"], stdin=True, stdin_once=True)), timeout=60).container_id
    runtime.StartContainer(cri.StartContainerRequest(container_id=shell), timeout=60)
    url = runtime.Attach(cri.AttachRequest(container_id=shell, stdin=True, stdout=True, stderr=True),
                         timeout=10).url
    client = SpdyClient(url, "v4.channel.k8s.io")
    try:
        err, stdin, out, errout = (client.open({"streamtype": t})
                                   for t in ("error", "stdin", "stdout", "stderr"))
        client.send(stdin, b"echo attached-$((40+2)); echo oops >&2\n", fin=True)
        got = client.collect({err, out, errout})
    finally:
        client.close()
    assert (got[out], got[errout]) == (b"attached-42\n", b"oops\n")
    assert json.loads(got[err])["status"] == "Success"

    url = runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sid), timeout=10).url

    def fetch() -> bytes:
        client = SpdyClient(url, "portforward.k8s.io")
        try:
            assert client.status == 101
            err = client.open({"streamtype": "error", "port": "8080", "requestid": "0"}, fin=True)
            data = client.open({"streamtype": "data", "port": "8080", "requestid": "0"})
            client.send(data, b"GET / HTTP/1.0\r\n\r\n", fin=True)
            return client.collect({data, err})[data]
        finally:
            client.close()

    reply = b""

    def served() -> bool:
        nonlocal reply, url
        reply = fetch()
        if b"forwarded" in reply:
            return True
        # The server was not up yet: a new URL for the next try (each serves once).
        url = runtime.PortForward(cri.PortForwardRequest(pod_sandbox_id=sid), timeout=10).url
        return False

    wait_for(served, what="the web container through port-forward")
    assert reply.startswith(b"HTTP/1.") and reply.endswith(b"forwarded\n")


def test_restart_of_the_cri_service_keeps_pods_and_their_logs(engine, rt, pod):
    runtime, _, _ = rt
    run, logdir = pod
    sid, config = run()
    cid = runtime.CreateContainer(cri.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=config, config=container_config(
            "counter", ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done"])),
        timeout=60).container_id
    runtime.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=60)
    path = os.path.join(logdir, "counter.log")

    def numbers() -> list[int]:
        with open(path, "rb") as f:
            return [int(m.group(3)[5:]) for line in f.read().splitlines() if (m := CRI_LINE.match(line))]

    wait_for(lambda: os.path.exists(path) and len(numbers()) >= 5, what="the first lines")
    # What a CreateContainer cut short by a crash leaves: a labelled snapshot and no CRI record.
    orphan = secrets.token_hex(32)
    image_stub = image_pb2_grpc.ImageServiceStub(engine.channel("image"))
    image_id = image_stub.GetImage(image_pb2.GetImageRequest(reference=IMAGE), timeout=10).image.id
    image_stub.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
        key=orphan, image=image_id, labels={"io.berth.cri.container": orphan}), timeout=30)
    engine.kill_service("cri")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            runtime.Version(cri.VersionRequest(), timeout=2)
            break
        except grpc.RpcError:
            time.sleep(0.2)
    st = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=sid), timeout=10).status
    assert st.state == cri.SANDBOX_READY
    state = runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=cid), timeout=10).status.state
    assert state == cri.CONTAINER_RUNNING
    seen = len(numbers())
    wait_for(lambda: len(numbers()) > seen + 5, what="the relay to resume after the restart")
    got = numbers()
    # Resumed after the last record written: nothing twice, nothing missing.
    assert got == list(range(got[0], got[0] + len(got)))
    keys = {s.key for s in image_stub.ListSnapshots(image_pb2.ListSnapshotsRequest(), timeout=10).snapshots}
    assert orphan not in keys and cid in keys


def test_pull_with_auth_and_remove(engine, rt, tmp_path):
    _, images, _ = rt
    with BerthRegistry(htpasswd={"kube": "pw-1"}) as reg:
        name = f"{reg.host}/cri/busybox:1"
        env = {**os.environ, "BERTH_CONFIG": str(tmp_path)}
        berth = [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}"]
        login = ["login", "-u", "kube", "--password-stdin", reg.host]
        steps = ((["tag", IMAGE, name], None), (login, "pw-1\n"), (["push", "-q", name], None),
                 (["rmi", name], None))
        for args, stdin in steps:
            done = subprocess.run(berth + args, input=stdin, capture_output=True, text=True, env=env,
                                  cwd=REPO, timeout=120)
            assert done.returncode == 0, (args, done.stderr)
        spec = cri.ImageSpec(image=name)
        with pytest.raises(grpc.RpcError) as err:
            images.PullImage(cri.PullImageRequest(image=spec), timeout=120)
        assert "auth" in err.value.details().lower() or err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ref = images.PullImage(cri.PullImageRequest(image=spec, auth=cri.AuthConfig(
            auth=base64.b64encode(b"kube:pw-1").decode())), timeout=120).image_ref
        assert ref.startswith("sha256:")
        assert images.ImageStatus(cri.ImageStatusRequest(image=spec), timeout=30).image.id == ref
        images.RemoveImage(cri.RemoveImageRequest(image=spec), timeout=60)
        assert not images.ImageStatus(cri.ImageStatusRequest(image=spec), timeout=30).HasField("image")
        ref2 = images.PullImage(cri.PullImageRequest(image=spec, auth=cri.AuthConfig(
            username="kube", password="pw-1")), timeout=120).image_ref
        assert ref2 == ref
        images.RemoveImage(cri.RemoveImageRequest(image=cri.ImageSpec(image=ref)), timeout=60)
