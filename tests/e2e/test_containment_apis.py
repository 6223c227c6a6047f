"""Every confinement option through the three APIs: the berth CLI, the Docker Engine API
(the real docker CLI and docker-py) and the gRPC Engine API, each probed from inside the
container (or on the host side of its cgroups), never by reading back what was asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from services.container import security

DOCKER = shutil.which("docker")


def caps(text: str) -> set[str]:
    line = next(x for x in text.splitlines() if x.startswith("CapEff:"))
    value = int(line.split()[1], 16)
    return {c for i, c in enumerate(security.ALL_CAPABILITIES) if value >> i & 1}


def berth(engine, *args: str) -> subprocess.CompletedProcess:
    return engine.cli(*args, timeout=90)


def run_out(engine, *args: str) -> str:
    r = berth(engine, "run", "--rm", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cgroup(ctrl: str, cid: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{ctrl}/berth/{cid}/{name}") as f:
        return f.read().strip()


@pytest.fixture
def docker(engine, busybox_image):
    if DOCKER is None:
        pytest.skip("no docker CLI installed")
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=90)
    return run


# -- the berth CLI -------------------------------------------------------------------------

def test_cli_capabilities_seccomp_and_privileges(engine, busybox_image, tmp_path):
    status = ("cat", "/proc/self/status")
    out = run_out(engine, "busybox", *status)
    assert caps(out) == set(security.DEFAULT_CAPABILITIES) and "Seccomp:\t2" in out
    out = run_out(engine, "--cap-drop", "ALL", "--cap-add", "net_raw", "busybox", *status)
    assert caps(out) == {"CAP_NET_RAW"}
    out = run_out(engine, "--cap-add", "SYS_ADMIN", "--cap-drop", "CAP_CHOWN", "busybox", *status)
    assert caps(out) == set(security.DEFAULT_CAPABILITIES) - {"CAP_CHOWN"} | {"CAP_SYS_ADMIN"}
    out = run_out(engine, "--security-opt", "no-new-privileges", "busybox", *status)
    assert "NoNewPrivs:\t1" in out
    out = run_out(engine, "--security-opt", "seccomp=unconfined", "busybox", *status)
    assert "Seccomp:\t0" in out
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    r = berth(engine, "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/x")
    assert r.returncode != 0 and "Permission denied" in r.stderr + r.stdout
    out = run_out(engine, "--privileged", "busybox", "sh", "-c",
                  "cat /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev")
    assert caps(out) == set(security.host().bounding) and "Seccomp:\t0" in out
    assert "sysfs rw" in out and "loop-control" in out
    for flags, message in ((["--cap-add", "BOGUS"], "unknown capability: 'CAP_BOGUS'"),
                           (["--runtime", "crun"], "unknown or invalid runtime name: crun"),
                           (["--security-opt", "foo=bar"], "invalid --security-opt"),
                           (["--oom-score-adj", "-10"], "lowering it needs CAP_SYS_RESOURCE")):
        r = berth(engine, "run", "--rm", *flags, "busybox", "true")
        assert r.returncode != 0 and message in r.stderr, (flags, r.stderr)


def test_cli_raw_sockets_devices_sysctls_limits(engine, busybox_image):
    ping = ("busybox", "busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    assert berth(engine, "run", "--rm", *ping).returncode == 0
    r = berth(engine, "run", "--rm", "--cap-drop", "NET_RAW", *ping)
    assert r.returncode != 0 and "permission denied" in (r.stdout + r.stderr).lower()
    out = run_out(engine, "--device", "/dev/loop-control:/dev/lc:rw", "busybox", "sh", "-c",
                  "dd if=/dev/lc of=/dev/null count=0 2>&1 && echo open-ok")
    assert "open-ok" in out
    out = run_out(engine, "--device-cgroup-rule", "c 10:237 rwm", "busybox", "sh", "-c",
                  "busybox mknod /tmp/lc c 10 237 && dd if=/tmp/lc of=/dev/null count=0 2>&1 && echo open-ok")
    assert "open-ok" in out
    out = run_out(engine, "--sysctl", "net.ipv4.ip_unprivileged_port_start=99", "--ulimit", "nofile=100:200",
                  "--ulimit", "nproc=50", "--group-add", "app", "--group-add", "777", "--shm-size", "8m",
                  "--tmpfs", "/scratch:size=1m,mode=1700", "--oom-score-adj", "300", "--init", "busybox", "sh", "-c",
                  "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ulimit -n; ulimit -Hn; ulimit -u; id -G; "
                  "df -k /dev/shm /scratch | tail -2; stat -c %a /scratch; cat /proc/self/oom_score_adj; "
                  "tr '\\0' ' ' < /proc/1/cmdline")
    lines = out.splitlines()
    assert lines[:4] == ["99", "100", "200", "50"], out
    assert set(lines[4].split()) >= {"0", "1000", "777"}
    assert lines[5].split()[1] == "8192" and lines[6].split()[1] == "1024"
    assert lines[7:9] == ["1700", "300"] and lines[9].startswith("/sbin/docker-init -- sh")
    r = berth(engine, "run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true")
    assert r.returncode != 0 and "not allowed in host network namespace" in r.stderr


def test_cli_namespaces_and_cgroup_limits(engine, busybox_image):
    target = berth(engine, "run", "-d", "--hostname", "donor", "--ipc", "shareable", "busybox", "sh", "-c",
                   "echo from-donor > /dev/shm/n; exec sleep 300").stdout.strip()
    try:
        out = run_out(engine, "--pid", f"container:{target}", "--uts", f"container:{target}",
                      "--ipc", f"container:{target}", "busybox", "sh", "-c",
                      "hostname; ps; while [ ! -e /dev/shm/n ]; do sleep 0.1; done; cat /dev/shm/n")
        assert out.splitlines()[0] == "donor" and "sleep 300" in out and "from-donor" in out
        out = run_out(engine, "--pid", "host", "busybox", "busybox", "readlink", "/proc/self/ns/pid")
        assert out.strip() == os.readlink("/proc/self/ns/pid")
        out = run_out(engine, "--uts", "host", "busybox", "hostname")
        assert out.strip() == os.uname().nodename
    finally:
        berth(engine, "rm", "-f", target)
    cid = berth(engine, "run", "-d", "-m", "64m", "--memory-swap", "96m", "--memory-reservation", "32m",
                "--cpuset-cpus", "0", "--oom-kill-disable", "--pids-limit", "77", "busybox", "sleep", "300"
                ).stdout.strip()
    try:
        assert cgroup("memory", cid, "memory.memsw.limit_in_bytes") == str(96 << 20)
        assert cgroup("memory", cid, "memory.soft_limit_in_bytes") == str(32 << 20)
        assert "oom_kill_disable 1" in cgroup("memory", cid, "memory.oom_control")
        assert cgroup("cpuset", cid, "cpuset.cpus") == "0"
        assert cgroup("pids", cid, "pids.max") == "77"
    finally:
        berth(engine, "rm", "-f", cid)
    cid = berth(engine, "run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        # No --pids-limit: the daemon default.
        assert cgroup("pids", cid, "pids.max") == "4096"
    finally:
        berth(engine, "rm", "-f", cid)


# -- the Docker API: docker CLI and docker-py ----------------------------------------------

def test_docker_cli_security_options_and_inspect(docker, tmp_path):
    r = docker("run", "--rm", "--cap-drop", "NET_RAW", "busybox", "busybox", "ping", "-c", "1", "127.0.0.1")
    assert r.returncode != 0 and "permission denied" in (r.stdout + r.stderr).lower()
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    r = docker("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "mkdir", "/x")
    assert r.returncode != 0 and "not permitted" in r.stderr + r.stdout
    # No SELinux or AppArmor on this host: accepted without effect, as dockerd does.
    r = docker("run", "--rm", "--security-opt", "label=disable", "--security-opt", "apparmor=unconfined",
               "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert r.returncode == 0 and r.stdout.split()[-1] == "1", r.stderr
    r = docker("run", "--rm", "--security-opt", "bogus=1", "busybox", "true")
    assert r.returncode != 0 and "invalid --security-opt" in r.stderr
    r = docker("create", "--privileged", "--cap-add", "NET_ADMIN", "--ulimit", "nofile=10:20", "--sysctl",
               "net.core.somaxconn=1000", "--pids-limit", "50", "--shm-size", "1m", "--init", "--group-add", "12",
               "--cpuset-cpus", "0", "--memory", "64m", "--memory-swap", "-1", "--oom-score-adj", "10",
               "--security-opt", "no-new-privileges", "busybox", "true")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    try:
        host = json.loads(docker("inspect", cid).stdout)[0]["HostConfig"]
        assert host["Privileged"] is True and host["CapAdd"] in (["NET_ADMIN"], ["CAP_NET_ADMIN"])
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}]
        assert host["Sysctls"] == {"net.core.somaxconn": "1000"} and host["PidsLimit"] == 50
        assert host["ShmSize"] == 1 << 20 and host["Init"] is True and host["GroupAdd"] == ["12"]
        assert host["CpusetCpus"] == "0" and host["MemorySwap"] == -1 and host["OomScoreAdj"] == 10
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["Runtime"] == "runc"
    finally:
        docker("rm", "-f", cid)


def test_docker_sdk_options(engine, busybox_image):
    docker_sdk = pytest.importorskip("docker")
    client = docker_sdk.DockerClient(base_url=f"unix://{engine.docker_socket}", version="auto", timeout=60)
    try:
        out = client.containers.run("busybox", ["cat", "/proc/self/status"], remove=True, cap_drop=["ALL"],
                                    cap_add=["KILL"], security_opt=["no-new-privileges"]).decode()
        assert caps(out) == {"CAP_KILL"} and "NoNewPrivs:\t1" in out
        out = client.containers.run("busybox", ["sh", "-c", "ulimit -n; cat /proc/sys/kernel/shmmni"], remove=True,
                                    ulimits=[docker_sdk.types.Ulimit(name="nofile", soft=123, hard=456)],
                                    sysctls={"kernel.shmmni": "777"}).decode()
        assert out.split() == ["123", "777"]
        out = client.containers.run("busybox", ["cat", "/proc/self/status"], remove=True, privileged=True).decode()
        assert "Seccomp:\t0" in out and caps(out) == set(security.host().bounding)
        with pytest.raises(docker_sdk.errors.APIError, match="not allowed"):
            client.containers.run("busybox", "true", remove=True, sysctls={"vm.swappiness": "1"})
    finally:
        client.close()


# -- the gRPC Engine API ---------------------------------------------------------------------

def test_grpc_engine_options(engine, busybox_image):
    import grpc
    from berth.engine.v1 import engine_pb2
    from berth.types.v1 import security_pb2
    stub = engine.engine_stub()

    def run(**kw) -> str:
        config = engine_pb2.ContainerConfig(image="busybox", auto_remove=True, **kw)
        out = b""
        for msg in stub.RunContainer(engine_pb2.RunContainerRequest(config=config, attach=True), timeout=90):
            if msg.HasField("output"):
                out += msg.output.data
        return out.decode()

    out = run(cmd=["cat", "/proc/self/status"], cap_drop=["ALL"], cap_add=["CAP_SETUID"],
              security_opt=["no-new-privileges=true"])
    assert caps(out) == {"CAP_SETUID"} and "NoNewPrivs:\t1" in out and "Seccomp:\t2" in out
    out = run(cmd=["sh", "-c", "ulimit -s; id -G; df -k /dev/shm | tail -1"], group_add=["app"], shm_size=4 << 20,
              ulimits=[security_pb2.Ulimit(name="stack", soft=4 << 20, hard=8 << 20)])
    lines = out.splitlines()
    assert lines[0] == "4096" and "1000" in lines[1].split() and lines[2].split()[1] == "4096"
    out = run(cmd=["cat", "/proc/self/status"], privileged=True)
    assert "Seccomp:\t0" in out
    with pytest.raises(grpc.RpcError) as err:
        run(cmd=["true"], devices=[security_pb2.DeviceMapping(path_on_host="/nonexistent/dev")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "/nonexistent/dev" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        run(cmd=["true"], pid_mode="container:no-such-container")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_exec_keeps_the_containers_confinement(engine, busybox_image):
    cid = berth(engine, "run", "-d", "--cap-drop", "ALL", "--group-add", "777", "--security-opt",
                "no-new-privileges", "busybox", "sleep", "300").stdout.strip()
    try:
        r = berth(engine, "exec", cid, "cat", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        assert caps(r.stdout) == set() and "NoNewPrivs:\t1" in r.stdout and "Seccomp:\t2" in r.stdout
        r = berth(engine, "exec", "-u", "app", cid, "id", "-G")
        assert r.returncode == 0 and set(r.stdout.split()) == {"1000", "777"}, r.stdout + r.stderr
    finally:
        berth(engine, "rm", "-f", cid)
