"""Command-line parsing for `berth`: the verbs and flags docker users know.

Parsing imports nothing heavy: the verb's flags are declared on berth_cli.argv's parser,
which reads the everyday command lines itself and hands the rest (help, mistakes, rare
forms) to argparse, imported only then. gRPC and the generated code are loaded by the
verb that needs them (berth_cli.commands), so every verb pays only for what it uses.
"""

from __future__ import annotations

import os
import sys

from berth_cli import argv as arguments

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
    from collections.abc import Sequence


DEFAULT_HOST = "unix:///run/berth/gateway.sock"
# The global flags that take a value (the verb is found past them).
GLOBAL_VALUE_FLAGS = ("-H", "--host", "--tlscacert", "--tlscert", "--tlskey")
USAGE_ERROR = 125


class UsageError(Exception):
    """A bad command line: printed with a hint and exit status 125, as docker does."""


def _argparse_class():
    """argparse's parser with docker's usage errors, made when argparse is needed."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def _get_formatter(self):
            # argparse asks shutil for the terminal's width whenever an argument is added;
            # importing shutil (and with it bz2, lzma, fnmatch) costs more than the parsing.
            try:
                width = os.get_terminal_size(sys.stderr.fileno()).columns - 2
            except (OSError, ValueError):
                width = 78
            return self.formatter_class(prog=self.prog, width=width)

        def error(self, message):
            raise UsageError(f"{self.prog}: {message}\nSee '{self.prog} --help'.")

    return _Parser


def to_argparse(parser: arguments.Parser):
    """The argparse parser that `parser` declares (for help, errors and completion)."""
    return parser.to_argparse(_argparse_class())


# The verbs whose parsers live beside their code, by module: only the verb at hand's is imported.
MODULE_VERBS = {
    "registry": ("pull", "push", "login", "logout"),
    "lifecycle": ("rename", "commit", "diff", "update", "container", "system"),
    "interactive": ("exec", "attach"),
    "usage": ("top", "stats"),
    "files": ("cp", "export"),
    "build": ("build",),
}
VERBS = ("version", "load", "import", "save", "images", "rmi", "tag", "run", "create", "start",
         "stop", "restart", "kill", "rm", "pause", "unpause", "ps", "logs", "inspect", "wait", "events",
         "volume", "network", "port", "node", "completion", *(v for vs in MODULE_VERBS.values() for v in vs))


class _Ignored:
    """Stands in for the parsers of verbs not being run: building all of them costs start-up time."""

    def add_argument(self, *args, **kwargs):
        return None


def build_parser(only: str | None = None) -> arguments.Parser:
    """The whole command line, or with `only`, just that verb's part of it."""
    parser = arguments.Parser(prog="berth", description="A container engine.")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    parser.add_argument("-H", "--host", default=os.environ.get("BERTH_HOST", DEFAULT_HOST),
                        help="daemon socket to connect to (env BERTH_HOST)")
    # docker's TLS flags: the engine serves tcp:// only with mutual TLS (see `berthd certs`).
    cert_path = os.environ.get("BERTH_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".berth")
    parser.add_argument("--tls", action="store_true", help="use TLS; implied by --tlsverify")
    parser.add_argument("--tlsverify", action="store_true", default=bool(os.environ.get("BERTH_TLS_VERIFY")),
                        help="use TLS and verify the remote (env BERTH_TLS_VERIFY)")
    parser.add_argument("--tlscacert", default=os.path.join(cert_path, "ca.pem"),
                        help="trust certs signed only by this CA (default BERTH_CERT_PATH/ca.pem, ~/.berth)")
    parser.add_argument("--tlscert", default=os.path.join(cert_path, "cert.pem"),
                        help="path to TLS certificate file")
    parser.add_argument("--tlskey", default=os.path.join(cert_path, "key.pem"), help="path to TLS key file")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=arguments.Parser)

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

    def add_module(name: str) -> None:
        if only is None or only in MODULE_VERBS[name]:
            import importlib
            module = importlib.import_module(f"berth_cli.{name}")
            module.add_parsers(add_verb, only) if name == "lifecycle" else module.add_parsers(add_verb)

    add_module("registry")

    p = add_verb("tag", help="give an image another name")
    p.add_argument("source")
    p.add_argument("target")

    for verb, text in (("run", "run a command in a new container"), ("create", "create a container")):
        p = add_verb(verb, help=text, add_help=False)
        if only in (verb, None):
            from berth_cli import runflags
            runflags.add_flags(p)

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

    p = add_verb("completion", help="print a shell completion script")
    p.add_argument("shell", choices=("bash", "zsh", "fish"))

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
    p.add_argument("-f", "--format", default="", help="format the output with a Go template")
    p.add_argument("-s", "--size", action="store_true", help="show sizes (always shown)")
    p.add_argument("names", nargs="+")

    p = add_verb("wait", help="wait for containers to exit and print their exit codes")
    p.add_argument("containers", nargs="+")

    p = add_verb("events", help="show engine events")
    p.add_argument("--since", default="")
    p.add_argument("--until", default="")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--format", default="")

    p = add_verb("volume", help="manage volumes", add_help=False)
    if only in ("volume", None):
        from berth_cli import volumes
        volumes.add_parser(p)

    p = add_verb("network", help="manage networks", add_help=False)
    if only in ("network", None):
        from berth_cli import networks
        networks.add_parser(p)
    p = add_verb("node", help="list the cluster's nodes")
    if only in ("node", None):
        from berth_cli import networks
        networks.add_node_parser(p)
    p = add_verb("port", help="list a container's published ports")
    if only in ("port", None):
        from berth_cli import networks
        networks.add_port_parser(p)
    for name in MODULE_VERBS:
        if name != "registry":
            add_module(name)
    return parser


