"""Interactive sessions with a container's processes: exec, attach, and run -i/-t.

An interactive session is one bidirectional Engine stream (StartExec or
AttachContainer): requests carry stdin, window sizes and close_stdin, replies
carry output and, at the end, the exit code. With -t the local terminal is put
in raw mode, so keys (Ctrl-C included) go to the process; Ctrl-P Ctrl-Q
detaches (--detach-keys changes it), and SIGWINCH sends the new size.
"""

from __future__ import annotations

import _signal as signal  # signal's own wrapper makes enums of everything (~3 ms)
import os
import queue
import sys
import threading

from berth_cli import argv as arguments
from berth_cli import registry
from berth_cli.engine import write_output
from berth_cli.errors import ENGINE_ERROR, RpcError, StatusCode, command_status


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_END = object()


# -- parsers ------------------------------------------------------------------------

VERBS = ("exec", "attach")


def add_parsers(add_verb) -> None:
    p = add_verb("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("--detach-keys", default=DEFAULT_DETACH_KEYS)
    p.add_argument("container")
    p.add_argument("command", nargs=arguments.REMAINDER)

    p = add_verb("attach", help="attach to a running container's input and output")
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    p.add_argument("--detach-keys", default=DEFAULT_DETACH_KEYS)
    p.add_argument("container")


# -- terminal and stream plumbing ---------------------------------------------------------

def parse_detach_keys(spec: str) -> bytes:
    """"ctrl-p,ctrl-q" -> b"\\x10\\x11" (docker's syntax: ctrl-<x> or single characters)."""
    keys = b""
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            c = part[5].lower()
            keys += bytes([ord(c) & 0x1f]) if c.isalpha() or c in "@[\\]^_" else b""
        elif len(part) == 1:
            keys += part.encode()
        else:
            raise ValueError(f"invalid detach keys: {spec}")
    return keys


def terminal_size():
    try:
        size = os.get_terminal_size(sys.stdout.fileno() if sys.stdout.isatty() else sys.stdin.fileno())
        return size.lines, size.columns
    except OSError:
        return 0, 0


class Session:
    """Feeds one bidirectional stream: stdin, resizes and close_stdin as request messages."""

    def __init__(self, message, start, tty: bool, stdin: bool, detach_keys: bytes):
        self._message = message
        self._queue: queue.Queue = queue.Queue()
        self._queue.put(message(start=start))
        self.tty = tty
        self.stdin = stdin
        self.detach_keys = detach_keys
        self.detached = False
        self.call = None
        self._saved_tty = None
        self._old_winch = None

    def requests(self):
        while (item := self._queue.get()) is not _END:
            yield item

    def __enter__(self):
        if self.tty and sys.stdin.isatty():
            import termios
            import tty
            self._saved_tty = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        if self.tty:
            self._old_winch = signal.signal(signal.SIGWINCH, self._on_winch)
        if self.stdin:
            threading.Thread(target=self._read_stdin, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self._saved_tty is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved_tty)
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
        self._queue.put(_END)

    def _on_winch(self, signum, frame):
        height, width = terminal_size()
        if height and width:
            self._queue.put(self._message(resize={"height": height, "width": width}))

    def _read_stdin(self):
        matched = 0
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 32768)
            except OSError:
                data = b""
            if not data:
                self._queue.put(self._message(close_stdin=True))
                return
            if self.tty and self.detach_keys:
                # Detach keys are swallowed; a partial match that fails is sent on.
                out = b""
                for byte in data:
                    b = bytes([byte])
                    if b == self.detach_keys[matched:matched + 1]:
                        matched += 1
                        if matched == len(self.detach_keys):
                            self.detached = True
                            if self.call is not None:
                                self.call.cancel()
                            return
                        continue
                    out += self.detach_keys[:matched] + b
                    matched = 0
                data = out
                if not data:
                    continue
            self._queue.put(self._message(stdin=data))


def _stream(session: Session, call_fn, on_first=None):
    """Runs the call with the session's requests; returns the exit code or None (detached)."""
    call = call_fn(session.requests())
    session.call = call
    exit_code = None
    try:
        for reply in call:
            kind = reply.WhichOneof("msg")
            if kind == "output":
                write_output(reply.output.stream, reply.output.data)
            elif kind == "exit_code":
                exit_code = reply.exit_code
            elif kind == "exit":
                exit_code = reply.exit.exit_code
            elif kind == "attached" and on_first is not None:
                on_first(reply.attached)
    except RpcError as err:
        if session.detached and err.code() == StatusCode.CANCELLED:
            return None
        raise
    return exit_code


def _detached_note(session: Session) -> None:
    if session.detached:
        sys.stderr.write("\r\nread escape sequence\r\n" if session.tty else "")
        sys.stderr.flush()


