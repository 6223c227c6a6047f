"""The CRI service's pure parts: log records, argv and user rules, refusals, the store's id prefixes."""

from __future__ import annotations

import os

import pytest

from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors
from services.container import spec as spec_mod
from services.container.model import Process, Spec
from services.cri import containers, convert, logs
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


def test_what_the_spec_cannot_express_is_refused_by_name():
    config = cri.ContainerConfig()
    config.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
    config.linux.security_context.no_new_privs = True
    with pytest.raises(errors.InvalidArgument) as err:
        containers.check_config(config)
    assert "capabilities" in err.value.message and "no_new_privs" in err.value.message
    config = cri.ContainerConfig()
    config.linux.resources.oom_score_adj = 500
    with pytest.raises(errors.InvalidArgument, match="oom_score_adj"):
        containers.check_config(config)
    config = cri.ContainerConfig()
    config.linux.security_context.run_as_group.value = 5
    with pytest.raises(errors.InvalidArgument, match="run_as_group"):
        containers.check_config(config)


def test_container_service_joins_namespaces_as_asked():
    spec = Spec(process=Process(args=("sh",)), namespaces=(("pid", "/proc/7/ns/pid"), ("ipc", "")),
                system_paths=(("/proc/kcore",), ()), sysctls=(("kernel.shm_rmid_forced", "1"),))
    spec_mod.check_namespaces(spec)
    linux = spec_mod.oci_config("0" * 64, spec, "/rootfs", spec_mod.User(0, 0, (), "/root"))["linux"]
    assert {"type": "pid", "path": "/proc/7/ns/pid"} in linux["namespaces"]
    assert not [n for n in linux["namespaces"] if n["type"] == "ipc"]  # the host's
    assert linux["maskedPaths"] == ["/proc/kcore"] and linux["readonlyPaths"] == []
    assert linux["sysctl"] == {"kernel.shm_rmid_forced": "1"}
    with pytest.raises(errors.InvalidArgument, match="cannot be joined"):
        spec_mod.check_namespaces(Spec(process=Process(args=("sh",)), namespaces=(("mount", ""),)))


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
