"""Build routes: POST /build (the legacy builder's protocol, as docker 20.10's CLI with
DOCKER_BUILDKIT=0, the SDKs and compose speak it) and POST /build/prune.

The reply to /build is docker's JSON-lines progress stream, which clients parse:

    {"stream":"Step 1/3 : FROM busybox\\n"}
    {"stream":" ---> 1a2b3c4d5e6f\\n"}
    {"stream":"Step 2/3 : RUN echo hi > /x\\n"}
    {"stream":" ---> Running in 0123456789ab\\n"}
    {"stream":"\\u001b[91mwritten to stderr\\n\\u001b[0m"}
    {"stream":"Removing intermediate container 0123456789ab\\n"}
    {"stream":" ---> 9f8e7d6c5b4a\\n"}
    {"aux":{"ID":"sha256:9f8e..."}}
    {"stream":"Successfully built 9f8e7d6c5b4a\\n"}
    {"stream":"Successfully tagged app:latest\\n"}

and a failure after the first line is {"errorDetail":{"code":1,"message":...},"error":...}.
Failures before it (bad parameters, a Dockerfile that does not parse) are plain
HTTP errors, as dockerd answers them. They use only the BuildBackend.
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from berth.types.v1 import build_pb2, registry_pb2
from services.common import errors
from services.gateway.backends.interfaces import BuildBackend
from services.gateway.docker.context import backends, json_response, long_lived
from berth_docker.reference import familiar
from berth_errors import not_implemented

CHUNK = 1 << 20
def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean parameter as the SDKs spell it: 1/0, true/false, True/False."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    return value.lower() in ("1", "true")

# Parameters the legacy CLI always sends; any value but these is a request berth refuses.
_ZERO = {"memory": "0", "memswap": "0", "cpushares": "0", "cpuperiod": "0", "cpuquota": "0",
         "cpusetcpus": "", "cpusetmems": "", "cgroupparent": "", "ulimits": "null", "squash": "0",
         "remote": "", "session": "", "outputs": "", "buildid": ""}
_RED, _RESET = "\x1b[91m", "\x1b[0m"


def _builds(request: web.Request) -> BuildBackend:
    builds = backends(request).builds
    if builds is None:
        raise not_implemented("build (this gateway runs without the build service)")
    return builds


def register(router) -> None:
    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)


def _json_param(request: web.Request, name: str, kind: type):
    raw = request.query.get(name, "")
    if not raw or raw == "null":
        return kind()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise errors.InvalidArgument(f"invalid {name} parameter: not JSON: {raw[:80]}") from None
    if not isinstance(value, kind):
        raise errors.InvalidArgument(f"invalid {name} parameter: expected a JSON {kind.__name__}")
    return value


def options_from_query(request: web.Request) -> build_pb2.BuildOptions:
    q = request.query
    for name, zero in _ZERO.items():
        value = q.get(name, zero)
        if value not in (zero, "", "0", "false", "False", "[]", "{}", "null"):
            raise not_implemented(f"build parameter {name}={value}")
    if q.get("version", "1") != "1":
        raise not_implemented("BuildKit builds (version=2): use the legacy builder (DOCKER_BUILDKIT=0)")
    if q.get("isolation", "default") not in ("", "default", "process"):
        raise errors.InvalidArgument(f"invalid isolation {q['isolation']!r}: only default is supported")
    build_args = {k: "" if v is None else str(v) for k, v in _json_param(request, "buildargs", dict).items()}
    labels = {k: str(v) for k, v in _json_param(request, "labels", dict).items()}
    cache_from = [str(v) for v in _json_param(request, "cachefrom", list)]
    network = q.get("networkmode", "")
    shm = q.get("shmsize", "0") or "0"
    try:
        shm_size = int(shm)
    except ValueError:
        raise errors.InvalidArgument(f"invalid shmsize {shm!r}") from None
    extra_hosts: list[str] = []
    for value in q.getall("extrahosts", []):
        # One "name:ip" per parameter, or several comma-separated.
        extra_hosts.extend(h for h in value.split(",") if h)
    return build_pb2.BuildOptions(
        dockerfile=q.get("dockerfile", ""), tags=q.getall("t", []), build_args=build_args,
        no_cache=_flag(request, "nocache"), pull=_flag(request, "pull"),
        target=q.get("target", ""), labels=labels,
        network_mode="" if network == "default" else network, platform=q.get("platform", ""),
        cache_from=cache_from, extra_hosts=extra_hosts, shm_size=shm_size,
        registry_auths=_registry_config(request))


def _registry_config(request: web.Request) -> dict[str, registry_pb2.RegistryAuth]:
    """X-Registry-Config: base64url JSON of {registry: {username, password, identitytoken}}."""
    raw = request.headers.get("X-Registry-Config", "")
    if not raw:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) or b"{}")
    except ValueError:
        raise errors.InvalidArgument("invalid X-Registry-Config header") from None
    if not isinstance(data, dict):
        raise errors.InvalidArgument("invalid X-Registry-Config header: not a JSON object")
    out = {}
    for server, entry in data.items():
        if not isinstance(entry, dict):
            continue
        out[server.removeprefix("https://").removeprefix("http://").rstrip("/")
            if server != "https://index.docker.io/v1/" else server] = registry_pb2.RegistryAuth(
            username=entry.get("username") or "", password=entry.get("password") or "",
            identity_token=entry.get("identitytoken") or "")
    return out


async def _body(request: web.Request):
    while True:
        data = await request.content.read(CHUNK)
        if not data:
            return
        yield data


def render(event: build_pb2.BuildEvent, quiet: bool, state: dict) -> list[dict]:
    """The legacy builder's JSON messages for one event."""
    kind = event.WhichOneof("event")
    if kind == "warning":
        return [{"stream": event.warning + "\n"}]
    if kind == "result":
        r = event.result
        out = [{"aux": {"ID": r.image_id}}]
        if quiet:
            return out + [{"stream": r.image_id + "\n"}]
        out.append({"stream": f"Successfully built {_short(r.image_id)}\n"})
        out.extend({"stream": f"Successfully tagged {familiar(t)}\n"} for t in r.tags)
        return out
    if quiet:
        return []
    if kind == "output":
        text = event.output.data.decode("utf-8", "replace")
        if not text:
            return []
        return [{"stream": f"{_RED}{text}{_RESET}" if event.output.stderr else text}]
    step = event.step
    if step.state == build_pb2.BUILD_STEP_STATE_STARTED:
        if step.container_id:
            state[step.number] = step.container_id
            return [{"stream": f" ---> Running in {step.container_id[:12]}\n"}]
        return [{"stream": f"Step {step.number}/{step.total} : {step.instruction}\n"}]
    if step.state == build_pb2.BUILD_STEP_STATE_CACHED:
        return [{"stream": " ---> Using cache\n"}, {"stream": f" ---> {_short(step.image_id)}\n"}]
    if step.state == build_pb2.BUILD_STEP_STATE_DONE:
        out = []
        cid = state.pop(step.number, "")
        if cid:
            out.append({"stream": f"Removing intermediate container {cid[:12]}\n"})
        out.append({"stream": f" ---> {_short(step.image_id)}\n"})
        return out
    return []


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


