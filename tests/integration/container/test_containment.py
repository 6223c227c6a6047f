"""Containment probed from inside containers: seccomp, capabilities, no_new_privs, masked
and read-only paths, devices, raw sockets, privileged, rlimits and the other confinement
options of the container service's Security and Resources.

Each probe runs in a real container (runc, conmon, overlay over a busybox rootfs) and
reads what the kernel says about the process (/proc/self/status, errno of a syscall),
never what berth meant to configure.
"""

from __future__ import annotations

import os
import shutil

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import mount_pb2
from berth.types.v1 import security_pb2
from services.common import errors
from services.common.config import Config
from services.container import security
from tests.integration.container.conftest import logs, new_id, run
from tests.support import probe as probe_mod

BB = "/bin/busybox"
EPERM = 1


@pytest.fixture(scope="module")
def probe():
    d = probe_mod.temporary_dir()
    try:
        path = probe_mod.build(d)
        if path is None:
            pytest.skip("needs gcc and libc6-dev for the static syscall probe")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def output(client, roots, *args, probe_dir=None, **kw) -> tuple[int, str]:
    spec = roots.spec(*args, **kw)
    if probe_dir:
        spec.mounts.append(mount_pb2.Mount(type="bind", source=probe_dir, target="/probe",
                                           options=["rbind", "ro"]))
    id = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name=f"t{id[:10]}", spec=spec))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    code = (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code
    text = b"".join(e.data for e in await logs(client, id)).decode()
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    return code, text


def status_field(text: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(key + ":"))


def caps(mask: str) -> set[str]:
    value = int(mask, 16)
    return {c for i, c in enumerate(security.ALL_CAPABILITIES) if value >> i & 1}


STATUS = ("cat", "/proc/self/status")


async def test_default_confinement_is_dockers(client, roots, probe):
    code, text = await output(client, roots, "/probe/probe", "getpid", *probe_mod.SYSCALLS,
                              "personality-query", "personality32", "unshare-user", probe_dir=probe)
    got = probe_mod.parse(text)
    assert code == 0, text
    # The five docker denies, with EPERM (the profile's defaultErrnoRet), through the
    # i386 ABI too; the ordinary calls and the personality query still work.
    assert {k: got[k] for k in probe_mod.SYSCALLS} == {k: EPERM for k in probe_mod.SYSCALLS}
    assert got["personality32"] == EPERM and got["unshare-user"] == EPERM
    assert got["getpid"] == 0 and got["personality-query"] == 0

    _, text = await output(client, roots, *STATUS)
    assert status_field(text, "Seccomp") == "2"
    assert status_field(text, "NoNewPrivs") == "0"
    assert caps(status_field(text, "CapEff")) == set(security.DEFAULT_CAPABILITIES)
    _, text = await output(client, roots, "sh", "-c", "ulimit -n; ulimit -Hn")
    nofile = min(security.DOCKER_NOFILE, _hard_nofile())
    assert text.split()[:2] == [str(nofile), str(nofile)]


def _hard_nofile() -> int:
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return security.DOCKER_NOFILE if hard == resource.RLIM_INFINITY else hard


async def test_unconfined_and_custom_profiles(client, roots, probe):
    _, text = await output(client, roots, "/probe/probe", *probe_mod.SYSCALLS, probe_dir=probe,
                           security=pb.Security(seccomp_profile="unconfined"))
    unconfined = probe_mod.parse(text)
    # Without a filter the kernel answers: the calls docker's profile denies get through.
    assert unconfined["add_key"] == 0 and unconfined["personality"] == 0 and unconfined["userfaultfd"] == 0
    _, text = await output(client, roots, *STATUS, security=pb.Security(seccomp_profile="unconfined"))
    assert status_field(text, "Seccomp") == "0"
    # A profile of one's own: everything allowed but getpid, which answers EACCES (13).
    custom = ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], '
              '"action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}')
    _, text = await output(client, roots, "/probe/probe", "getpid", "add_key", probe_dir=probe,
                           security=pb.Security(seccomp_profile=custom))
    assert probe_mod.parse(text) == {"getpid": 13, "add_key": 0}
    with pytest.raises(errors.InvalidArgument, match="Decoding seccomp profile failed"):
        await run(client, roots, "true", security=pb.Security(seccomp_profile="{not json"))


