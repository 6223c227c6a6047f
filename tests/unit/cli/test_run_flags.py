"""Every flag of docker's run/create: accepted and carried to the engine's ContainerConfig
(or carried out by the CLI itself), or refused with a message that names it."""

from __future__ import annotations

import os

import pytest

from berth_cli import cli, commands
from berth_cli.runflags import refused

# A realistic value for each docker run flag that takes one.
SAMPLES = {
    "--add-host": "db:10.0.0.2", "--annotation": "a=b", "--attach": "stdout", "--blkio-weight": "300",
    "--blkio-weight-device": "/dev/sda:200", "--cap-add": "NET_ADMIN", "--cap-drop": "CHOWN",
    "--cgroup-parent": "/custom", "--cgroupns": "private", "--cidfile": "{tmp}/cid", "--cpu-count": "2",
    "--cpu-percent": "50", "--cpu-period": "100000", "--cpu-quota": "50000", "--cpu-rt-period": "1000",
    "--cpu-rt-runtime": "500", "--cpu-shares": "512", "--cpus": "0.5", "--cpuset-cpus": "0",
    "--cpuset-mems": "0", "--detach-keys": "ctrl-a", "--device": "/dev/null:/dev/xnull",
    "--device-cgroup-rule": "c 1:3 mr", "--device-read-bps": "/dev/sda:1mb",
    "--device-read-iops": "/dev/sda:100", "--device-write-bps": "/dev/sda:1mb",
    "--device-write-iops": "/dev/sda:100", "--dns": "10.0.0.53", "--dns-option": "ndots:2",
    "--dns-search": "example.com", "--domainname": "example.com", "--entrypoint": "/bin/sh",
    "--env": "A=1", "--env-file": "{tmp}/env", "--expose": "80", "--gpus": "all", "--group-add": "audio",
    "--health-cmd": "true", "--health-interval": "5s", "--health-retries": "3",
    "--health-start-interval": "1s", "--health-start-period": "2s", "--health-timeout": "3s",
    "--hostname": "box", "--io-maxbandwidth": "1mb", "--io-maxiops": "100", "--ip": "172.30.0.9",
    "--ip6": "fd00::9", "--ipc": "private", "--isolation": "default", "--kernel-memory": "64m",
    "--label": "a=b", "--label-file": "{tmp}/labels", "--link": "db:db", "--link-local-ip": "169.254.0.9",
    "--log-driver": "json-file", "--log-opt": "max-size=1m", "--mac-address": "02:42:ac:11:00:09",
    "--memory": "64m", "--memory-reservation": "32m", "--memory-swap": "128m",
    "--memory-swappiness": "10", "--mount": "type=tmpfs,dst=/t", "--name": "web", "--network": "host",
    "--network-alias": "web", "--oom-score-adj": "100", "--pid": "host", "--pids-limit": "50",
    "--platform": "{platform}", "--publish": "8080:80", "--pull": "never", "--restart": "always",
    "--runtime": "runc", "--security-opt": "no-new-privileges", "--shm-size": "128m",
    "--stop-signal": "SIGUSR1", "--stop-timeout": "5", "--storage-opt": "size=1G", "--sysctl": "net.ipv4.ip_forward=1",
    "--tmpfs": "/run", "--ulimit": "nofile=1024:2048", "--user": "1000", "--userns": "host", "--uts": "host",
    "--volume": "/tmp:/host-tmp", "--volume-driver": "local", "--volumes-from": "other",
    "--workdir": "/srv",
}

# Flags the CLI carries out itself; how to see that it did.
CLIENT_SIDE = {
    "--detach": lambda ns: ns.detach, "--interactive": lambda ns: ns.interactive,
    "--tty": lambda ns: ns.tty, "--quiet": lambda ns: ns.quiet, "--pull": lambda ns: ns.pull == "never",
    "--cidfile": lambda ns: ns.cidfile.endswith("/cid"), "--platform": lambda ns: bool(ns.platform),
    "--disable-content-trust": lambda ns: ns.disable_content_trust is True,
}


@pytest.fixture
def tmp_inputs(tmp_path):
    (tmp_path / "env").write_text("FROM_FILE=1\n")
    (tmp_path / "labels").write_text("from.file=1\n")
    return tmp_path


def _argv(long: str, tmp) -> list[str]:
    from berth_cli.runflags.client import host_platform
    if long in SAMPLES:
        return [long, SAMPLES[long].format(tmp=tmp, platform=host_platform())]
    return [long]


@pytest.mark.parametrize("long,short,takes_value", refused.DOCKER_RUN_FLAGS, ids=lambda v: str(v))
def test_every_docker_run_flag_reaches_the_engine_or_is_refused_by_name(long, short, takes_value, tmp_inputs):
    if long == "--help":
        with pytest.raises(SystemExit):
            cli.parse(["create", "--help"])
        return
    assert not takes_value or long in SAMPLES, f"no sample value for {long}"
    baseline = commands.container_config(cli.parse(["create", "busybox"]))
    try:
        ns = cli.parse(["create", *_argv(long, tmp_inputs), "busybox"])
    except cli.UsageError as exc:
        assert f"{long} is not supported by berth" in str(exc)
        return
    if long in CLIENT_SIDE:
        assert CLIENT_SIDE[long](ns), f"{long} did not reach the CLI's own handling"
        commands.container_config(ns)  # and is not refused later
        return
    config = commands.container_config(ns)
    assert config != baseline, f"{long} was accepted but changed nothing sent to the engine"