async def build(request: web.Request) -> web.StreamResponse:
    options = options_from_query(request)
    quiet = _flag(request, "q")
    warnings = []
    if not _flag(request, "rm", True) and not _flag(request, "forcerm"):
        warnings.append({"stream": "[Warning] berth removes the container of every RUN step once it "
                                   "ran: rm=false keeps none\n"})
    events = _builds(request).build(options, _body(request))
    state: dict[int, str] = {}
    # Errors before the first event (the whole context is read by then) are plain HTTP errors.
    first = await anext(events, None)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)

    async def write(message: dict) -> None:
        await response.write(json.dumps(message).encode() + b"\r\n")
    with long_lived(request):
        try:
            for message in warnings:
                await write(message)
            event = first
            while event is not None:
                for message in render(event, quiet, state):
                    await write(message)
                event = await anext(events, None)
        except errors.BerthError as exc:
            detail: dict = {"message": exc.message}
            if exc.metadata.get("exit_code", "").lstrip("-").isdigit():
                detail["code"] = int(exc.metadata["exit_code"])
            await write({"errorDetail": detail, "error": exc.message})
        except (ConnectionResetError, ConnectionError):
            return response
    await response.write_eof()
    return response


async def prune(request: web.Request) -> web.Response:
    q = request.query
    filters = _json_param(request, "filters", dict)
    if filters:
        raise not_implemented(f"build cache prune filters ({', '.join(sorted(filters))})")
    if q.get("keep-storage", "0") not in ("", "0"):
        raise not_implemented("build cache prune keep-storage")
    deleted, reclaimed = await _builds(request).prune(_flag(request, "all"))
    return json_response({"CachesDeleted": deleted, "SpaceReclaimed": reclaimed})
