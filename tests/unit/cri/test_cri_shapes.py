"""The CRI service's pure parts: log records, argv and user rules, refusals, the store's id prefixes."""

from __future__ import annotations

import os

import pytest

from berth.container.v1 import container_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors
from services.container import spec as spec_mod
from services.container.model import Mount, Process, Spec
from services.cri import confinement, containers, convert, logs
from services.cri.store import ContainerRecord, CriStore, SandboxNetwork, SandboxRecord


def test_log_records_are_the_cri_format():
    ns = 1_796_000_000_123_456_789
    assert logs.cri_record(ns, b"stdout", b"hello\n") == b"2026-11-30T00:53:20.123456789Z stdout F hello\n"
    # A line without its newline yet is a partial record, ended here.
    assert logs.cri_record(ns, b"stderr", b"part") == b"2026-11-30T00:53:20.123456789Z stderr P part\n"


def test_resume_point_is_the_last_record(tmp_path):
    path = tmp_path / "c.log"
    path.write_bytes(logs.cri_record(5_000_000_001, b"stdout", b"a\n") +
                     logs.cri_record(7_000_000_002, b"stdout", b"b\n"))
    assert logs.last_record_ns(str(path)) == 7_000_000_002
    assert logs.last_record_ns(str(tmp_path / "absent.log")) == 0


def test_command_and_args_follow_kubernetes():
    assert containers._args(["/ep"], ["cmd"], [], []) == ["/ep", "cmd"]
    assert containers._args(["/ep"], ["cmd"], [], ["a"]) == ["/ep", "a"]
    assert containers._args(["/ep"], ["cmd"], ["/c"], []) == ["/c"]
    assert containers._args(["/ep"], ["cmd"], ["/c"], ["a"]) == ["/c", "a"]


def test_user_from_security_context():
    sc = cri.LinuxContainerSecurityContext()
    assert convert.user_of(sc, "nobody") == "nobody"
    sc.run_as_user.value = 1000
    assert convert.user_of(sc, "nobody") == "1000"
    sc.run_as_group.value = 50
    assert convert.user_of(sc, "nobody") == "1000:50"


SANDBOX = "a" * 64


def test_security_context_maps_onto_security():
    sc = cri.LinuxContainerSecurityContext(no_new_privs=True)
    sc.capabilities.add_capabilities.append("NET_ADMIN")
    sc.capabilities.drop_capabilities.append("net_raw")
    pod = cri.LinuxSandboxSecurityContext()
    s = confinement.container_security(sc, SANDBOX, pod)
    assert list(s.cap_add) == ["NET_ADMIN"] and list(s.cap_drop) == ["NET_RAW"] and s.no_new_privileges
    # No profile is unconfined (containerd's default); the pod's namespaces are the sandbox's.
    assert s.seccomp_profile == "unconfined"
    assert (s.pid_mode, s.ipc_mode, s.uts_mode) == (f"container:{SANDBOX}",) * 3
    sc.namespace_options.pid = cri.NODE
    sc.namespace_options.ipc = cri.NODE
    pod.namespace_options.network = cri.NODE
    s = confinement.container_security(sc, SANDBOX, pod)
    assert (s.pid_mode, s.ipc_mode, s.uts_mode) == ("host", "host", "host")
    sc.namespace_options.pid = cri.CONTAINER
    assert confinement.container_security(sc, SANDBOX, pod).pid_mode == ""
    sc.namespace_options.ipc = cri.POD
    pod.namespace_options.ipc = cri.NODE
    assert confinement.container_security(sc, SANDBOX, pod).ipc_mode == "host"


def test_privileged_needs_a_privileged_pod_and_drops_seccomp():
    sc = cri.LinuxContainerSecurityContext(privileged=True, seccomp_profile_path="runtime/default")
    with pytest.raises(errors.InvalidArgument, match="security_context.privileged"):
        confinement.container_security(sc, SANDBOX, cri.LinuxSandboxSecurityContext())
    s = confinement.container_security(sc, SANDBOX, cri.LinuxSandboxSecurityContext(privileged=True))
    assert s.privileged and s.seccomp_profile == "unconfined"


def test_seccomp_profiles(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    f = confinement.seccomp_profile
    for path in ("runtime/default", "docker/default"):
        assert f(None, path, "sc") == ""
    assert f(None, "", "sc") == f(None, "unconfined", "sc") == "unconfined"
    assert f(None, f"localhost/{profile}", "sc") == profile.read_text()
    typed = cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref=str(profile))
    assert f(typed, "unconfined", "sc") == profile.read_text()  # the typed field wins
    assert f(cri.SecurityProfile(profile_type=cri.SecurityProfile.RuntimeDefault), "", "sc") == ""
    with pytest.raises(errors.InvalidArgument, match="sc.seccomp_profile_path"):
        f(None, str(profile), "sc")  # a path without localhost/
    with pytest.raises(errors.InvalidArgument, match="cannot read"):
        f(None, f"localhost/{tmp_path}/absent.json", "sc")


