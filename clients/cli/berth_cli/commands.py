"""The verbs: each makes its Engine calls and prints like docker. `dispatch` runs one.

The verbs of images, containers' lifecycle, ps, logs, inspect and events live here;
the others in the modules named in VERBS, which import only the shared pieces
(engine, errors, archives, format), never this module.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import berth_errors

from berth.engine.v1 import engine_pb2
from berth_cli import build, files, interactive, lifecycle, logopts, networks, registry, security, usage, volumes
from berth_cli import format as fmt
from berth_cli.archives import chunks, open_input, write_archive
from berth_cli.engine import Client, each, write_output
from berth_cli.errors import ENGINE_ERROR, Failed, RpcError, StatusCode, command_status


def dispatch(ns) -> int:
    handler = VERBS[ns.verb]
    client = Client(ns.host)
    try:
        return handler(client, ns) or 0
    except Failed as exc:
        return exc.status
    except RpcError as err:
        client.report(err)
        return ENGINE_ERROR if ns.verb in ("run", "create", "start") else 1
    except (ValueError, berth_errors.BerthError) as exc:
        # Bad flags found after parsing (berth_docker's InvalidArgument is a ValueError too),
        # or what berth cannot do yet: refused before anything was sent.
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


# -- version ------------------------------------------------------------------------

def version(client: Client, ns) -> int:
    print("Client:\n Version:      0.1.0\n API version:  1.0")
    v = client.stub.GetVersion(engine_pb2.GetVersionRequest())
    print(f"\nServer:\n Engine:\n  Version:      {v.version}\n  API version:  {v.api_version}\n"
          f"  OS/Arch:      {v.os}/{v.arch}\n  Kernel:       {v.kernel_version}\n"
          f" Runtime:\n  Name:         {v.runtime}")
    return 0


# -- images ---------------------------------------------------------------------------

def load(client: Client, ns) -> int:
    from berth_docker.reference import familiar
    with open_input(ns.input) as f:
        response = client.stub.LoadImages(engine_pb2.LoadImagesRequest(data=d) for d in chunks(f))
    for image in response.images:
        if image.repo_tags:
            for tag in image.repo_tags:
                print(f"Loaded image: {familiar(tag)}")
        else:
            print(f"Loaded image ID: {image.id}")
    return 0


def import_(client: Client, ns) -> int:
    with open_input(ns.file) as f:
        def requests():
            yield engine_pb2.ImportImageRequest(header=engine_pb2.ImportHeader(
                reference=ns.reference, changes=ns.change, message=ns.message))
            for data in chunks(f):
                yield engine_pb2.ImportImageRequest(chunk=data)
        image = client.stub.ImportImage(requests()).image
    print(image.id)
    return 0


def save(client: Client, ns) -> int:
    return write_archive(ns.output, lambda: client.stub.SaveImages(
        engine_pb2.SaveImagesRequest(references=ns.images)))


def image_rows(images, now: float, no_trunc: bool = False) -> list[dict]:
    """One row per name, as `docker images` shows them; nameless images as <none>."""
    from berth_docker.times import ago, local_created, seconds
    from berth_docker.units import human_size
    rows = []
    for image in images:
        created = seconds(image.created)
        names = [fmt.split_repo_tag(t) for t in image.repo_tags] or [("<none>", "<none>")]
        for repo, tag in names:
            rows.append({
                "Containers": str(image.containers),
                "CreatedAt": local_created(created) if created else "",
                "CreatedSince": ago(created, now),
                "Digest": "<none>",
                "ID": image.id if no_trunc else fmt.short_id(image.id),
                "Repository": repo,
                "Size": human_size(image.size),
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
    from berth_docker.reference import familiar
    status = 0
    for ref in ns.images:
        try:
            response = client.stub.RemoveImage(engine_pb2.RemoveImageRequest(reference=ref, force=ns.force))
        except RpcError as err:
            client.report(err)
            status = 1
            continue
        for name in response.untagged:
            print(f"Untagged: {familiar(name)}")
        for image_id in response.deleted:
            print(f"Deleted: {image_id}")
    return status


def tag(client: Client, ns) -> int:
    client.stub.TagImage(engine_pb2.TagImageRequest(source=ns.source, target=ns.target))
    return 0


# -- run and create -----------------------------------------------------------------

def container_config(ns) -> engine_pb2.ContainerConfig:
    """run/create's flags as the engine's ContainerConfig: the same one the Docker API's
    create body makes (berth_docker parses both)."""
    from berth_docker import keyvalues
    from berth_docker.units import parse_bytes, parse_cpus
    # --env-file first, then -e, so a flag overrides the file (docker's order).
    env = [e for path in ns.env_file for e in keyvalues.env_file(path, os.environ)]
    env += keyvalues.env(ns.env, os.environ)
    config = engine_pb2.ContainerConfig(
        image=ns.image, name=ns.name, cmd=ns.command, env=env, working_dir=ns.workdir,
        user=ns.user, hostname=ns.hostname, labels=keyvalues.key_values(ns.label, "label"),
        network_mode=ns.network, memory_bytes=parse_bytes(ns.memory) if ns.memory else 0,
        nano_cpus=parse_cpus(ns.cpus) if ns.cpus else 0, cpu_shares=ns.cpu_shares,
        auto_remove=ns.rm, stop_signal=ns.stop_signal,
        readonly_rootfs=ns.read_only, mounts=volumes.mount_specs(ns), volumes_from=ns.volumes_from)
    if ns.entrypoint is not None:
        config.entrypoint.SetInParent()
        if ns.entrypoint:
            config.entrypoint.values.append(ns.entrypoint)
    if ns.stop_timeout is not None:
        config.stop_timeout = ns.stop_timeout
    networks.apply_run_flags(ns, config)
    lifecycle.apply_run_flags(ns, config)
    security.apply_run_flags(ns, config)
    logopts.apply_run_flags(ns, config)
    interactive.add_run_config(ns, config)
    return config


def create(client: Client, ns) -> int:
    try:
        response = client.stub.CreateContainer(engine_pb2.CreateContainerRequest(config=container_config(ns)))
    except RpcError as err:
        if registry.pull_if_missing(client, ns, err):
            return create(client, ns)
        client.report(err)
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
            client.report(err)
            return command_status(err)
        return 0
    if ns.tty or ns.interactive:
        # Create, attach, start: the stdio streams are in place before the process runs.
        return interactive.run_attached(client, ns, config)
    with _SignalProxy(client) as proxy:
        try:
            for response in client.stub.RunContainer(
                    engine_pb2.RunContainerRequest(config=config, attach=True)):
                kind = response.WhichOneof("event")
                if kind == "output":
                    write_output(response.output.stream, response.output.data)
                elif kind == "id":
                    proxy.container_id = response.id
                elif kind == "exit":
                    return response.exit.exit_code
        except RpcError as err:
            if not proxy.container_id and registry.pull_if_missing(client, ns, err):
                return run(client, ns)
            client.report(err)
            return command_status(err) if not proxy.container_id else ENGINE_ERROR
    print("Error response from daemon: the engine ended the run without an exit status", file=sys.stderr)
    return ENGINE_ERROR


# -- lifecycle ------------------------------------------------------------------------

def start(client: Client, ns) -> int:
    if not ns.attach:
        return each(client, ns.containers,
                    lambda ref: client.stub.StartContainer(engine_pb2.StartContainerRequest(id=ref)))
    ref = ns.containers[0]
    with _SignalProxy(client) as proxy:
        proxy.container_id = ref
        try:
            return interactive.start_attached(client, ref)
        except RpcError as err:
            client.report(err)
            return command_status(err)


def stop(client: Client, ns) -> int:
    restart = ns.verb == "restart"

    def call(ref):
        request = (engine_pb2.RestartContainerRequest if restart else engine_pb2.StopContainerRequest)(id=ref)
        if ns.time is not None:
            request.timeout = ns.time
        (client.stub.RestartContainer if restart else client.stub.StopContainer)(request)
    return each(client, ns.containers, call)


def kill(client: Client, ns) -> int:
    return each(client, ns.containers, lambda ref: client.stub.KillContainer(
        engine_pb2.KillContainerRequest(id=ref, signal=ns.signal)))


def rm(client: Client, ns) -> int:
    return each(client, ns.containers, lambda ref: client.stub.RemoveContainer(
        engine_pb2.RemoveContainerRequest(id=ref, force=ns.force, remove_volumes=ns.volumes)))


def pause(client: Client, ns) -> int:
    rpc = client.stub.PauseContainer if ns.verb == "pause" else client.stub.UnpauseContainer
    return each(client, ns.containers, lambda ref: rpc(engine_pb2.PauseContainerRequest(id=ref)))


def wait(client: Client, ns) -> int:
    status = 0
    for ref in ns.containers:
        try:
            print(client.stub.WaitContainer(engine_pb2.WaitContainerRequest(id=ref)).exit_code, flush=True)
        except RpcError as err:
            client.report(err)
            status = 1
    return status


# -- ps, logs, inspect, events --------------------------------------------------------

def _parse_filters(values) -> dict[str, engine_pb2.StringList]:
    from berth_docker.query import filter_flags
    return {k: engine_pb2.StringList(values=v) for k, v in filter_flags(values).items()}


def container_row(c, now: float, no_trunc: bool = False) -> dict:
    """One row of `ps`, with the keys of docker's `ps --format json`."""
    from berth_docker.ports import ports_column
    from berth_docker.shapes.containers import status_text
    from berth_docker.times import ago, local_created, seconds
    created = seconds(c.created)
    return {
        "Command": fmt.command_column(c.path, list(c.args), truncate=not no_trunc),
        "CreatedAt": local_created(created) if created else "",
        "ID": c.id if no_trunc else c.id[:12],
        "Image": c.image or fmt.short_id(c.image_id),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.config.labels.items())),
        "Names": c.name,
        "Networks": c.network_mode,
        "Ports": ports_column(c.ports),
        "RunningFor": ago(created, now),
        "State": c.state.status,
        "Status": status_text(c.state, now),
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