async def test_capabilities_per_flag(client, roots):
    cases = [
        (pb.Security(cap_drop=["ALL"]), set()),
        (pb.Security(cap_drop=["ALL"], cap_add=["net_raw"]), {"CAP_NET_RAW"}),
        (pb.Security(cap_add=["CAP_NET_ADMIN"], cap_drop=["chown"]),
         set(security.DEFAULT_CAPABILITIES) - {"CAP_CHOWN"} | {"CAP_NET_ADMIN"}),
        (pb.Security(cap_add=["ALL"], cap_drop=["SYS_ADMIN"]),
         set(security.host().bounding) - {"CAP_SYS_ADMIN"}),
    ]
    for sec, want in cases:
        _, text = await output(client, roots, *STATUS, security=sec)
        assert caps(status_field(text, "CapEff")) == want, sec
    with pytest.raises(errors.InvalidArgument, match="unknown capability: 'CAP_BOGUS'"):
        await run(client, roots, "true", security=pb.Security(cap_add=["bogus"]))


async def test_raw_sockets_need_net_raw(client, roots):
    ping = (BB, "ping", "-c", "1", "-W", "1", "127.0.0.1")
    code, text = await output(client, roots, *ping)
    assert code == 0, text
    code, text = await output(client, roots, *ping, security=pb.Security(cap_drop=["NET_RAW"]))
    assert code != 0 and "permission denied" in text.lower()


async def test_no_new_privileges(client, roots):
    _, text = await output(client, roots, *STATUS, security=pb.Security(no_new_privileges=True))
    assert status_field(text, "NoNewPrivs") == "1"


async def test_masked_and_read_only_paths_and_privileged(client, roots):
    script = ("cat /proc/kcore >/dev/null 2>&1 && echo kcore-read || echo kcore-masked; "
              "{ echo 1 > /proc/sys/kernel/ns_last_pid; } 2>/dev/null && echo procsys-rw || echo procsys-ro; "
              "grep -q ' /sys sysfs rw' /proc/mounts && echo sys-rw || echo sys-ro; "
              "ls /dev/loop-control >/dev/null 2>&1 && echo host-devices || echo no-host-devices; "
              "grep Seccomp: /proc/self/status")
    _, text = await output(client, roots, "sh", "-c", script)
    assert text.split()[:4] == ["kcore-masked", "procsys-ro", "sys-ro", "no-host-devices"]
    assert text.split()[-1] == "2"
    _, text = await output(client, roots, "sh", "-c", script + "; grep CapEff /proc/self/status",
                           security=pb.Security(privileged=True))
    words = text.split()
    assert words[1:3] == ["procsys-rw", "sys-rw"], text
    assert words[0] in ("kcore-read", "kcore-masked")  # /proc/kcore may be empty on this kernel
    assert "host-devices" in words and words[words.index("Seccomp:") + 1] == "0"
    assert caps(words[-1]) == set(security.host().bounding)


async def test_devices_and_cgroup_rules(client, roots):
    # /dev/loop-control (10:237) is not a default device: absent, then mapped with its rule.
    script = "ls -l /dev/xloop; dd if=/dev/xloop of=/dev/null count=0 2>&1 && echo open-ok"
    dev = security_pb2.DeviceMapping(path_on_host="/dev/loop-control", path_in_container="/dev/xloop",
                                     cgroup_permissions="rw")
    code, text = await output(client, roots, "sh", "-c", script, security=pb.Security(devices=[dev]))
    assert "open-ok" in text and text.startswith("c"), text
    # A node made with mknod opens only when a device cgroup rule allows it.
    mk = "mknod /tmp/lc c 10 237 && dd if=/tmp/lc of=/dev/null count=0 2>&1 && echo open-ok || echo denied"
    _, text = await output(client, roots, "sh", "-c", mk)
    assert "denied" in text and "open-ok" not in text
    _, text = await output(client, roots, "sh", "-c", mk,
                           security=pb.Security(device_cgroup_rules=["c 10:237 rwm"]))
    assert "open-ok" in text
    with pytest.raises(errors.InvalidArgument, match="not a device node"):
        await run(client, roots, "true", security=pb.Security(
            devices=[security_pb2.DeviceMapping(path_on_host="/etc/hostname")]))
    with pytest.raises(errors.InvalidArgument, match="invalid device cgroup format"):
        await run(client, roots, "true", security=pb.Security(device_cgroup_rules=["x 1:2 r"]))