# -- exec ---------------------------------------------------------------------------------

def exec_(client, ns) -> int:
    """Its messages are berth_cli.wire's: exec never loads protobuf's runtime."""
    from berth_cli import wire
    from berth_docker import keyvalues
    if not ns.command:
        raise ValueError("exec needs a command: berth exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    if ns.tty and ns.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    env = [e for path in ns.env_file for e in keyvalues.env_file(path, os.environ)]
    env += keyvalues.env(ns.env, os.environ)
    exec_id = client.call("CreateExec", container=ns.container, cmd=ns.command, env=env, working_dir=ns.workdir,
                          user=ns.user, tty=ns.tty, attach_stdin=ns.interactive and not ns.detach).id
    height, width = terminal_size() if ns.tty else (0, 0)
    start = {"exec_id": exec_id, "detach": ns.detach, "size": {"height": height, "width": width}}
    request = wire.message("StartExecRequest")
    if ns.detach:
        for _ in client.stream("StartExec", iter([request(start=start)])):
            pass
        return 0
    session = Session(request, start, ns.tty, ns.interactive, parse_detach_keys(ns.detach_keys))
    try:
        with session:
            code = _stream(session, lambda requests: client.stream("StartExec", requests))
    except RpcError as err:
        client.report(err)
        # A container that is not running is docker's exit 1; a command that cannot run 126/127.
        return 1 if err.code() == StatusCode.FAILED_PRECONDITION else command_status(err)
    _detached_note(session)
    return 0 if code is None else code


# -- attach and interactive run -------------------------------------------------------------

def attach(client, ns) -> int:
    info = client.call("InspectContainer", id=ns.container).container
    tty = info.config.tty
    stdin = info.config.open_stdin and not ns.no_stdin
    if tty and stdin and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    height, width = terminal_size() if tty else (0, 0)
    start = {"container": info.id, "stdin": stdin, "size": {"height": height, "width": width}}
    session = _attach_session(start, tty, stdin, ns.detach_keys)
    with session:
        _stream(session, lambda requests: client.stream("AttachContainer", requests))
    if session.detached:
        _detached_note(session)
        return 0
    return client.call("WaitContainer", id=info.id).exit_code


def start_attached(client, ref: str) -> int:
    """`start -a`: attached to the container's stdio, then started (in the gateway), so the
    new run's output comes whole from its first byte; the exit status ends the stream."""
    info = client.call("InspectContainer", id=ref).container
    height, width = terminal_size() if info.config.tty else (0, 0)
    start = {"container": info.id, "start_container": True, "size": {"height": height, "width": width}}
    session = _attach_session(start, info.config.tty, False, DEFAULT_DETACH_KEYS)
    with session:
        code = _stream(session, lambda requests: client.stream("AttachContainer", requests))
    return ENGINE_ERROR if code is None else code


def run_attached(client, ns, config) -> int:
    """`run -i`/`run -t` in the foreground: create, attach, then start (in the gateway) so
    no early output is lost; the exit status ends the stream. `config` is a ContainerConfig
    of berth_cli.wire's (commands.run builds it under messages.wire_classes)."""
    if ns.tty and ns.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    config.tty = ns.tty
    config.open_stdin = ns.interactive
    # docker: stdin closes when the client's input ends, unless a terminal keeps it.
    config.stdin_once = ns.interactive and not ns.tty
    try:
        cid = client.call("CreateContainer", config=config).id
    except RpcError as err:
        if registry.pull_if_missing(client, ns, err):
            return run_attached(client, ns, config)
        client.report(err)
        return ENGINE_ERROR
    height, width = terminal_size() if ns.tty else (0, 0)
    start = {"container": cid, "stdin": ns.interactive, "start_container": True,
             "size": {"height": height, "width": width}}
    session = _attach_session(start, ns.tty, ns.interactive, DEFAULT_DETACH_KEYS)
    try:
        with session:
            code = _stream(session, lambda requests: client.stream("AttachContainer", requests))
    except RpcError as err:
        client.report(err)
        return command_status(err)
    if session.detached:
        _detached_note(session)
        return 0
    return ENGINE_ERROR if code is None else code


def _attach_session(start: dict, tty: bool, stdin: bool, detach_keys: str) -> Session:
    """The requests of an AttachContainer call (berth_cli.wire's), the first with `start`
    (AttachParams' fields)."""
    from berth_cli import wire
    return Session(wire.message("AttachContainerRequest"), start, tty, stdin, parse_detach_keys(detach_keys))


def add_run_config(ns, config) -> None:
    """tty and stdin flags for `create -it` (a later `start -a`/`attach` uses them)."""
    config.tty = bool(getattr(ns, "tty", False))
    config.open_stdin = bool(getattr(ns, "interactive", False))


HANDLERS = {"exec": exec_, "attach": attach}
