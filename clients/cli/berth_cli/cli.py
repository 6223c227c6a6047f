"""Command-line parsing for `berth`: the verbs and flags docker users know.

Parsing imports nothing heavy; gRPC and the generated code are loaded by the
verb that needs them (berth_cli.commands), so `berth --help` and argument
errors are instant and every verb pays only for what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from berth_cli import build, files, interactive, lifecycle, logopts, networks, registry, security, usage, volumes

DEFAULT_HOST = "unix:///run/berth/gateway.sock"
USAGE_ERROR = 125


class UsageError(Exception):
    """A bad command line: printed with a hint and exit status 125, as docker does."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}\nSee '{self.prog} --help'.")


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help", help="show this help")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("-i", "--interactive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-t", "--tty", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", default="")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read environment variables from a file")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("-m", "--memory", default="", help="memory limit, e.g. 64m")
    p.add_argument("--cpus", default="", help="number of CPUs, e.g. 0.5")
    p.add_argument("-c", "--cpu-shares", type=int, default=0)
    p.add_argument("--pids-limit", type=int, default=None)
    p.add_argument("--network", "--net", default="", help="bridge (default), host, none or a network's name")
    p.add_argument("-h", "--hostname", default="")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V")
    p.add_argument("--stop-signal", default="")
    p.add_argument("--stop-timeout", type=int, default=None)
    p.add_argument("--read-only", action="store_true")
    volumes.add_run_flags(p)
    networks.add_run_flags(p)
    lifecycle.add_run_flags(p)
    security.add_run_flags(p)
    logopts.add_run_flags(p)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


VERBS = ("version", "load", "import", "save", "images", "rmi", "tag", "pull", "push", "login", "logout",
         "run", "create", "start",
         "stop", "restart", "kill", "rm", "pause", "unpause", "ps", "logs", "inspect", "wait", "events",
         "volume", "network", "port", *lifecycle.VERBS, *interactive.VERBS, *usage.VERBS, *files.VERBS, *build.VERBS)


class _Ignored:
    """Stands in for the parsers of verbs not being run: building all of them costs start-up time."""

    def add_argument(self, *args, **kwargs):
        return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `only`, just that verb's part of it."""
    parser = _Parser(prog="berth", description="A container engine.")
    parser.add_argument("-H", "--host", default=os.environ.get("BERTH_HOST", DEFAULT_HOST),
                        help="daemon socket to connect to (env BERTH_HOST)")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add_verb(name: str, **kwargs):
        if only is not None and name != only:
            return _Ignored()
        return sub.add_parser(name, **kwargs)

    p = add_verb("version", help="show the client and engine versions")

    p = add_verb("load", help="load images from a tar archive")
    p.add_argument("-i", "--input", default="", help="read from this file instead of stdin")
    p.add_argument("-q", "--quiet", action="store_true")

    p = add_verb("import", help="import a root filesystem tarball as an image")
    p.add_argument("file", help="tarball, or - for stdin")
    p.add_argument("reference", nargs="?", default="")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")

    p = add_verb("save", help="save images to a tar archive")
    p.add_argument("-o", "--output", default="")
    p.add_argument("images", nargs="+")

    p = add_verb("images", help="list images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("reference", nargs="?", default="")

    p = add_verb("rmi", help="remove images")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("images", nargs="+")

    registry.add_parsers(add_verb)

    p = add_verb("tag", help="give an image another name")
    p.add_argument("source")
    p.add_argument("target")

    for verb, text in (("run", "run a command in a new container"), ("create", "create a container")):
        _run_flags(add_verb(verb, help=text, add_help=False))

    p = add_verb("start", help="start containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("containers", nargs="+")

    for verb in ("stop", "restart"):
        p = add_verb(verb, help=f"{verb} containers")
        p.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None)
        p.add_argument("containers", nargs="+")

    p = add_verb("kill", help="send a signal to containers")
    p.add_argument("-s", "--signal", default="KILL")
    p.add_argument("containers", nargs="+")

    p = add_verb("pause", help="pause all processes within containers")
    p.add_argument("containers", nargs="+")
    p = add_verb("unpause", help="unpause all processes within containers")
    p.add_argument("containers", nargs="+")

    p = add_verb("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove anonymous volumes")
    p.add_argument("containers", nargs="+")

    p = add_verb("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", default="")

    p = add_verb("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")

    p = add_verb("inspect", help="show containers or images as JSON")
    p.add_argument("--type", choices=("container", "image"), default=None)
    p.add_argument("names", nargs="+")

    p = add_verb("wait", help="wait for containers to exit and print their exit codes")
    p.add_argument("containers", nargs="+")

    p = add_verb("events", help="show engine events")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", default="")

    p = add_verb("volume", help="manage volumes", add_help=False)
    if only == "volume":
        volumes.add_parser(p)

    p = add_verb("network", help="manage networks", add_help=False)
    if only == "network":
        networks.add_parser(p)
    p = add_verb("port", help="list a container's published ports")
    networks.add_port_parser(p)
    lifecycle.add_parsers(add_verb, only)
    interactive.add_parsers(add_verb)
    usage.add_parsers(add_verb)
    files.add_parsers(add_verb)
    build.add_parsers(add_verb)
    return parser


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions if action.nargs != 0
            for opt in action.option_strings}


def _split_command(args: list[str], parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Docker stops reading flags at IMAGE: `run busybox ls -l` passes -l to ls."""
    takes_value = _value_options(parser)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[:i] + args[i + 1:i + 2], args[i + 2:]
        if not arg.startswith("-") or arg == "-":
            return args[:i + 1], args[i + 1:]
        if arg in takes_value:
            i += 2
            continue
        i += 1
    return args, []


def parse(argv: Sequence[str]) -> argparse.Namespace:
    argv = list(argv)
    # Find the verb; for run/create, keep the container's command away from argparse.
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("-H", "--host") else 1
    parser = build_parser(argv[i] if i < len(argv) and argv[i] in VERBS else None)
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if i < len(argv) and argv[i] in ("run", "create", "exec"):
        verb_parser = sub_action.choices[argv[i]]
        flags, command = _split_command(argv[i + 1:], verb_parser)
        ns = parser.parse_args(argv[:i + 1] + flags)
        ns.command = command
        return ns
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ns = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    from berth_cli import commands
    return commands.dispatch(ns)