async def test_sysctls_ulimits_groups_shm_oom(client, roots, tmp_path):
    ns = f"bcs{os.getpid() % 100000}"
    import subprocess
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sec = pb.Security(sysctls={"net.ipv4.ip_unprivileged_port_start": "99", "kernel.shmmni": "1234"},
                          ulimits=[security_pb2.Ulimit(name="nofile", soft=256, hard=512),
                                   security_pb2.Ulimit(name="nproc", soft=100, hard=200)],
                          group_add=["app", "4242"], shm_size=8 << 20, oom_score_adj=500)
        _, text = await output(
            client, roots, "sh", "-c",
            "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni; ulimit -n; ulimit -Hn; "
            "ulimit -u; id -G; df -k /dev/shm | tail -1; cat /proc/self/oom_score_adj",
            security=sec, netns_path=f"/run/netns/{ns}")
        words = text.split()
        assert words[:6] == ["99", "1234", "256", "512", "100", "0"], text
        assert "1000" in words and "4242" in words
        assert "8192" in words and words[-1] == "500"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    for sec, message in (
            (pb.Security(sysctls={"kernel.hostname": "x"}), "sysctl 'kernel.hostname' is not allowed"),
            (pb.Security(sysctls={"net.ipv4.ip_forward": "1"}), "not allowed in host network namespace"),
            (pb.Security(oom_score_adj=-500), "lowering it needs CAP_SYS_RESOURCE"),
            (pb.Security(ulimits=[security_pb2.Ulimit(name="nofile", soft=1, hard=10**7)]),
             "raising it needs CAP_SYS_RESOURCE"),
            (pb.Security(group_add=["nosuchgroup"]), "Unable to find group nosuchgroup")):
        with pytest.raises(errors.InvalidArgument, match=message):
            await run(client, roots, "true", security=sec)


async def test_shared_namespaces(client, roots):
    target = await run(client, roots, "sh", "-c", "echo shared > /dev/shm/note; exec sleep 300", hostname="target1",
                       security=pb.Security(ipc_mode="shareable"))
    private = await run(client, roots, "sleep", "300")
    try:
        mode = f"container:{target}"
        script = ("hostname; ps -o pid,args | grep -c 'sleep 300'; "
                  "while [ ! -e /dev/shm/note ]; do sleep 0.1; done; cat /dev/shm/note")
        _, text = await output(client, roots, "sh", "-c", script,
                               security=pb.Security(pid_mode=mode, uts_mode=mode, ipc_mode=mode))
        assert text.split()[0] == "target1" and int(text.split()[1]) >= 1 and text.split()[2] == "shared", text
        with pytest.raises(errors.FailedPrecondition, match="non-shareable"):
            await run(client, roots, "true", security=pb.Security(ipc_mode=f"container:{private}"))
        _, text = await output(client, roots, BB, "readlink", "/proc/self/ns/pid",
                               security=pb.Security(pid_mode="host"))
        assert text.strip() == os.readlink("/proc/self/ns/pid")
    finally:
        for id in (target, private):
            await client.RemoveContainer(pb.RemoveContainerRequest(id=id, force=True))
    with pytest.raises(errors.FailedPrecondition, match="non running container"):
        await run(client, roots, "true", security=pb.Security(pid_mode=f"container:{target}"))


async def test_init_resources_and_runtime(client, roots):
    if not security.host().init_binary:
        pytest.skip("needs tini (make deps installs it)")
    _, text = await output(client, roots, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '",
                           security=pb.Security(init=True))
    assert text.startswith("/sbin/docker-init -- sh")
    # The limits as the kernel holds them, read on the host side of the container's cgroups.
    id = await run(client, roots, "sleep", "300", resources=pb.Resources(
        memory_bytes=64 << 20, memory_swap=96 << 20, memory_reservation=32 << 20, cpuset_cpus="0",
        oom_kill_disable=True))
    try:
        def read(ctrl: str, name: str) -> str:
            with open(f"/sys/fs/cgroup/{ctrl}/berth/{id}/{name}") as f:
                return f.read()
        assert read("cpuset", "cpuset.cpus").strip() == "0"
        assert int(read("memory", "memory.soft_limit_in_bytes")) == 32 << 20
        assert int(read("memory", "memory.memsw.limit_in_bytes")) == 96 << 20
        assert "oom_kill_disable 1" in read("memory", "memory.oom_control")
        # No limit asked for: the daemon default.
        assert read("pids", "pids.max").strip() == str(Config().default_pids_limit)
    finally:
        await client.KillContainer(pb.KillContainerRequest(id=id, signal="KILL"))
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    with pytest.raises(errors.InvalidArgument, match="unknown or invalid runtime name: crun"):
        await run(client, roots, "true", runtime="crun")
    with pytest.raises(errors.InvalidArgument, match="Requested CPUs are not available"):
        await run(client, roots, "true", resources=pb.Resources(cpuset_cpus="0-63"))
