"""Docker JSON <-> engine types, without a daemon."""

from __future__ import annotations

import pytest

from services.common import errors
from berth_docker import api as convert

from berth.types.v1 import file_change_pb2
from berth.types.v1 import healthcheck_pb2
from berth.engine.v1 import engine_pb2


def test_create_body_maps_config_and_host_config():
    cfg = convert.container_config({
        "Image": "busybox", "Cmd": ["echo", "hi"], "Entrypoint": ["/bin/sh", "-c"], "Env": ["A=1"],
        "WorkingDir": "/w", "User": "1:1", "Hostname": "h", "Labels": {"k": "v"}, "StopSignal": "SIGINT",
        "StopTimeout": 3,
        "HostConfig": {"Memory": 1 << 20, "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 9,
                       "AutoRemove": True, "NetworkMode": "default", "Binds": ["/srv:/srv:ro", "data:/d"],
                       "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                       "RestartPolicy": {"Name": "no"}},
    }, "web")
    assert (cfg.image, cfg.name, list(cfg.cmd), list(cfg.entrypoint.values)) == (
        "busybox", "web", ["echo", "hi"], ["/bin/sh", "-c"])
    assert cfg.network_mode == "" and cfg.auto_remove and cfg.stop_timeout == 3
    assert (cfg.memory_bytes, cfg.nano_cpus, cfg.cpu_shares, cfg.pids_limit) == (1 << 20, 500_000_000, 512, 9)
    assert [(m.type, m.source, m.target, m.readonly) for m in cfg.mounts] == [
        ("bind", "/srv", "/srv", True), ("volume", "data", "/d", False)]
    assert [(p.container_port, p.host_port, p.protocol) for p in cfg.ports] == [(80, 8080, "tcp")]


@pytest.mark.parametrize("body", [{"Image": "b", "HostConfig": {"Dns": ["192.0.2.1"]}},
                                  {"Image": "b", "HostConfig": {"ExtraHosts": ["h:192.0.2.1"]}}])
def test_what_berth_cannot_do_is_refused_not_ignored(body):
    with pytest.raises(errors.NotImplementedYet):
        convert.container_config(body, "")


def test_security_and_resource_keys_reach_the_config():
    cfg = convert.container_config({"Image": "b", "HostConfig": {
        "Privileged": True, "CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"], "PidsLimit": -1,
        "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "", "CgroupPermissions": "rw"}],
        "DeviceCgroupRules": ["c 1:3 r"], "Sysctls": {"net.core.somaxconn": "10"},
        "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}], "GroupAdd": ["audio"], "PidMode": "host",
        "IpcMode": "shareable", "UTSMode": "host", "CpusetCpus": "0", "CpusetMems": "0", "MemorySwap": -1,
        "MemoryReservation": 5, "OomKillDisable": True, "OomScoreAdj": 7, "ShmSize": 9, "Init": True,
        "Runtime": "runc", "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}}, "")
    assert cfg.privileged and list(cfg.cap_add) == ["NET_ADMIN"] and list(cfg.cap_drop) == ["ALL"]
    assert cfg.pids_limit == -1 and cfg.devices[0].path_on_host == "/dev/fuse"
    assert cfg.devices[0].cgroup_permissions == "rw" and list(cfg.device_cgroup_rules) == ["c 1:3 r"]
    assert dict(cfg.sysctls) == {"net.core.somaxconn": "10"} and cfg.ulimits[0].hard == 2
    assert (cfg.pid_mode, cfg.ipc_mode, cfg.uts_mode) == ("host", "shareable", "host")
    assert (cfg.cpuset_cpus, cfg.memory_swap, cfg.memory_reservation, cfg.oom_kill_disable) == ("0", -1, 5, True)
    assert (cfg.oom_score_adj, cfg.shm_size, cfg.init, cfg.runtime) == (7, 9, True, "runc")
    assert list(cfg.security_opt) == ["no-new-privileges", "seccomp=unconfined"]
    # PidsLimit absent: the engine's default (0); 0 means unlimited, as in docker.
    assert convert.container_config({"Image": "b"}, "").pids_limit == 0
    assert convert.container_config({"Image": "b", "HostConfig": {"PidsLimit": 0}}, "").pids_limit == -1
    with pytest.raises(errors.InvalidArgument, match="OomScoreAdj"):
        convert.container_config({"Image": "b", "HostConfig": {"OomScoreAdj": "7"}}, "")


def test_filters_accept_both_json_shapes():
    assert convert.filters({"filters": '{"label":["a=b"],"status":{"running":true}}'}) == {
        "label": ["a=b"], "status": ["running"]}
    with pytest.raises(errors.InvalidArgument):
        convert.filters({"filters": "{nope"})


def test_human_durations_read_as_dockers():
    assert convert.human_duration(0.2) == "Less than a second"
    assert convert.human_duration(5) == "5 seconds"
    assert convert.human_duration(90) == "About a minute"
    assert convert.human_duration(3 * 3600) == "3 hours"


def test_timestamps_unix_and_rfc3339():
    assert convert.timestamp("1700000000.5") == 1700000000.5
    assert convert.timestamp("2023-11-14T22:13:20Z") == 1700000000.0
    assert convert.timestamp("0") is None


def test_terminal_stdin_restart_policy_and_healthcheck_reach_the_engine_config():
    cfg = convert.container_config({
        "Image": "b", "Tty": True, "OpenStdin": True, "StdinOnce": True, "AttachStdin": True,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000, "Retries": 3,
                        "StartPeriod": 1_000_000_000},
        "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}}, "")
    assert (cfg.tty, cfg.open_stdin, cfg.stdin_once) == (True, True, True)
    assert (cfg.restart_policy.name, cfg.restart_policy.maximum_retry_count) == ("on-failure", 2)
    assert list(cfg.healthcheck.test) == ["CMD-SHELL", "true"]
    assert (cfg.healthcheck.interval, cfg.healthcheck.retries, cfg.healthcheck.start_period) == (
        2_000_000_000, 3, 1_000_000_000)
    with pytest.raises(errors.InvalidArgument):
        convert.container_config({"Image": "b", "Healthcheck": {"Test": ["CMD", "x"], "Interval": -1}}, "")


def test_inspect_shows_policy_terminal_and_health():
    from berth.engine.v1 import engine_pb2
    info = engine_pb2.ContainerInfo(id="c", name="n", restart_count=2, state=engine_pb2.ContainerState(
        status="running", running=True, health=engine_pb2.Health(status="healthy", failing_streak=0)),
        config=engine_pb2.ContainerConfig(tty=True, open_stdin=True, restart_policy=engine_pb2.RestartPolicy(
            name="always"), healthcheck=healthcheck_pb2.HealthConfig(test=["CMD", "true"], retries=1)))
    out = convert.container_json(info)
    assert out["State"]["Health"] == {"Status": "healthy", "FailingStreak": 0, "Log": []}
    assert out["HostConfig"]["RestartPolicy"] == {"Name": "always", "MaximumRetryCount": 0}
    assert out["RestartCount"] == 2 and out["Config"]["Tty"] and out["Config"]["OpenStdin"]
    assert out["Config"]["Healthcheck"] == {"Test": ["CMD", "true"], "Retries": 1}
    assert convert.container_summary(info, now=info.state.started_at.seconds + 5)["Status"] == "Up 5 seconds (healthy)"


def test_stats_carry_both_samples_so_the_cli_can_compute_cpu_percent():
    from berth.engine.v1 import engine_pb2
    pre = engine_pb2.GetContainerStatsResponse(
        id="c", name="n", cpu_usage_ns=1_000, system_cpu_ns=10_000, online_cpus=2)
    cur = engine_pb2.GetContainerStatsResponse(
        id="c", name="n", cpu_usage_ns=3_000, system_cpu_ns=20_000, online_cpus=2,
        memory_usage=5, memory_limit=10, pids=3)
    out = convert.stats_json(cur, pre)
    cpu, precpu = out["cpu_stats"], out["precpu_stats"]
    percent = ((cpu["cpu_usage"]["total_usage"] - precpu["cpu_usage"]["total_usage"])
               / (cpu["system_cpu_usage"] - precpu["system_cpu_usage"]) * cpu["online_cpus"] * 100)
    assert percent == 40.0
    assert out["name"] == "/n" and out["pids_stats"] == {"current": 3}
    assert out["memory_stats"]["usage"] == 5 and out["memory_stats"]["limit"] == 10
    assert convert.stats_json(cur, None)["precpu_stats"]["cpu_usage"]["total_usage"] == 0


def test_path_stat_uses_go_file_mode_bits():
    import tarfile
    d = tarfile.TarInfo("etc/")
    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
    assert convert.path_stat(d) == {"name": "etc", "size": 0, "mode": (1 << 31) | 0o755,
                                    "mtime": "2023-11-14T22:13:20.000000000Z", "linkTarget": ""}
    link = tarfile.TarInfo("sh")
    link.type, link.linkname, link.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
    assert convert.path_stat(link)["mode"] == (1 << 27) | 0o777
    assert convert.path_stat(link)["linkTarget"] == "/bin/busybox"


def test_changes_kinds_and_exec_exit_code_null_while_running():
    from berth.engine.v1 import engine_pb2
    assert [convert.change_json(
        file_change_pb2.FileChange(kind=k, path="/x"))["Kind"] for k in "CAD"] == [0, 1, 2]
    running = convert.exec_json(engine_pb2.ExecInfo(id="e", cmd=["sh", "-c", "x"], running=True))
    assert running["ExitCode"] is None and running["ProcessConfig"]["entrypoint"] == "sh"
    assert convert.exec_json(engine_pb2.ExecInfo(id="e", exited=True, exit_code=3))["ExitCode"] == 3


def test_update_takes_docker_zeros_as_unchanged_and_refuses_what_it_cannot_change():
    resources, policy = convert.update_request("c", {"Memory": 64 << 20, "MemorySwap": 0, "NanoCpus": 0,
                                                     "PidsLimit": None, "RestartPolicy": {"Name": ""}})
    assert resources.memory_bytes == 64 << 20 and not resources.HasField("nano_cpus") and policy is None
    resources, policy = convert.update_request("c", {"RestartPolicy": {"Name": "on-failure",
                                                                       "MaximumRetryCount": 3}})
    assert resources is None and (policy.name, policy.maximum_retry_count) == ("on-failure", 3)
    with pytest.raises(errors.NotImplementedYet):
        convert.update_request("c", {"CpusetCpus": "0"})


def test_network_settings_top_level_keys_are_the_default_bridges_as_docker_shows_them():
    from berth_docker.shapes.containers import container_json
    bridge = engine_pb2.ContainerNetwork(network="bridge", network_id="n1", ipv4_address="172.17.0.3",
                                         prefix_len=16, gateway="172.17.0.1", mac_address="02:42:ac:11:00:0a",
                                         endpoint_id="e" * 64)
    user = engine_pb2.ContainerNetwork(network="back", network_id="n2", ipv4_address="10.9.0.2",
                                       prefix_len=24, gateway="10.9.0.1", mac_address="02:42:0a:09:00:02")
    cfg = engine_pb2.ContainerConfig()
    cfg.endpoint_settings.links.extend(["db:store", "/cache:/web/c"])
    on_both = engine_pb2.ContainerInfo(id="c" * 64, name="web", network_mode="bridge", config=cfg,
                                       networks=[bridge, user])
    s = container_json(on_both)["NetworkSettings"]
    assert (s["MacAddress"], s["IPAddress"], s["IPPrefixLen"], s["Gateway"], s["EndpointID"]) == (
        "02:42:ac:11:00:0a", "172.17.0.3", 16, "172.17.0.1", "e" * 64)
    assert s["Networks"]["back"]["MacAddress"] == "02:42:0a:09:00:02"
    assert container_json(on_both)["HostConfig"]["Links"] == ["/db:/web/store", "/cache:/web/c"]
    only_user = engine_pb2.ContainerInfo(id="d" * 64, name="x", network_mode="back", networks=[user])
    s = container_json(only_user)["NetworkSettings"]
    assert (s["MacAddress"], s["IPAddress"], s["Gateway"]) == ("", "", "")
    assert container_json(only_user)["HostConfig"]["Links"] is None


def test_exposed_ports_show_in_config_and_while_running_in_ports_as_docker_shows_them():
    from berth_docker.shapes.containers import container_json, container_summary
    from berth.types.v1 import port_pb2
    cfg = convert.container_config({"Image": "busybox", "ExposedPorts": {"9000/tcp": {}, "53/udp": {}},
                                    "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}}, "")
    assert list(cfg.exposed_ports) == ["9000/tcp", "53/udp"]
    bound = port_pb2.PortBinding(protocol="tcp", host_ip="0.0.0.0", host_port=8080, container_port=80)
    running = engine_pb2.ContainerInfo(id="c" * 64, name="w", config=cfg, ports=[bound],
                                       state=engine_pb2.ContainerState(status="running", running=True))
    j = container_json(running)
    assert j["Config"]["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}, "9000/tcp": {}}
    assert j["NetworkSettings"]["Ports"] == {"53/udp": None, "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                                             "9000/tcp": None}
    assert {"PrivatePort": 9000, "Type": "tcp"} in container_summary(running)["Ports"]
    stopped = engine_pb2.ContainerInfo(id="c" * 64, name="w", config=cfg,
                                       state=engine_pb2.ContainerState(status="exited"))
    assert container_json(stopped)["NetworkSettings"]["Ports"] == {}
    assert container_summary(stopped)["Ports"] == []


def test_an_images_parent_is_in_inspect_and_list():
    from berth.engine.v1 import engine_pb2
    from berth_docker.shapes.images import image_json, image_summary
    info = engine_pb2.ImageInfo(id="sha256:" + "b" * 64, parent="sha256:" + "a" * 64, config_json=b"{}")
    assert image_json(info)["Parent"] == image_summary(info)["ParentId"] == "sha256:" + "a" * 64
    assert image_json(engine_pb2.ImageInfo(id="sha256:" + "c" * 64, config_json=b"{}"))["Parent"] == ""
