"""The verbs: each makes its Engine calls and prints like docker. `dispatch` runs one.

The verbs of images, containers' lifecycle, ps, logs, inspect and events live here;
the others in the modules named in VERBS, which import only the shared pieces
(engine, errors, archives, format), never this module.
"""

from __future__ import annotations

import sys
import time

import berth_errors

from berth.engine.v1 import engine_pb2
from berth_cli import format as fmt
from berth_cli.engine import Client, each, write_output
from berth_cli.errors import ENGINE_ERROR, Failed, RpcError, StatusCode, command_status


def _handler(verb: str):
    handler = VERBS[verb]
    if isinstance(handler, str):
        # "module:function": the verbs of other modules, imported only when run.
        import importlib
        module, _, name = handler.partition(":")
        handler = getattr(importlib.import_module(f"berth_cli.{module}"), name)
    return handler


def dispatch(ns) -> int:
    handler = _handler(ns.verb)
    tls = (ns.tlscacert, ns.tlscert, ns.tlskey, ns.tlsverify) if ns.tls or ns.tlsverify else None
    client = Client(ns.host, tls)
    try:
        return handler(client, ns) or 0
    except Failed as exc:
        return exc.status
    except RpcError as err:
        client.report(err)
        return ENGINE_ERROR if ns.verb in ("run", "create", "start") else 1
    except (ValueError, berth_errors.BerthError) as exc:
        # A --format/-f template that failed (imported only by the verbs that print one).
        templates = sys.modules.get("berth_cli.templates")
        if templates is not None and isinstance(exc, templates.TemplateError):
            return template_failed(ns.verb, exc)
        # Bad flags found after parsing (berth_docker's InvalidArgument is a ValueError too),
        # or what berth cannot do yet: refused before anything was sent.
        print(f"berth: {exc}", file=sys.stderr)
        return ENGINE_ERROR
    except FileNotFoundError as exc:
        # A file named on the command line (import, load -i, --env-file ...): docker's words.
        print(f"open {exc.filename}: no such file or directory", file=sys.stderr)
        return 1
    except (IsADirectoryError, PermissionError) as exc:
        print(f"open {exc.filename}: {exc.strerror.lower()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `berth ps | head`: the reader left; nothing more to say.
        _discard_stdout()
        return 0
    finally:
        client.close()


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so what is still buffered cannot fail again at exit."""
    import os
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def template_failed(verb: str, exc) -> int:
    """A --format/-f template that did not parse or run: docker's words and statuses per verb."""
    if verb == "inspect":
        print(f"template parsing error: {exc}", file=sys.stderr)
        return 64 if exc.parsing else 1
    if verb == "events":
        print(f"Error parsing format: {exc}", file=sys.stderr)
        return 64
    print(f"failed to {'parse' if exc.parsing else 'execute'} template: {exc}", file=sys.stderr)
    return 1


# -- version ------------------------------------------------------------------------

def version(client: Client, ns) -> int:
    from berth_cli import VERSION
    print(f"Client:\n Version:      {VERSION}\n API version:  1.0")
    v = client.stub.GetVersion(engine_pb2.GetVersionRequest())
    print(f"\nServer:\n Engine:\n  Version:      {v.version}\n  API version:  {v.api_version}\n"
          f"  OS/Arch:      {v.os}/{v.arch}\n  Kernel:       {v.kernel_version}\n"
          f" Runtime:\n  Name:         {v.runtime}")
    return 0


# -- images ---------------------------------------------------------------------------

def load(client: Client, ns) -> int:
    from berth_cli.archives import BytesMessage, chunks, open_input
    from berth_docker.reference import familiar
    with open_input(ns.input) as f:
        # LoadImagesRequests (data = 1), serialized without protobuf.
        response = client.stub.LoadImages(BytesMessage(1, d) for d in chunks(f))
    for image in response.images:
        if image.repo_tags:
            for tag in image.repo_tags:
                print(f"Loaded image: {familiar(tag)}")
        else:
            print(f"Loaded image ID: {image.id}")
    return 0


def import_(client: Client, ns) -> int:
    from berth_cli.archives import chunks, open_input
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
    from berth_cli.archives import write_archive
    return write_archive(ns.output, lambda: client.stub.SaveImages(
        engine_pb2.SaveImagesRequest(references=ns.images)))


def image_rows(images, now: float, no_trunc: bool = False) -> list[dict]:
    """One row per name, as `docker images` shows them; nameless images as <none>."""
    from berth_cli.templates import Struct
    from berth_docker.times import ago, local_created, seconds
    from berth_docker.units import human_size
    rows = []
    for image in images:
        created = seconds(image.created)
        names = [fmt.split_repo_tag(t) for t in image.repo_tags] or [("<none>", "<none>")]
        for repo, tag in names:
            rows.append(Struct(type_name="*formatter.imageContext", **{
                "Containers": str(image.containers) if image.containers >= 0 else "N/A",
                "CreatedAt": local_created(created) if created else "",
                "CreatedSince": ago(created, now),
                "Digest": "<none>",
                "ID": image.id if no_trunc else fmt.short_id(image.id),
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": human_size(image.size),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(image.size, 4),  # docker's VirtualSize is HumanSize
            }))
    return rows


IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                 "VirtualSize": "VIRTUAL SIZE"}