@pytest.mark.parametrize("short,long", [(s, lng) for lng, s, _ in refused.DOCKER_RUN_FLAGS if s])
def test_short_forms_are_known(short, long):
    p = cli.build_parser("run")
    run = next(a for a in p._actions if a.dest == "verb").choices["run"]
    assert short in run._option_string_actions, f"{short} ({long}) is missing"


def test_a_boolean_flag_given_a_value_is_refused_naming_it():
    # docker's booleans take a value only as --flag=value; berth refuses that form by name.
    with pytest.raises(cli.UsageError, match="--disable-content-trust"):
        cli.parse(["run", "--disable-content-trust=false", "busybox"])


def test_stop_signal_is_checked_at_create():
    for good in ("SIGTERM", "TERM", "usr1", "9", "SIGRTMIN+3"):
        commands.container_config(cli.parse(["create", "--stop-signal", good, "busybox"]))
    with pytest.raises(ValueError, match="invalid signal: BOGUS"):
        commands.container_config(cli.parse(["create", "--stop-signal", "BOGUS", "busybox"]))


def test_env_file_then_env_and_label_file_then_label(tmp_inputs):
    ns = cli.parse(["create", "--env-file", f"{tmp_inputs}/env", "-e", "FROM_FILE=2",
                    "--label-file", f"{tmp_inputs}/labels", "-l", "x=y", "busybox"])
    config = commands.container_config(ns)
    assert list(config.env) == ["FROM_FILE=1", "FROM_FILE=2"]
    assert dict(config.labels) == {"from.file": "1", "x": "y"}


def test_missing_label_file_names_the_flag_and_file():
    with pytest.raises(ValueError, match="--label-file: /nonexistent: No such file"):
        commands.container_config(cli.parse(["create", "--label-file", "/nonexistent", "busybox"]))


def test_pull_policy_and_platform_are_checked():
    with pytest.raises(ValueError, match='--pull: invalid pull option: "sometimes"'):
        commands.container_config(cli.parse(["create", "--pull", "sometimes", "busybox"]))
    other = "linux/s390x" if os.uname().machine != "s390x" else "linux/amd64"
    with pytest.raises(ValueError, match=f"--platform: {other} is not this host's platform"):
        commands.container_config(cli.parse(["create", "--platform", other, "busybox"]))


def test_existing_cidfile_is_refused_before_create(tmp_path):
    (tmp_path / "cid").write_text("old")
    with pytest.raises(ValueError, match="Container ID file found"):
        commands.container_config(cli.parse(["create", "--cidfile", f"{tmp_path}/cid", "busybox"]))


def test_expose_link_isolation_and_volume_driver_mean_what_the_docker_api_s_do():
    config = commands.container_config(cli.parse(
        ["create", "--expose", "80", "--expose", "53/udp", "--expose", "80/tcp", "--link", "db:data",
         "--isolation", "default", "--volume-driver", "local", "-v", "vol:/v", "busybox"]))
    assert list(config.exposed_ports) == ["80/tcp", "53/udp"]
    assert list(config.endpoint_settings.links) == ["db:data"]
    assert (config.isolation, config.volume_driver) == ("default", "local")
    for argv, words in ((["--expose", "80-90"], "port ranges"), (["--expose", "80/sctp"], "invalid proto"),
                        (["--isolation", "hyperv"], "--isolation"), (["--link", ":x"], "--link"),
                        (["--volume-driver", "nfs", "-v", "vol:/v"], "--volume-driver")):
        with pytest.raises(Exception, match=words):
            commands.container_config(cli.parse(["create", *argv, "busybox"]))


def test_the_config_built_of_wire_messages_is_protobufs(tmp_inputs):
    # `berth run` and `create` build their config with berth_cli.wire's classes (messages.
    # wire_classes): for every flag, the bytes sent are those protobuf's classes make. In a
    # process of its own, where no protobuf class was handed out before.
    import subprocess
    import sys
    lines = [_argv(long, tmp_inputs) for long, _, _ in refused.DOCKER_RUN_FLAGS if long != "--help"]
    code = f"""
from berth_cli import messages
messages.install()
from berth_cli import cli, commands, wire
built = []
for flag in {lines!r}:
    try:
        ns = cli.parse(["create", *flag, "-p", "80", "-v", "/a:/b", "--health-cmd", "true", "busybox", "sh"])
    except cli.UsageError:
        continue
    with messages.wire_classes():
        try:
            built.append((flag, ns, commands.container_config(ns)))
        except ValueError:  # a flag at odds with the ones added above
            continue
assert all(isinstance(c, wire.Message) for _, _, c in built)
for flag, ns, config in built:
    ours = commands.container_config(ns)
    assert not isinstance(ours, wire.Message)
    assert type(ours).FromString(config.SerializeToString()) == ours, flag
print(len(built))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 50
