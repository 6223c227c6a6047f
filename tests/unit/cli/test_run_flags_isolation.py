"""--userns reaches ContainerConfig.userns_mode as given (the engine validates it)."""

import argparse

from berth.engine.v1 import engine_pb2
from berth_cli.runflags import isolation


def config_for(*argv: str) -> engine_pb2.ContainerConfig:
    p = argparse.ArgumentParser()
    isolation.add_flags(p)
    config = engine_pb2.ContainerConfig()
    isolation.apply(p.parse_args(list(argv)), config)
    return config


def test_userns_host_and_default():
    assert config_for("--userns", "host").userns_mode == "host"
    assert config_for("--userns=keep-id").userns_mode == "keep-id"
    assert config_for().userns_mode == ""


def test_userns_through_the_run_parser():
    from berth_cli import cli, commands
    ns = cli.parse(["run", "--userns", "host", "busybox", "true"])
    assert commands.container_config(ns).userns_mode == "host"