def images(client: Client, ns) -> int:
    response = client.call("ListImages", all=ns.all, reference=ns.reference)
    rows = image_rows(response.images, time.time(), ns.no_trunc)
    if ns.quiet:
        seen = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
        print("\n".join(seen)) if seen else None
    elif (out := fmt.formatted(ns.format, rows, IMAGE_HEADERS)) is not None:
        sys.stdout.write(out)
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
    create body makes (berth_docker parses both). The flag groups are runflags'."""
    from berth_cli import runflags
    config = engine_pb2.ContainerConfig()
    runflags.apply(ns, config)
    return config


def create(client: Client, ns) -> int:
    # The config is built of berth_cli.wire's messages and sent through wire: upb is not loaded.
    from berth_cli import messages
    with messages.wire_classes():
        return _create(client, ns)


def _create(client: Client, ns) -> int:
    from berth_cli import registry
    from berth_cli.runflags import client as client_flags
    registry.pull_if_always(client, ns)
    try:
        response = client.call("CreateContainer", config=container_config(ns))
    except RpcError as err:
        if registry.pull_if_missing(client, ns, err):
            return _create(client, ns)
        client.report(err)
        return ENGINE_ERROR
    for warning in response.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    client_flags.write_cidfile(ns, response.id)
    print(response.id)
    return 0


class _SignalProxy:
    """Forwards SIGINT/SIGTERM to the container while attached, as docker's sig-proxy does."""

    def __init__(self, client: Client):
        self._client = client
        self.container_id = ""
        self._previous = {}

    def __enter__(self):
        import _signal as signal  # signal's own wrapper makes enums of everything (~3 ms)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc):
        import _signal as signal
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _forward(self, signum, frame):
        if not self.container_id:
            # Nothing to forward to yet: give up the way the signal asks.
            raise KeyboardInterrupt
        # Off the main thread: it is busy in the stream, and a handler must not block on I/O.
        import signal
        import threading
        threading.Thread(target=self._kill, args=(signal.Signals(signum).name,), daemon=True).start()

    def _kill(self, signal_name: str) -> None:
        try:
            self._client.call("KillContainer", id=self.container_id, signal=signal_name)
        except RpcError:
            pass


def run(client: Client, ns) -> int:
    # As create: built and sent with berth_cli.wire's messages (-i/-t's streams too).
    from berth_cli import messages
    with messages.wire_classes():
        return _run(client, ns)


def _run(client: Client, ns) -> int:
    from berth_cli import registry
    from berth_cli.runflags import client as client_flags
    config = container_config(ns)
    registry.pull_if_always(client, ns)
    if ns.detach:
        try:
            for response in client.call("RunContainer", config=config, attach=False):
                if response.WhichOneof("event") == "id":
                    client_flags.write_cidfile(ns, response.id)
                    print(response.id)
        except RpcError as err:
            if registry.pull_if_missing(client, ns, err):
                return _run(client, ns)
            client.report(err)
            return command_status(err)
        return 0
    if ns.tty or ns.interactive:
        # Create, attach, start: the stdio streams are in place before the process runs.
        from berth_cli import interactive
        return interactive.run_attached(client, ns, config)
    with _SignalProxy(client) as proxy:
        try:
            for response in client.call("RunContainer", config=config, attach=True):
                kind = response.WhichOneof("event")
                if kind == "output":
                    write_output(response.output.stream, response.output.data)
                elif kind == "id":
                    proxy.container_id = response.id
                    client_flags.write_cidfile(ns, response.id)
                elif kind == "exit":
                    return response.exit.exit_code
        except RpcError as err:
            if not proxy.container_id and registry.pull_if_missing(client, ns, err):
                return _run(client, ns)
            client.report(err)
            return command_status(err) if not proxy.container_id else ENGINE_ERROR
    print("Error response from daemon: the engine ended the run without an exit status", file=sys.stderr)
    return ENGINE_ERROR