def _value_options(parser: arguments.Parser) -> set[str]:
    return {opt for action in parser._actions if action.nargs != 0
            for opt in action.option_strings}


def _split_command(args: list[str], parser: arguments.Parser) -> tuple[list[str], list[str]]:
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


def parse(argv: Sequence[str]):
    argv = list(argv)
    # Find the verb; for run/create, keep the container's command away from the parser.
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_VALUE_FLAGS else 1
    parser = build_parser(argv[i] if i < len(argv) and argv[i] in VERBS else None)
    command = None
    if i < len(argv) and argv[i] in ("run", "create", "exec"):
        verb_parser = parser.subparsers.choices[argv[i]]
        flags, command = _split_command(argv[i + 1:], verb_parser)
        argv = argv[:i + 1] + flags
    try:
        ns = parser.parse(argv)
    except arguments.Fallback:
        ns = to_argparse(parser).parse_args(argv)
    if command is not None:
        ns.command = command
    return ns


def _print_version() -> int:
    from berth_cli import VERSION
    print(f"berth version {VERSION}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("-v", "--version"):
            return _print_version()  # before parsing: it needs no verb's parser (all of them, unasked)
        i += 2 if args[i] in GLOBAL_VALUE_FLAGS else 1
    try:
        ns = parse(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except BrokenPipeError:  # `berth --help | head -1`
        return 0
    if ns.version:
        return _print_version()
    if ns.verb is None:
        # docker with no command prints its usage and succeeds.
        to_argparse(build_parser()).print_help()
        return 0
    if ns.verb == "completion":
        from berth_cli import completion
        print(completion.script(ns.shell, to_argparse(build_parser())), end="")
        return 0
    if not (ns.tls or ns.tlsverify or ns.host.startswith(("unix:", "/"))):
        # Refused here rather than sent in clear for the engine to refuse.
        print(f"berth: -H {ns.host}: the engine serves TCP only with mutual TLS; add --tlsverify "
              "(with --tlscacert, --tlscert and --tlskey, by default ca.pem, cert.pem and key.pem "
              "in BERTH_CERT_PATH or ~/.berth)", file=sys.stderr)
        return USAGE_ERROR
    from berth_cli import commands
    import gc
    gc.freeze()  # what is imported lives until exit: no collection need look at it again
    gc.enable()
    return commands.dispatch(ns)
