"""The confinement rules without a kernel: seccomp profile resolution, capability
arithmetic, sysctl and device syntax, the limits this host cannot raise."""

from __future__ import annotations

import json

import pytest

from services.common import errors
from services.container import seccomp
from services.container import security
from services.container import spec as spec_mod
from services.container.model import Device, Process, Resources, Security, Spec, Ulimit

HOST = security.Host(bounding=tuple(c for c in security.ALL_CAPABILITIES if c != "CAP_SYS_RESOURCE"),
                     oom_score_adj=0, hard_limits={"nofile": 20000, "nproc": -1, "stack": -1},
                     cpus=frozenset({0, 1}), mems=frozenset({0}), swap_accounting=True, cgroup_v1=True,
                     default_pids_limit=4096, init_binary="/usr/bin/tini-static")


def spec(**kw) -> Spec:
    resources = kw.pop("resources", Resources())
    return Spec(process=Process(args=("true",)), netns_path="/run/netns/x", security=Security(**kw),
                resources=resources)


def names(filt: dict) -> set[str]:
    return {n for call in filt["syscalls"] if call["action"] == "SCMP_ACT_ALLOW" and "args" not in call
            for n in call["names"]}


def test_default_profile_is_dockers_on_x86_64():
    filt = seccomp.oci_seccomp(seccomp.default_profile(), list(security.DEFAULT_CAPABILITIES), "x86_64", (6, 18))
    assert filt["defaultAction"] == "SCMP_ACT_ERRNO" and filt["defaultErrnoRet"] == 1
    # The i386 and x32 ABIs are filtered alike: no dodging the list through int 0x80.
    assert filt["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = names(filt)
    for denied in ("userfaultfd", "perf_event_open", "io_uring_setup", "add_key", "keyctl", "bpf", "mount",
                   "unshare", "setns", "kexec_load", "reboot"):
        assert denied not in allowed
    assert {"read", "arch_prctl", "modify_ldt", "ptrace"} <= allowed
    # personality only with docker's personas; clone without namespace flags (masked).
    persona = [c["args"][0]["value"] for c in filt["syscalls"] if c["names"] == ["personality"]]
    assert sorted(persona) == [0, 8, 0x20000, 0x20008, 0xffffffff]
    clone = next(c for c in filt["syscalls"] if c["names"] == ["clone"])
    assert clone["args"] == [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    assert any(c["names"] == ["clone3"] and c["errnoRet"] == 38 for c in filt["syscalls"])
    socket = sorted((c["args"][0]["op"], c["args"][0]["value"]) for c in filt["syscalls"] if c["names"] == ["socket"])
    assert socket == [("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40), ("SCMP_CMP_LT", 38)]


def test_capabilities_change_the_filter_as_in_docker():
    admin = seccomp.oci_seccomp(seccomp.default_profile(), [*security.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN",
                                                             "CAP_PERFMON"], "x86_64", (6, 18))
    allowed = names(admin)
    assert {"mount", "unshare", "setns", "clone", "perf_event_open"} <= allowed
    assert not any(c["names"] == ["clone3"] and c["action"] == "SCMP_ACT_ERRNO" for c in admin["syscalls"])
    arm = seccomp.oci_seccomp(seccomp.default_profile(), [], "aarch64", (6, 18))
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"] and "arch_prctl" not in names(arm)


def test_profile_errors():
    for text, message in (("{nope", "Decoding seccomp profile failed"),
                          ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction"),
                          (json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"], "archMap": [{}]}),
                           "both 'architectures' and 'archMap'"),
                          (json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BOGUS"}]}),
                           "unknown action")):
        with pytest.raises(errors.InvalidArgument, match=message):
            seccomp.load(text)


def test_capability_arithmetic():
    cap = security.capabilities
    assert cap([], ["ALL"], False, HOST) == []
    assert cap(["net_admin"], ["ALL"], False, HOST) == ["CAP_NET_ADMIN"]
    assert set(cap(["ALL"], ["CAP_SYS_ADMIN"], False, HOST)) == set(HOST.bounding) - {"CAP_SYS_ADMIN"}
    assert set(cap([], [], True, HOST)) == set(HOST.bounding)
    assert "CAP_CHOWN" not in cap([], ["chown"], False, HOST)
    with pytest.raises(errors.InvalidArgument, match="unknown capability: 'CAP_NOPE'"):
        cap(["nope"], [], False, HOST)
    with pytest.raises(errors.InvalidArgument, match="CAP_SYS_RESOURCE cannot be added"):
        cap(["SYS_RESOURCE"], [], False, HOST)


@pytest.mark.parametrize("kw, message", [
    ({"sysctls": (("kernel.hostname", "x"),)}, "sysctl 'kernel.hostname' is not allowed"),
    ({"sysctls": (("vm.swappiness", "1"),)}, "is not allowed"),
    ({"sysctls": (("kernel.shmmax", "1"),), "ipc_mode": "host"}, "not allowed in host IPC namespace"),
    ({"ulimits": (Ulimit("nofile", 10, 5),)}, "soft limit must be less than or equal to hard limit"),
    ({"ulimits": (Ulimit("nofile", 10, 30000),)}, "raising it needs CAP_SYS_RESOURCE"),
    ({"ulimits": (Ulimit("bogus", 1, 1),)}, "invalid ulimit type: bogus"),
    ({"oom_score_adj": -1}, "lowering it needs CAP_SYS_RESOURCE"),
    ({"oom_score_adj": 1001}, "range for oom score adj"),
    ({"device_cgroup_rules": ("c 1 r",)}, "invalid device cgroup format"),
    ({"devices": (Device("dev/null"),)}, "is not an absolute path"),
    ({"devices": (Device("/dev/null", "/dev/n", "rx"),)}, "invalid device mode"),
    ({"pid_mode": "container:short"}, "invalid PID mode"),
    ({"shm_size": -1}, "SHM size can not be less than 0"),
    ({"seccomp_profile": "[]"}, "must be a JSON object"),
])
def test_options_refused_with_dockers_words(kw, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        security.resolve(spec(**kw), HOST)


@pytest.mark.parametrize("resources, message", [
    (Resources(memory_swap=1 << 30), "always set the Memory limit"),
    (Resources(memory_bytes=2 << 20, memory_swap=1 << 20), "memoryswap limit should be larger"),
    (Resources(memory_bytes=2 << 20, memory_reservation=4 << 20), "less than memory reservation"),
    (Resources(cpuset_cpus="0-7"), "Requested CPUs are not available - requested 0-7, available: 0,1"),
    (Resources(cpuset_cpus="x"), "Invalid value x for cpuset cpus"),
    (Resources(cpuset_mems="1"), "Requested memory nodes are not available"),
])
def test_resources_refused(resources, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        security.resolve(spec(resources=resources), HOST)


def test_pids_default_and_unlimited():
    assert security.resolve(spec(), HOST).resources.pids_limit == 4096
    assert security.resolve(spec(resources=Resources(pids_limit=-1)), HOST).resources.pids_limit == 0
    assert security.resolve(spec(resources=Resources(pids_limit=9)), HOST).resources.pids_limit == 9


def test_apply_edits_the_oci_config(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("root:x:0:\naudio:x:29:\n")
    s = spec(cap_drop=("ALL",), cap_add=("NET_RAW",), no_new_privileges=True, oom_score_adj=10,
             ulimits=(Ulimit("nproc", 5, 6),), group_add=("audio", "99"), init=True, shm_size=1 << 20,
             sysctls=(("net.core.somaxconn", "9"),), device_cgroup_rules=("c 10:200 rwm",), uts_mode="host",
             resources=Resources(memory_bytes=8 << 20, memory_reservation=4 << 20, oom_kill_disable=True))
    user = spec_mod.User(0, 0, (), "/root")
    config = spec_mod.oci_config("a" * 64, s, str(tmp_path), user)
    security.apply(config, s, str(tmp_path), HOST, lambda cid: security.Donor())
    proc, linux = config["process"], config["linux"]
    assert proc["capabilities"]["effective"] == ["CAP_NET_RAW"] and proc["noNewPrivileges"]
    assert proc["oomScoreAdj"] == 10 and proc["user"]["additionalGids"] == [29, 99]
    assert {r["type"]: (r["soft"], r["hard"]) for r in proc["rlimits"]} == {
        "RLIMIT_NOFILE": (20000, 20000), "RLIMIT_NPROC": (5, 6)}
    assert proc["args"] == ["/sbin/docker-init", "--", "true"]
    assert any(m["destination"] == "/sbin/docker-init" and m["source"] == "/usr/bin/tini-static"
               for m in config["mounts"])
    shm = next(m for m in config["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={1 << 20}" in shm["options"]
    assert "hostname" not in config and "uts" not in {n["type"] for n in linux["namespaces"]}
    assert linux["sysctl"] == {"net.core.somaxconn": "9"} and linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"} in linux["resources"]["devices"]
    assert linux["resources"]["memory"] == {"limit": 8 << 20, "swap": 16 << 20, "reservation": 4 << 20,
                                            "disableOOMKiller": True}
    privileged = spec(privileged=True)
    config = spec_mod.oci_config("a" * 64, privileged, str(tmp_path), user)
    security.apply(config, privileged, str(tmp_path), HOST, lambda cid: security.Donor())
    assert "seccomp" not in config["linux"] and config["linux"]["maskedPaths"] == []
    assert "rw" in next(m for m in config["mounts"] if m["destination"] == "/sys")["options"]
    assert {"allow": True, "access": "rwm"} in config["linux"]["resources"]["devices"]