# -- lifecycle ------------------------------------------------------------------------

def start(client: Client, ns) -> int:
    if not ns.attach:
        return each(client, ns.containers, lambda ref: client.call("StartContainer", id=ref))
    from berth_cli import interactive
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

    method = "RestartContainer" if restart else "StopContainer"
    return each(client, ns.containers, lambda ref: client.call(method, id=ref, timeout=ns.time))


def kill(client: Client, ns) -> int:
    return each(client, ns.containers, lambda ref: client.call("KillContainer", id=ref, signal=ns.signal))


def rm(client: Client, ns) -> int:
    return each(client, ns.containers, lambda ref: client.call(
        "RemoveContainer", id=ref, force=ns.force, remove_volumes=ns.volumes))


def pause(client: Client, ns) -> int:
    method = "PauseContainer" if ns.verb == "pause" else "UnpauseContainer"
    return each(client, ns.containers, lambda ref: client.call(method, id=ref))


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

def _parse_filters(values) -> dict[str, dict]:
    """-f KEY=VALUE flags as the requests' `filters` map (StringList values, as dicts for wire)."""
    if not values:
        return {}
    from berth_docker.query import filter_flags
    return {k: {"values": v} for k, v in filter_flags(values).items()}


def container_row(c, now: float, no_trunc: bool = False) -> dict:
    """One row of `ps`, with the keys of docker's `ps --format json`."""
    from berth_cli.templates import Struct
    from berth_docker.ports import ports_column
    from berth_docker.shapes.containers import status_text
    from berth_docker.times import ago, local_created, seconds
    created = seconds(c.created)
    labels = dict(c.config.labels)
    return Struct(type_name="*formatter.ContainerContext", **{
        "Command": fmt.command_column(c.path, list(c.args), truncate=not no_trunc),
        "CreatedAt": local_created(created) if created else "",
        "ID": c.id if no_trunc else c.id[:12],
        "Image": c.image or fmt.short_id(c.image_id),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in c.mounts if m.type == "volume")) if hasattr(c, "mounts") else "0",
        "Mounts": ",".join(m.name or m.source for m in getattr(c, "mounts", ())),
        "Names": c.name,
        "Networks": c.network_mode,
        "Platform": None,  # docker 28's: the image's platform, which the summary does not carry
        "Ports": ports_column(c.ports),
        "RunningFor": ago(created, now),
        "Size": "0B",
        "State": c.state.status,
        "Status": status_text(c.state, now),
        # A method in docker's template context: {{.Label "com.example.key"}}.
        "Label": lambda key: labels.get(key, ""),
    })


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
              "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Label": "LABEL",
              "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES"}


def ps(client: Client, ns) -> int:
    response = client.call("ListContainers", all=ns.all, filters=_parse_filters(ns.filter))
    now = time.time()
    if ns.quiet:
        for c in response.containers:
            print(c.id if ns.no_trunc else c.id[:12])
        return 0
    rows = [container_row(c, now, ns.no_trunc) for c in response.containers]
    if (out := fmt.formatted(ns.format, rows, PS_HEADERS)) is not None:
        sys.stdout.write(out)
        return 0
    print(fmt.table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"),
                    [(r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"],
                      r["Names"]) for r in rows]))
    return 0


def logs(client: Client, ns) -> int:
    from berth_docker.shapes.logs import log_line
    from berth_docker.times import parse_since, timestamp_fields
    now = time.time()
    if ns.tail == "all":
        tail = -1
    else:
        try:
            tail = int(ns.tail)
        except ValueError:
            raise ValueError(f"invalid value {ns.tail!r} for --tail: a number or \"all\"") from None
    request = {"id": ns.container, "follow": ns.follow, "tail": tail, "timestamps": ns.timestamps}
    if ns.since:
        request["since"] = timestamp_fields(parse_since(ns.since, now))
    if ns.until:
        request["until"] = timestamp_fields(parse_since(ns.until, now))
    for chunk in (reply.chunk for reply in client.call("GetContainerLogs", **request)):
        write_output(chunk.stream, log_line(chunk, ns.timestamps))
    return 0


