"""Docker JSON <-> engine types, without a daemon."""

from __future__ import annotations

import pytest

from services.common import errors
from services.gateway.docker import convert


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


@pytest.mark.parametrize("body", [{"Image": "b", "Tty": True}, {"Image": "b", "OpenStdin": True},
                                  {"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "always"}}},
                                  {"Image": "b", "HostConfig": {"Privileged": True}}])
def test_what_berth_cannot_do_is_refused_not_ignored(body):
    with pytest.raises(errors.NotImplementedYet):
        convert.container_config(body, "")


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