def logs(client: Client, ns) -> int:
    from berth_docker.shapes.containers import log_line
    from berth_docker.times import parse_since, to_pb_time
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
        request.since.CopyFrom(to_pb_time(parse_since(ns.since, now)))
    if ns.until:
        request.until.CopyFrom(to_pb_time(parse_since(ns.until, now)))
    for chunk in (reply.chunk for reply in client.stub.GetContainerLogs(request)):
        write_output(chunk.stream, log_line(chunk, ns.timestamps))
    return 0


def inspect(client: Client, ns) -> int:
    """Containers and images as the Docker API's inspect answers them."""
    import json

    from berth_docker.shapes.containers import container_json
    from berth_docker.shapes.images import image_json
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
    from berth_docker.times import rfc3339
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
    when = rfc3339(event.time)
    return f"{when} {event.type} {event.action} {event.actor_id}" + (f" ({attrs})" if attrs else "")


def events(client: Client, ns) -> int:
    import json

    from berth_docker.times import parse_since, to_pb_time
    now = time.time()
    request = engine_pb2.SubscribeEventsRequest(filters=_parse_filters(ns.filter))
    if ns.since:
        request.since.CopyFrom(to_pb_time(parse_since(ns.since, now)))
    if ns.until:
        request.until.CopyFrom(to_pb_time(parse_since(ns.until, now)))
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
    "pause": pause, "unpause": pause,
    "rename": lifecycle.rename, "commit": lifecycle.commit, "diff": lifecycle.diff,
    "update": lifecycle.update, "container": lifecycle.container, "system": lifecycle.system,
    **interactive.HANDLERS, **usage.HANDLERS, **files.HANDLERS, **build.HANDLERS,
}
