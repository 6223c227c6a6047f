"""The verbs: each makes its Engine calls over sync gRPC and prints like docker."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from berth_cli.transport import RpcError, StatusCode, Unreachable

from berth.engine.v1 import engine_pb2
from berth.types.v1 import stdio_pb2
from berth_cli import format as fmt
from berth_cli import registry
from berth_cli import depth, networks, volumes
from berth_cli import lifecycle

ENGINE_ERROR = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127
CHUNK = 1 << 20


class Failed(Exception):
    """Stop the verb with this exit status; the message is already printed."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def dispatch(ns) -> int:
    handler = VERBS[ns.verb]
    client = Client(ns.host)
    try:
        return handler(client, ns) or 0
    except Failed as exc:
        return exc.status
    except RpcError as err:
        print(client.describe(err), file=sys.stderr)
        return ENGINE_ERROR if ns.verb in ("run", "create", "start") else 1
    except ValueError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return ENGINE_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `berth ps | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return 0
    finally:
        client.close()


class Client:
    """A sync channel to the gateway, opened on first use."""

    def __init__(self, host: str):
        self.host = host
        self._channel = None
        self._stub = None

    @property
    def stub(self):
        """An Engine stub on the CLI's light transport (see transport.py for why)."""
        if self._stub is None:
            from berth_cli import transport
            self._channel = transport.Channel(self.host)
            self._stub = transport.Stub(
                self._channel, engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
        return self._stub

    def close(self) -> None:
        # Deliberately not channel.close(): closing costs ~90 ms and the
        # process exits right after (see __main__), which releases the socket.
        pass

    def describe(self, err: RpcError) -> str:
        details = err.details() if hasattr(err, "details") else str(err)
        if isinstance(err, Unreachable):
            return f"Cannot connect to the berth daemon at {self.host}. Is berthd running?"
        return f"Error response from daemon: {details}"


def _error(client: Client, err: RpcError) -> None:
    print(client.describe(err), file=sys.stderr)


def _exec_status(message: str) -> int:
    """Docker's codes for a command that could not run: 126 cannot invoke, 127 not found."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return NOT_FOUND
    if "permission denied" in lowered:
        return CANNOT_INVOKE
    return ENGINE_ERROR


def _seconds(ts) -> float:
    return ts.seconds + ts.nanos / 1e9 if ts is not None and (ts.seconds or ts.nanos) else 0.0


def _write(stream: int, data: bytes) -> None:
    out = sys.stderr.buffer if stream == stdio_pb2.OUTPUT_STREAM_STDERR else sys.stdout.buffer
    out.write(data)
    out.flush()


# -- version ------------------------------------------------------------------------

def version(client: Client, ns) -> int:
    print("Client:\n Version:      0.1.0\n API version:  1.0")
    v = client.stub.GetVersion(engine_pb2.GetVersionRequest())
    print(f"\nServer:\n Engine:\n  Version:      {v.version}\n  API version:  {v.api_version}\n"
          f"  OS/Arch:      {v.os}/{v.arch}\n  Kernel:       {v.kernel_version}\n"
          f" Runtime:\n  Name:         {v.runtime}")
    return 0


# -- images ---------------------------------------------------------------------------

def _chunks(f):
    while True:
        data = f.read(CHUNK)
        if not data:
            return
        yield data


def _open_input(path: str):
    if path and path != "-":
        return open(path, "rb")
    if sys.stdin.isatty():
        raise ValueError("requested load from stdin, but stdin is empty")
    return os.fdopen(os.dup(sys.stdin.fileno()), "rb")


def load(client: Client, ns) -> int:
    with _open_input(ns.input) as f:
        response = client.stub.LoadImages(engine_pb2.LoadImagesRequest(data=d) for d in _chunks(f))
    for image in response.images:
        if image.repo_tags:
            for tag in image.repo_tags:
                print(f"Loaded image: {fmt.familiar(tag)}")
        else:
            print(f"Loaded image ID: {image.id}")
    return 0


def import_(client: Client, ns) -> int:
    with _open_input(ns.file) as f:
        def requests():
            yield engine_pb2.ImportImageRequest(header=engine_pb2.ImportHeader(
                reference=ns.reference, changes=ns.change, message=ns.message))
            for data in _chunks(f):
                yield engine_pb2.ImportImageRequest(chunk=data)
        image = client.stub.ImportImage(requests()).image
    print(image.id)
    return 0


def save(client: Client, ns) -> int:
    return write_archive(ns.output, lambda: client.stub.SaveImages(
        engine_pb2.SaveImagesRequest(references=ns.images)))


def write_archive(output: str, open_stream) -> int:
    """A tarball from the engine to `output` (atomically) or to stdout, never to a terminal."""
    if not output and sys.stdout.isatty():
        print("berth: cowardly refusing to save to a terminal. Use the -o flag or redirect",
              file=sys.stderr)
        return 1
    stream = open_stream()
    if output:
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                for chunk in stream:
                    out.write(chunk.data)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        for chunk in stream:
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
    return 0


def image_rows(images, now: float, no_trunc: bool = False) -> list[dict]:
    """One row per name, as `docker images` shows them; nameless images as <none>."""
    rows = []
    for image in images:
        created = _seconds(image.created)
        names = [fmt.split_repo_tag(t) for t in image.repo_tags] or [("<none>", "<none>")]
        for repo, tag in names:
            rows.append({
                "Containers": str(image.containers),
                "CreatedAt": fmt.local_created(created) if created else "",
                "CreatedSince": fmt.ago(created, now),
                "Digest": "<none>",
                "ID": image.id if no_trunc else fmt.short_id(image.id),
                "Repository": repo,
                "Size": fmt.human_size(image.size),
                "Tag": tag,
            })
    return rows


def images(client: Client, ns) -> int:
    import json
    response = client.stub.ListImages(engine_pb2.ListImagesRequest(all=ns.all, reference=ns.reference))
    rows = image_rows(response.images, time.time(), ns.no_trunc)
    if ns.quiet:
        seen = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
        print("\n".join(seen)) if seen else None
    elif ns.format == "json":
        for row in rows:
            print(json.dumps(row))
    else:
        print(fmt.table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"),
                        [(r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]) for r in rows]))
    return 0


def rmi(client: Client, ns) -> int:
    status = 0
    for ref in ns.images:
        try:
            response = client.stub.RemoveImage(engine_pb2.RemoveImageRequest(reference=ref, force=ns.force))
        except RpcError as err:
            _error(client, err)
            status = 1
            continue
        for name in response.untagged:
            print(f"Untagged: {fmt.familiar(name)}")
        for image_id in response.deleted:
            print(f"Deleted: {image_id}")
    return status


def tag(client: Client, ns) -> int:
    client.stub.TagImage(engine_pb2.TagImageRequest(source=ns.source, target=ns.target))
    return 0


# -- run and create -----------------------------------------------------------------

def container_config(ns) -> engine_pb2.ContainerConfig:
    env = []
    for e in ns.env:
        if "=" in e:
            env.append(e)
        elif e in os.environ:
            # `-e NAME` takes the value from the client's environment, as docker does.
            env.append(f"{e}={os.environ[e]}")
    config = engine_pb2.ContainerConfig(
        image=ns.image, name=ns.name, cmd=ns.command, env=env, working_dir=ns.workdir,
        user=ns.user, hostname=ns.hostname, labels=fmt.key_values(ns.label, "label"),
        network_mode=ns.network, memory_bytes=fmt.parse_bytes(ns.memory) if ns.memory else 0,
        nano_cpus=fmt.parse_cpus(ns.cpus) if ns.cpus else 0, cpu_shares=ns.cpu_shares,
        pids_limit=ns.pids_limit, auto_remove=ns.rm, stop_signal=ns.stop_signal,
        readonly_rootfs=ns.read_only, mounts=volumes.mount_specs(ns), volumes_from=ns.volumes_from)
    if ns.entrypoint is not None:
        config.entrypoint.SetInParent()
        if ns.entrypoint:
            config.entrypoint.values.append(ns.entrypoint)
    if ns.stop_timeout is not None:
        config.stop_timeout = ns.stop_timeout
    networks.apply_run_flags(ns, config)
    lifecycle.apply_run_flags(ns, config)
    depth.add_run_config(ns, config)
    return config


def create(client: Client, ns) -> int:
    try:
        response = client.stub.CreateContainer(engine_pb2.CreateContainerRequest(config=container_config(ns)))
    except RpcError as err:
        if registry.pull_if_missing(client, ns, err):
            return create(client, ns)
        _error(client, err)
        return ENGINE_ERROR
    for warning in response.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(response.id)
    return 0


class _SignalProxy:
    """Forwards SIGINT/SIGTERM to the container while attached, as docker's sig-proxy does."""

    def __init__(self, client: Client):
        self._client = client
        self.container_id = ""
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _forward(self, signum, frame):
        if not self.container_id:
            # Nothing to forward to yet: give up the way the signal asks.
            raise KeyboardInterrupt
        # Off the main thread: it is busy in the stream, and a handler must not block on I/O.
        request = engine_pb2.KillContainerRequest(id=self.container_id, signal=signal.Signals(signum).name)
        threading.Thread(target=self._kill, args=(request,), daemon=True).start()

    def _kill(self, request) -> None:
        try:
            self._client.stub.KillContainer(request)
        except RpcError:
            pass


def run(client: Client, ns) -> int:
    config = container_config(ns)
    if ns.detach:
        try:
            for response in client.stub.RunContainer(
                engine_pb2.RunContainerRequest(config=config, attach=False)):
                if response.WhichOneof("event") == "id":
                    print(response.id)
        except RpcError as err:
            if registry.pull_if_missing(client, ns, err):
                return run(client, ns)
            _error(client, err)
            return _exec_status(err.details() or "")
        return 0
    if ns.tty or ns.interactive:
        # Create, attach, start: the stdio streams are in place before the process runs.
        return depth.run_attached(client, ns, config)
    with _SignalProxy(client) as proxy:
        try:
            for response in client.stub.RunContainer(
                engine_pb2.RunContainerRequest(config=config, attach=True)):
                kind = response.WhichOneof("event")
                if kind == "output":
                    _write(response.output.stream, response.output.data)
                elif kind == "id":
                    proxy.container_id = response.id
                elif kind == "exit":
                    return response.exit.exit_code
        except RpcError as err:
            if not proxy.container_id and registry.pull_if_missing(client, ns, err):
                return run(client, ns)
            _error(client, err)
            return _exec_status(err.details() or "") if not proxy.container_id else ENGINE_ERROR
    print("Error response from daemon: the engine ended the run without an exit status", file=sys.stderr)
    return ENGINE_ERROR


# -- lifecycle ------------------------------------------------------------------------

def _each(client: Client, refs, call) -> int:
    """Docker's way with several containers: report each failure, go on, exit 1 at the end."""
    status = 0
    for ref in refs:
        try:
            call(ref)
        except RpcError as err:
            _error(client, err)
            status = 1
            continue
        print(ref)
    return status


def start(client: Client, ns) -> int:
    if not ns.attach:
        status = _each(client, ns.containers,
                       lambda ref: client.stub.StartContainer(engine_pb2.StartContainerRequest(id=ref)))
        return status
    ref = ns.containers[0]
    with _SignalProxy(client) as proxy:
        from google.protobuf import timestamp_pb2
        since = timestamp_pb2.Timestamp()
        since.GetCurrentTime()
        try:
            client.stub.StartContainer(engine_pb2.StartContainerRequest(id=ref))
        except RpcError as err:
            _error(client, err)
            return _exec_status(err.details() or "")
        proxy.container_id = ref
        for chunk in (
            reply.chunk for reply in client.stub.GetContainerLogs(engine_pb2.GetContainerLogsRequest(
                id=ref, follow=True, tail=-1, since=since))):
            _write(chunk.stream, chunk.data)
        return client.stub.WaitContainer(engine_pb2.WaitContainerRequest(id=ref)).exit_code


def stop(client: Client, ns) -> int:
    restart = ns.verb == "restart"

    def call(ref):
        request = (engine_pb2.RestartContainerRequest if restart else engine_pb2.StopContainerRequest)(id=ref)
        if ns.time is not None:
            request.timeout = ns.time
        (client.stub.RestartContainer if restart else client.stub.StopContainer)(request)
    return _each(client, ns.containers, call)


def kill(client: Client, ns) -> int:
    return _each(client, ns.containers, lambda ref: client.stub.KillContainer(
        engine_pb2.KillContainerRequest(id=ref, signal=ns.signal)))


def rm(client: Client, ns) -> int:
    return _each(client, ns.containers, lambda ref: client.stub.RemoveContainer(
        engine_pb2.RemoveContainerRequest(id=ref, force=ns.force, remove_volumes=ns.volumes)))


def wait(client: Client, ns) -> int:
    status = 0
    for ref in ns.containers:
        try:
            print(client.stub.WaitContainer(engine_pb2.WaitContainerRequest(id=ref)).exit_code, flush=True)
        except RpcError as err:
            _error(client, err)
            status = 1
    return status


# -- ps, logs, inspect, events --------------------------------------------------------

def _parse_filters(values) -> dict[str, engine_pb2.StringList]:
    filters: dict[str, list[str]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key:
            raise ValueError(f"bad format of filter (expected name=value): {v}")
        filters.setdefault(key.strip().lower(), []).append(value)
    return {k: engine_pb2.StringList(values=v) for k, v in filters.items()}


def container_row(c, now: float, no_trunc: bool = False) -> dict:
    created = _seconds(c.created)
    return {
        "Command": fmt.command_column(c.path, list(c.args), truncate=not no_trunc),
        "CreatedAt": fmt.local_created(created) if created else "",
        "ID": c.id if no_trunc else c.id[:12],
        "Image": c.image or fmt.short_id(c.image_id),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.config.labels.items())),
        "Names": c.name,
        "Networks": c.network_mode,
        "Ports": networks.ports_column(c.ports),
        "RunningFor": fmt.ago(created, now),
        "State": c.state.status,
        "Status": fmt.status_line(c.state.status, c.state.exit_code, _seconds(c.state.started_at),
                                  _seconds(c.state.finished_at), now)
        + (f" ({c.state.health.status})" if c.state.running and c.state.health.status else ""),
    }


def ps(client: Client, ns) -> int:
    import json
    response = client.stub.ListContainers(engine_pb2.ListContainersRequest(
        all=ns.all, filters=_parse_filters(ns.filter)))
    now = time.time()
    if ns.quiet:
        for c in response.containers:
            print(c.id if ns.no_trunc else c.id[:12])
        return 0
    rows = [container_row(c, now, ns.no_trunc) for c in response.containers]
    if ns.format == "json":
        for row in rows:
            print(json.dumps(row))
        return 0
    print(fmt.table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"),
                    [(r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"],
                      r["Names"]) for r in rows]))
    return 0


def _timestamp(seconds: float):
    from google.protobuf import timestamp_pb2
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def logs(client: Client, ns) -> int:
    now = time.time()
    if ns.tail == "all":
        tail = -1
    else:
        try:
            tail = int(ns.tail)
        except ValueError:
            raise ValueError(f"invalid value {ns.tail!r} for --tail: a number or \"all\"") from None
    request = engine_pb2.GetContainerLogsRequest(id=ns.container, follow=ns.follow, tail=tail,
                                                 timestamps=ns.timestamps)
    if ns.since:
        request.since.CopyFrom(_timestamp(fmt.parse_time(ns.since, now)))
    if ns.until:
        request.until.CopyFrom(_timestamp(fmt.parse_time(ns.until, now)))
    for chunk in (reply.chunk for reply in client.stub.GetContainerLogs(request)):
        data = chunk.data
        if ns.timestamps:
            data = fmt.rfc3339(chunk.time.seconds, chunk.time.nanos).encode() + b" " + data
        _write(chunk.stream, data)
    return 0


def _time_or_none(ts) -> str:
    return fmt.rfc3339(ts.seconds, ts.nanos) if ts.seconds or ts.nanos else "0001-01-01T00:00:00Z"


def container_json(c) -> dict:
    cfg = c.config
    entrypoint = list(cfg.entrypoint.values) if cfg.HasField("entrypoint") else None
    return {
        "Id": c.id,
        "Created": _time_or_none(c.created),
        "Path": c.path,
        "Args": list(c.args),
        "State": {
            "Status": c.state.status,
            "Running": c.state.running,
            "Paused": c.state.paused,
            "Restarting": c.state.restarting,
            "OOMKilled": c.state.oom_killed,
            "Dead": False,
            "Pid": c.state.pid,
            "ExitCode": c.state.exit_code,
            "Error": c.state.error,
            "StartedAt": _time_or_none(c.state.started_at),
            "FinishedAt": _time_or_none(c.state.finished_at),
            **lifecycle.health_json(c.state),
        },
        "RestartCount": c.restart_count,
        "Image": c.image_id,
        "LogPath": c.log_path,
        "Name": f"/{c.name}",
        "Config": {
            "Hostname": c.hostname,
            "User": cfg.user,
            "Env": list(c.env),
            "Cmd": list(cfg.cmd) or None,
            "Image": c.image,
            "WorkingDir": c.working_dir,
            "Entrypoint": entrypoint,
            "Labels": dict(cfg.labels),
            "StopSignal": cfg.stop_signal or None,
            "StopTimeout": cfg.stop_timeout if cfg.HasField("stop_timeout") else None,
            **lifecycle.healthcheck_json(cfg),
        },
        "HostConfig": {
            "NetworkMode": c.network_mode,
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.readonly_rootfs,
            "Memory": cfg.memory_bytes,
            "NanoCpus": cfg.nano_cpus,
            "CpuShares": cfg.cpu_shares,
            "PidsLimit": cfg.pids_limit or None,
            "RestartPolicy": {"Name": cfg.restart_policy.name or "no",
                              "MaximumRetryCount": cfg.restart_policy.maximum_retry_count},
        },
        "NetworkSettings": {"SandboxKey": c.netns_path, "Ports": networks.ports_json(c.ports),
                            "Networks": networks.networks_json(c)},
        "Mounts": [volumes.mount_json(m) for m in c.mounts],
    }


def image_json(image) -> dict:
    import json
    try:
        config = json.loads(image.config_json or b"{}")
    except ValueError:
        config = {}
    return {
        "Id": image.id,
        "RepoTags": [fmt.familiar(t) for t in image.repo_tags],
        "RepoDigests": [fmt.familiar(d) for d in image.repo_digests],
        "Created": _time_or_none(image.created),
        "Config": config.get("config", {}),
        "Architecture": image.architecture,
        "Os": image.os,
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
        "Containers": image.containers,
    }


def inspect(client: Client, ns) -> int:
    import json
    found, status = [], 0
    for name in ns.names:
        obj = None
        if ns.type in (None, "container"):
            try:
                obj = container_json(
                    client.stub.InspectContainer(engine_pb2.InspectContainerRequest(id=name)).container)
            except RpcError as err:
                if err.code() != StatusCode.NOT_FOUND:
                    raise
        if obj is None and ns.type in (None, "image"):
            try:
                obj = image_json(
                    client.stub.InspectImage(engine_pb2.InspectImageRequest(reference=name)).image)
            except RpcError as err:
                if err.code() not in (StatusCode.NOT_FOUND, StatusCode.INVALID_ARGUMENT):
                    raise
        if obj is None:
            kind = {"container": "container", "image": "image"}.get(ns.type, "object")
            print(f"Error: No such {kind}: {name}", file=sys.stderr)
            status = 1
        else:
            found.append(obj)
    print(json.dumps(found, indent=4))
    return status


def event_line(event) -> str:
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
    when = fmt.rfc3339(event.time.seconds, event.time.nanos)
    return f"{when} {event.type} {event.action} {event.actor_id}" + (f" ({attrs})" if attrs else "")


def events(client: Client, ns) -> int:
    import json
    now = time.time()
    request = engine_pb2.SubscribeEventsRequest(filters=_parse_filters(ns.filter))
    if ns.since:
        request.since.CopyFrom(_timestamp(fmt.parse_time(ns.since, now)))
    if ns.until:
        request.until.CopyFrom(_timestamp(fmt.parse_time(ns.until, now)))
    for event in (reply.event for reply in client.stub.SubscribeEvents(request)):
        if ns.format == "json":
            print(json.dumps({"Type": event.type, "Action": event.action, "Actor": {
                "ID": event.actor_id, "Attributes": dict(event.attributes)},
                "time": event.time.seconds, "timeNano": event.time.seconds * 10**9 + event.time.nanos}),
                flush=True)
        else:
            print(event_line(event), flush=True)
    return 0


VERBS = {
    "pull": registry.pull, "push": registry.push, "login": registry.login, "logout": registry.logout,
    "version": version, "load": load, "import": import_, "save": save, "images": images,
    "rmi": rmi, "tag": tag, "run": run, "create": create, "start": start, "stop": stop,
    "restart": stop, "kill": kill, "rm": rm, "wait": wait, "ps": ps, "logs": logs,
    "inspect": inspect, "events": events, "volume": volumes.dispatch,
    "network": networks.dispatch, "port": networks.port,
    "rename": lifecycle.rename, "commit": lifecycle.commit, "diff": lifecycle.diff,
    **depth.HANDLERS, "update": lifecycle.update, "container": lifecycle.container, "system": lifecycle.system,
}
