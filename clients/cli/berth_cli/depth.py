"""Verbs for processes, terminals and files of containers: exec, attach, run -i/-t,
pause, unpause, top, stats, update (resources), cp, export.

An interactive session is one bidirectional Engine stream (StartExec or
AttachContainer): requests carry stdin, window sizes and close_stdin, replies
carry output and, at the end, the exit code. With -t the local terminal is put
in raw mode, so keys (Ctrl-C included) go to the process; Ctrl-P Ctrl-Q
detaches (--detach-keys changes it), and SIGWINCH sends the new size.
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time

from berth.types.v1 import stdio_pb2

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_END = object()


# -- parsers ------------------------------------------------------------------------

VERBS = ("exec", "attach", "pause", "unpause", "top", "stats", "cp", "export")


def add_parsers(add_verb) -> None:
    p = add_verb("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-u", "--user", default="")
    p.add_argument("--detach-keys", default=DEFAULT_DETACH_KEYS)
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = add_verb("attach", help="attach to a running container's input and output")
    p.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    p.add_argument("--detach-keys", default=DEFAULT_DETACH_KEYS)
    p.add_argument("container")

    p = add_verb("pause", help="pause all processes within containers")
    p.add_argument("containers", nargs="+")
    p = add_verb("unpause", help="unpause all processes within containers")
    p.add_argument("containers", nargs="+")

    p = add_verb("top", help="show the processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)

    p = add_verb("stats", help="show containers' resource usage")
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("containers", nargs="+")

    p = add_verb("cp", help="copy files between a container and the local filesystem")
    p.add_argument("source", help="CONTAINER:PATH, a local path, or - (a tar on stdin)")
    p.add_argument("destination", help="CONTAINER:PATH, a local path, or - (a tar to stdout)")

    p = add_verb("export", help="export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default="")
    p.add_argument("container")


def add_update_flags(p) -> None:
    p.add_argument("-m", "--memory", default=None, help="memory limit, e.g. 64m (0: none)")
    p.add_argument("--cpus", default=None, help="number of CPUs (0: no limit)")
    p.add_argument("-c", "--cpu-shares", type=int, default=None)
    p.add_argument("--pids-limit", type=int, default=None)


def has_update_flags(ns) -> bool:
    return any(getattr(ns, k, None) is not None for k in ("memory", "cpus", "cpu_shares", "pids_limit"))


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
            self._queue.put(self._message(resize=stdio_pb2.TerminalSize(height=height, width=width)))

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


def _write(chunk) -> None:
    out = sys.stderr.buffer if chunk.stream == stdio_pb2.OUTPUT_STREAM_STDERR else sys.stdout.buffer
    out.write(chunk.data)
    out.flush()


def _stream(session: Session, call_fn, on_first=None):
    """Runs the call with the session's requests; returns the exit code or None (detached)."""
    from berth_cli.transport import RpcError, StatusCode
    call = call_fn(session.requests())
    session.call = call
    exit_code = None
    try:
        for reply in call:
            kind = reply.WhichOneof("msg")
            if kind == "output":
                _write(reply.output)
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
    from berth_cli.transport import RpcError, StatusCode

    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli.commands import ENGINE_ERROR, _exec_status
    if not ns.command:
        raise ValueError("exec needs a command: berth exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    if ns.tty and ns.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    env = [e if "=" in e else f"{e}={os.environ[e]}" for e in ns.env if "=" in e or e in os.environ]
    exec_id = client.stub.CreateExec(pb.CreateExecRequest(
        container=ns.container, cmd=ns.command, env=env, working_dir=ns.workdir, user=ns.user,
        tty=ns.tty, attach_stdin=ns.interactive and not ns.detach)).id
    height, width = terminal_size() if ns.tty else (0, 0)
    start = pb.ExecStartParams(exec_id=exec_id, detach=ns.detach,
                               size=stdio_pb2.TerminalSize(height=height, width=width))
    if ns.detach:
        for _ in client.stub.StartExec(iter([pb.StartExecRequest(start=start)])):
            pass
        return 0
    session = Session(pb.StartExecRequest, start, ns.tty, ns.interactive,
                      parse_detach_keys(ns.detach_keys))
    try:
        with session:
            code = _stream(session, client.stub.StartExec)
    except RpcError as err:
        print(client.describe(err), file=sys.stderr)
        return _exec_status(err.details() or "") if "OCI runtime exec failed" in (err.details() or "") \
            else ENGINE_ERROR if err.code() != StatusCode.FAILED_PRECONDITION else 1
    _detached_note(session)
    return 0 if code is None else code


# -- attach and interactive run -------------------------------------------------------------

def attach(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    info = client.stub.InspectContainer(pb.InspectContainerRequest(id=ns.container)).container
    tty = info.config.tty
    stdin = info.config.open_stdin and not ns.no_stdin
    if tty and stdin and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    height, width = terminal_size() if tty else (0, 0)
    start = pb.AttachParams(
        container=info.id, stdin=stdin, size=stdio_pb2.TerminalSize(height=height, width=width))
    session = Session(pb.AttachContainerRequest, start, tty, stdin, parse_detach_keys(ns.detach_keys))
    with session:
        _stream(session, client.stub.AttachContainer)
    if session.detached:
        _detached_note(session)
        return 0
    return client.stub.WaitContainer(pb.WaitContainerRequest(id=info.id)).exit_code


def run_attached(client, ns, config) -> int:
    """`run -i`/`run -t` in the foreground: create, attach, then start (in the gateway) so
    no early output is lost; the exit status ends the stream."""
    from berth_cli.transport import RpcError

    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli import registry
    from berth_cli.commands import ENGINE_ERROR, _error, _exec_status
    if ns.tty and ns.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    config.tty = ns.tty
    config.open_stdin = ns.interactive
    # docker: stdin closes when the client's input ends, unless a terminal keeps it.
    config.stdin_once = ns.interactive and not ns.tty
    try:
        cid = client.stub.CreateContainer(pb.CreateContainerRequest(config=config)).id
    except RpcError as err:
        if registry.pull_if_missing(client, ns, err):
            return run_attached(client, ns, config)
        _error(client, err)
        return ENGINE_ERROR
    height, width = terminal_size() if ns.tty else (0, 0)
    start = pb.AttachParams(container=cid, stdin=ns.interactive, start_container=True,
                            size=stdio_pb2.TerminalSize(height=height, width=width))
    session = Session(pb.AttachContainerRequest, start, ns.tty, ns.interactive,
                      parse_detach_keys(DEFAULT_DETACH_KEYS))
    try:
        with session:
            code = _stream(session, client.stub.AttachContainer)
    except RpcError as err:
        _error(client, err)
        return _exec_status(err.details() or "")
    if session.detached:
        _detached_note(session)
        return 0
    return ENGINE_ERROR if code is None else code


def add_run_config(ns, config) -> None:
    """tty and stdin flags for `create -it` (a later `start -a`/`attach` uses them)."""
    config.tty = bool(getattr(ns, "tty", False))
    config.open_stdin = bool(getattr(ns, "interactive", False))


# -- pause, top, stats, update ------------------------------------------------------------

def _each(client, refs, call) -> int:
    from berth_cli.transport import RpcError
    status = 0
    for ref in refs:
        try:
            call(ref)
        except RpcError as err:
            print(client.describe(err), file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status


def pause(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    if ns.verb == "pause":
        rpc, request = client.stub.PauseContainer, pb.PauseContainerRequest
    else:
        rpc, request = client.stub.UnpauseContainer, pb.UnpauseContainerRequest
    return _each(client, ns.containers, lambda ref: rpc(request(id=ref)))


def top(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli import format as fmt
    reply = client.stub.ListContainerProcesses(
        pb.ListContainerProcessesRequest(id=ns.container, ps_args=ns.ps_args))
    print(fmt.table(tuple(reply.titles), [tuple(row.values) for row in reply.processes]))
    return 0


def binary_size(n: float) -> str:
    """Memory as docker stats shows it: 1024-based units (MiB, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024
    return f"{n}B"


def _stats_row(s) -> tuple:
    from berth_cli import format as fmt
    mem_pct = 100.0 * s.memory_usage / s.memory_limit if s.memory_limit else 0.0
    return (s.id[:12], s.name, f"{s.cpu_percent:.2f}%",
            f"{binary_size(s.memory_usage)} / {binary_size(s.memory_limit)}", f"{mem_pct:.2f}%",
            f"{fmt.human_size(s.net_rx_bytes)} / {fmt.human_size(s.net_tx_bytes)}",
            f"{fmt.human_size(s.block_read_bytes)} / {fmt.human_size(s.block_write_bytes)}", str(s.pids))


STATS_TITLES = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def stats(client, ns) -> int:
    from berth_cli.transport import RpcError

    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli import format as fmt
    if ns.no_stream:
        rows, status = [], 0
        for ref in ns.containers:
            try:
                for s in client.stub.GetContainerStats(pb.GetContainerStatsRequest(id=ref)):
                    rows.append(_stats_row(s))
            except RpcError as err:
                print(client.describe(err), file=sys.stderr)
                status = 1
        print(fmt.table(STATS_TITLES, rows))
        return status
    latest: dict[str, tuple] = {}
    errors: list[str] = []

    def follow(ref):
        try:
            for s in client.stub.GetContainerStats(pb.GetContainerStatsRequest(id=ref, stream=True)):
                latest[ref] = _stats_row(s)
        except RpcError as err:
            errors.append(client.describe(err))
        latest.pop(ref, None)

    threads = [threading.Thread(target=follow, args=(ref,), daemon=True) for ref in ns.containers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        rows = [latest[r] for r in ns.containers if r in latest]
        sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "")
        print(fmt.table(STATS_TITLES, rows), flush=True)
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


def update_resources(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli import format as fmt
    fields = {}
    if ns.memory is not None:
        fields["memory_bytes"] = fmt.parse_bytes(ns.memory) if ns.memory not in ("0", "") else 0
    if ns.cpus is not None:
        fields["nano_cpus"] = fmt.parse_cpus(ns.cpus) if ns.cpus not in ("0", "") else 0
    if ns.cpu_shares is not None:
        fields["cpu_shares"] = ns.cpu_shares
    if ns.pids_limit is not None:
        fields["pids_limit"] = ns.pids_limit
    return _each(client, ns.containers,
                 lambda ref: client.stub.UpdateContainerResources(
                     pb.UpdateContainerResourcesRequest(id=ref, **fields)))


# -- cp and export ----------------------------------------------------------------------------

def _split_ref(arg: str):
    """("container", "/path") for CONTAINER:PATH, None for a local path."""
    if arg.startswith(("/", ".", "~")) or ":" not in arg:
        return None
    name, _, path = arg.partition(":")
    if not name or "/" in name:
        return None
    return name, path or "/"


def cp(client, ns) -> int:
    src, dst = _split_ref(ns.source), _split_ref(ns.destination)
    if (src is None) == (dst is None):
        raise ValueError("copying between containers or between local paths is not supported: "
                         "one of source and destination must be CONTAINER:PATH")
    if src is not None:
        return _copy_out(client, src[0], src[1], ns.destination)
    return _copy_in(client, ns.source, dst[0], dst[1])


def _copy_out(client, container: str, path: str, dest: str) -> int:
    import tarfile
    import tempfile

    from berth.engine.v1 import engine_pb2 as pb
    stream = client.stub.CopyFromContainer(pb.CopyFromContainerRequest(
        id=container, path=path if path.startswith("/") else "/" + path))
    if dest == "-":
        for chunk in stream:
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
        return 0
    with tempfile.TemporaryFile() as f:
        for chunk in stream:
            f.write(chunk.data)
        f.seek(0)
        with tarfile.open(fileobj=f, mode="r:") as tar:
            members = tar.getmembers()
            if os.path.isdir(dest):
                target = dest
            else:
                parent = os.path.dirname(os.path.abspath(dest))
                if not os.path.isdir(parent):
                    raise ValueError(f"no such directory: {parent}")
                top = members[0].name.split("/")[0] if members else ""
                new = os.path.basename(os.path.abspath(dest))
                for m in members:
                    head, sep, rest = m.name.partition("/")
                    if head == top:
                        m.name = new + sep + rest
                target = parent
            # The "tar" filter refuses members that would land outside `target`.
            tar.extractall(target, members=members, filter="tar")
    return 0


def _copy_in(client, source: str, container: str, path: str) -> int:
    import tarfile
    import tempfile

    from berth.engine.v1 import engine_pb2 as pb
    with tempfile.TemporaryFile() as f:
        if source == "-":
            while data := sys.stdin.buffer.read(1 << 20):
                f.write(data)
        else:
            if not os.path.lexists(source):
                raise ValueError(f"could not find the file {source}: no such file or directory")
            with tarfile.open(fileobj=f, mode="w:") as tar:
                tar.add(source, arcname=os.path.basename(os.path.abspath(source)))
        f.seek(0)

        def requests():
            yield pb.CopyToContainerRequest(header=pb.CopyToContainerHeader(
                id=container, path=path if path.startswith("/") else "/" + path))
            while data := f.read(1 << 20):
                yield pb.CopyToContainerRequest(chunk=data)
        client.stub.CopyToContainer(requests())
    return 0


def export(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    from berth_cli.commands import write_archive
    return write_archive(
        ns.output, lambda: client.stub.ExportContainer(pb.ExportContainerRequest(id=ns.container)))


HANDLERS = {"exec": exec_, "attach": attach, "pause": pause, "unpause": pause, "top": top,
            "stats": stats, "cp": cp, "export": export}