def test_what_the_spec_cannot_express_is_refused_by_name():
    sc = cri.LinuxContainerSecurityContext()
    sc.capabilities.add_ambient_capabilities.append("NET_ADMIN")
    with pytest.raises(errors.InvalidArgument, match="add_ambient_capabilities"):
        confinement.container_security(sc, SANDBOX, cri.LinuxSandboxSecurityContext())
    named = cri.SecurityProfile(profile_type=cri.SecurityProfile.Localhost, localhost_ref="p")
    with pytest.raises(errors.InvalidArgument, match="apparmor"):
        confinement.check_apparmor(named, "", "security_context")
    confinement.check_apparmor(cri.SecurityProfile(profile_type=cri.SecurityProfile.Unconfined), "", "sc")
    r = cri.LinuxContainerResources(cpuset_cpus="0", memory_limit_in_bytes=1 << 30,
                                    memory_swap_limit_in_bytes=2 << 30)
    out = confinement.resources(r)
    assert (out.cpuset_cpus, out.memory_swap) == ("0", 2 << 30)
    r.hugepage_limits.add(page_size="2MB", limit=1 << 21)
    with pytest.raises(errors.InvalidArgument, match="hugepage_limits"):
        confinement.resources(r)
    with pytest.raises(errors.InvalidArgument, match="oom_score_adj"):
        confinement.update_resources(cri.LinuxContainerResources(oom_score_adj=500), container_pb2.Spec())
    current = container_pb2.Spec(security=container_pb2.Security(oom_score_adj=500))
    assert confinement.update_resources(cri.LinuxContainerResources(
        oom_score_adj=500, memory_limit_in_bytes=1 << 30), current).memory_bytes == 1 << 30
    config = cri.ContainerConfig()
    config.linux.security_context.run_as_group.value = 5
    with pytest.raises(errors.InvalidArgument, match="run_as_group"):
        containers.check_config(config)


def test_system_paths_are_exact_and_absolute():
    spec = Spec(process=Process(args=("sh",)), system_paths=(("/proc/kcore",), ()))
    spec_mod.check_system_paths(spec)
    linux = spec_mod.oci_config("0" * 64, spec, "/rootfs", spec_mod.User(0, 0, (), "/root"))["linux"]
    assert linux["maskedPaths"] == ["/proc/kcore"] and linux["readonlyPaths"] == []
    with pytest.raises(errors.InvalidArgument, match="absolute"):
        spec_mod.check_system_paths(Spec(process=Process(args=("sh",)), system_paths=(("proc",), ())))


def test_store_finds_by_unique_prefix(tmp_path):
    store = CriStore(os.path.join(tmp_path, "cri.db"))
    a, b = "ab" + "0" * 62, "ac" + "0" * 62
    for sid in (a, b):
        store.put_sandbox(SandboxRecord(id=sid, config=b"", state="ready", created_ns=1,
                                        network=SandboxNetwork(ip="10.0.0.2",
                                                               mounts=(("/h", "/etc/hosts"),))))
    assert store.sandbox("ab").id == a
    assert store.sandbox(b).network.mounts == (("/h", "/etc/hosts"),)
    with pytest.raises(errors.InvalidArgument, match="ambiguous"):
        store.sandbox("a")
    with pytest.raises(errors.NotFound):
        store.sandbox("ff")
    store.put_container(ContainerRecord(id="cd" + "0" * 62, sandbox_id=a, config=b"", image_id="sha256:x",
                                        created_ns=2))
    store.delete_sandbox(a)
    assert store.containers() == []
    store.close()


def test_shared_mounts_make_the_root_shared():
    def propagation(*options):
        mounts = tuple(Mount(type="bind", source="/h", target="/c", options=("rbind", o)) for o in options)
        linux = spec_mod.oci_config("0" * 64, Spec(process=Process(args=("sh",)), mounts=mounts), "/rootfs",
                                    spec_mod.User(0, 0, (), "/root"))["linux"]
        return linux.get("rootfsPropagation", "")
    # runc's default root is rslave: an rshared bind under it could send nothing back to the host.
    assert propagation("rprivate", "rshared") == "rshared"
    assert propagation("rslave") == "rslave"
    assert propagation("rprivate") == ""
