"""Command lines as docker users type them."""

from __future__ import annotations

import pytest

from berth_cli import cli, commands


def test_run_stops_reading_flags_at_the_image():
    ns = cli.parse(["run", "--rm", "-e", "A=1", "--name", "web", "busybox", "ls", "-l", "-e", "--rm"])
    assert (ns.verb, ns.rm, ns.env, ns.name, ns.image) == ("run", True, ["A=1"], "web", "busybox")
    assert ns.command == ["ls", "-l", "-e", "--rm"]


def test_run_sh_c():
    ns = cli.parse(["run", "-d", "busybox", "sh", "-c", "exit 3"])
    assert ns.detach and ns.command == ["sh", "-c", "exit 3"]


def test_host_before_verb():
    ns = cli.parse(["-H", "unix:///tmp/g.sock", "run", "-it", "busybox"])
    assert ns.host == "unix:///tmp/g.sock" and ns.command == [] and ns.tty and ns.interactive


def test_host_from_env(monkeypatch):
    monkeypatch.setenv("BERTH_HOST", "unix:///x.sock")
    assert cli.parse(["ps"]).host == "unix:///x.sock"


def test_run_hostname_flag_is_not_help():
    ns = cli.parse(["run", "-h", "box", "--entrypoint", "", "busybox"])
    assert ns.hostname == "box" and ns.entrypoint == ""


def test_usage_error():
    with pytest.raises(cli.UsageError):
        cli.parse(["ps", "--bogus"])
    assert cli.main(["nosuchverb"]) == cli.USAGE_ERROR


def test_env_file_then_env_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("FROM_CLIENT", "yes")
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\n\nA=from-file\nFROM_CLIENT\nUNSET_HERE_X\nQ='kept as is'\n")
    cfg = commands.container_config(cli.parse(["run", "--env-file", str(env_file), "-e", "A=flag", "busybox"]))
    assert list(cfg.env) == ["A=from-file", "FROM_CLIENT=yes", "Q='kept as is'", "A=flag"]
    (tmp_path / "bad").write_text("MY VAR=1\n")
    with pytest.raises(ValueError):
        commands.container_config(cli.parse(["run", "--env-file", str(tmp_path / "bad"), "busybox"]))
    with pytest.raises(ValueError):
        commands.container_config(cli.parse(["run", "--env-file", str(tmp_path / "none"), "busybox"]))


def test_container_config_from_flags(monkeypatch):
    monkeypatch.setenv("FROM_CLIENT", "yes")
    ns = cli.parse(["run", "-e", "A=1", "-e", "FROM_CLIENT", "-e", "UNSET_HERE_X", "-m", "64m",
                    "--cpus", "0.5", "--pids-limit", "10", "--network", "host", "-l", "k=v",
                    "--stop-timeout", "3", "--read-only", "-w", "/srv", "-u", "app",
                    "--entrypoint", "/bin/sh", "busybox", "-c", "true"])
    cfg = commands.container_config(ns)
    assert list(cfg.env) == ["A=1", "FROM_CLIENT=yes"]
    assert (cfg.memory_bytes, cfg.nano_cpus, cfg.pids_limit) == (64 << 20, 500_000_000, 10)
    assert (cfg.network_mode, dict(cfg.labels), cfg.stop_timeout) == ("host", {"k": "v"}, 3)
    assert cfg.readonly_rootfs and cfg.working_dir == "/srv" and cfg.user == "app"
    assert list(cfg.entrypoint.values) == ["/bin/sh"] and list(cfg.cmd) == ["-c", "true"]
    assert not commands.container_config(cli.parse(["run", "busybox"])).HasField("entrypoint")
    cleared = commands.container_config(cli.parse(["run", "--entrypoint", "", "busybox"]))
    assert cleared.HasField("entrypoint") and list(cleared.entrypoint.values) == []


def test_filters():
    filters = commands._parse_filters(["status=exited", "label=a=b", "label=c"])
    assert filters == {"status": {"values": ["exited"]}, "label": {"values": ["a=b", "c"]}}
    with pytest.raises(ValueError):
        commands._parse_filters(["nokey"])


def test_security_flags(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    ns = cli.parse(["run", "--privileged", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--device",
                    "/dev/fuse:/dev/f:rw", "--device", "/dev/kvm", "--device-cgroup-rule", "c 1:3 r",
                    "--sysctl", "net.core.somaxconn=5", "--ulimit", "nofile=10:20", "--ulimit", "nproc=7",
                    "--group-add", "audio", "--pid", "host", "--ipc", "private", "--uts", "container:x",
                    "--cpuset-cpus", "0", "--cpuset-mems", "0", "-m", "8m", "--memory-swap", "-1",
                    "--memory-reservation", "4m", "--oom-kill-disable", "--oom-score-adj", "5", "--shm-size",
                    "1m", "--init", "--runtime", "runc", "--pids-limit", "-1", "--security-opt",
                    f"seccomp={profile}", "--security-opt", "no-new-privileges", "busybox"])
    cfg = commands.container_config(ns)
    assert cfg.privileged and list(cfg.cap_add) == ["NET_ADMIN"] and list(cfg.cap_drop) == ["ALL"]
    assert [(d.path_on_host, d.path_in_container, d.cgroup_permissions) for d in cfg.devices] == [
        ("/dev/fuse", "/dev/f", "rw"), ("/dev/kvm", "", "rwm")]
    assert list(cfg.device_cgroup_rules) == ["c 1:3 r"] and dict(cfg.sysctls) == {"net.core.somaxconn": "5"}
    assert [(u.name, u.soft, u.hard) for u in cfg.ulimits] == [("nofile", 10, 20), ("nproc", 7, 7)]
    assert (cfg.pid_mode, cfg.ipc_mode, cfg.uts_mode, list(cfg.group_add)) == ("host", "private", "container:x",
                                                                              ["audio"])
    assert (cfg.memory_swap, cfg.memory_reservation, cfg.oom_kill_disable, cfg.oom_score_adj) == (
        -1, 4 << 20, True, 5)
    assert (cfg.shm_size, cfg.init, cfg.runtime, cfg.pids_limit) == (1 << 20, True, "runc", -1)
    # The profile file is read by the client: the engine gets its content.
    assert list(cfg.security_opt) == ['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}', "no-new-privileges"]
    assert commands.container_config(cli.parse(["run", "busybox"])).pids_limit == 0
    with pytest.raises(ValueError, match="opening seccomp profile"):
        commands.container_config(cli.parse(["run", "--security-opt", "seccomp=/nonexistent.json", "busybox"]))
