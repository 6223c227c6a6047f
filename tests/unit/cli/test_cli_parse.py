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
    assert list(filters["status"].values) == ["exited"]
    assert list(filters["label"].values) == ["a=b", "c"]
    with pytest.raises(ValueError):
        commands._parse_filters(["nokey"])