def inspect(client: Client, ns) -> int:
    """Containers and images as the Docker API's inspect answers them."""
    from berth_docker.shapes.containers import container_json
    template = fmt.inspect_template(ns.format)
    found, status = [], 0
    for name in ns.names:
        obj = None
        if not name:
            print("invalid container name or ID: value is empty", file=sys.stderr)
            status = 1
            continue
        if ns.type in (None, "container"):
            try:
                obj = container_json(client.call("InspectContainer", id=name).container)
            except RpcError as err:
                if err.code() != StatusCode.NOT_FOUND:
                    raise
        if obj is None and ns.type in (None, "image"):
            from berth_docker.shapes.images import image_json  # here: it imports json (and re)
            try:
                obj = image_json(client.call("InspectImage", reference=name).image)
            except RpcError as err:
                if err.code() not in (StatusCode.NOT_FOUND, StatusCode.INVALID_ARGUMENT):
                    raise
        if obj is None:
            kind = {"container": "container", "image": "image"}.get(ns.type, "object")
            print(f"Error: No such {kind}: {name}", file=sys.stderr)
            status = 1
        else:
            found.append(obj)
    fmt.write_inspect(found, template)
    return status


def event_line(event) -> str:
    from berth_docker.times import rfc3339
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items()))
    when = rfc3339(event.time)
    return f"{when} {event.type} {event.action} {event.actor_id}" + (f" ({attrs})" if attrs else "")


def event_object(event) -> dict:
    """An engine event as a docker `events --format` template sees it: the Go field
    names (.Status, .ID, .From, .Time ...) beside its JSON message's."""
    from berth_docker.shapes.events import event_json
    nanos = event.time.seconds * 10**9 + event.time.nanos
    message = event_json(event, nanos)
    from berth_cli.templates import Struct
    return Struct(type_name="events.Message", **message, Status=message.get("status", ""),
                            ID=message.get("id", ""), From=message.get("from", ""), Scope="local",
                            Time=message["time"], TimeNano=nanos)


def events(client: Client, ns) -> int:
    import json

    from berth_docker.times import parse_since, to_pb_time
    now = time.time()
    request = engine_pb2.SubscribeEventsRequest(
        filters={k: engine_pb2.StringList(**v) for k, v in _parse_filters(ns.filter).items()})
    if ns.since:
        request.since.CopyFrom(to_pb_time(parse_since(ns.since, now)))
    if ns.until:
        request.until.CopyFrom(to_pb_time(parse_since(ns.until, now)))
    template = None
    if ns.format and ns.format not in ("table", "json"):
        from berth_cli import templates
        template = templates.parse(ns.format)
    for event in (reply.event for reply in client.stub.SubscribeEvents(request)):
        if ns.format == "json":
            # docker's JSON message, keys as its json tags name them.
            from berth_docker.shapes.events import event_json
            print(json.dumps(event_json(event, event.time.seconds * 10**9 + event.time.nanos)), flush=True)
        elif template is not None:
            print(template.render(event_object(event)), flush=True)
        else:
            print(event_line(event), flush=True)
    return 0


VERBS = {
    "pull": "registry:pull", "push": "registry:push", "login": "registry:login", "logout": "registry:logout",
    "version": version, "load": load, "import": import_, "save": save, "images": images,
    "rmi": rmi, "tag": tag, "run": run, "create": create, "start": start, "stop": stop,
    "restart": stop, "kill": kill, "rm": rm, "wait": wait, "ps": ps, "logs": logs,
    "inspect": inspect, "events": events, "volume": "volumes:dispatch",
    "network": "networks:dispatch", "port": "networks:port", "node": "networks:node",
    "pause": pause, "unpause": pause,
    "rename": "lifecycle:rename", "commit": "lifecycle:commit", "diff": "lifecycle:diff",
    "update": "lifecycle:update", "container": "lifecycle:container", "system": "lifecycle:system",
    "exec": "interactive:exec_", "attach": "interactive:attach",
    "top": "usage:top", "stats": "usage:stats", "cp": "files:cp", "export": "files:export",
    "build": "build:build",
}
