"""System routes: /_ping, /version, /info, /events, /system/df, /auth."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time

from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth.types.v1 import registry_pb2
from berth_docker import api as convert
from berth_docker.times import rfc3339
from services.common import errors
from services.gateway.docker.context import backends, json_body, json_response, long_lived
from services.gateway.docker.versions import MAX_API, MIN_API, api_version_text


def register(router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", disk_usage)
    router.add("POST", "/auth", auth)


async def ping(request: web.Request) -> web.Response:
    # Headers (API-Version, Docker-Experimental, OSType) come from the app's prepare hook.
    return web.Response(text="OK", headers={"Cache-Control": "no-cache, no-store, must-revalidate",
                                            "Pragma": "no-cache"})


async def version(request: web.Request) -> web.Response:
    v = backends(request).system.version()
    return json_response({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": v.version,
                        "Details": {"ApiVersion": api_version_text(MAX_API), "MinAPIVersion": api_version_text(MIN_API),
                                    "Os": v.os, "Arch": _arch(v.arch), "KernelVersion": v.kernel_version}}],
        "Version": v.version, "ApiVersion": api_version_text(MAX_API), "MinAPIVersion": api_version_text(MIN_API),
        "GitCommit": "", "GoVersion": "", "Os": v.os, "Arch": _arch(v.arch),
        "KernelVersion": v.kernel_version, "BuildTime": "",
    })


def _arch(machine: str) -> str:
    # docker speaks GOARCH names.
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def info(request: web.Request) -> web.Response:
    b = backends(request)
    containers = await b.containers.list(True, {})
    # Every image the store holds, untagged ones too, as dockerd counts them.
    images = await b.images.list(True, "")
    v = b.system.version()
    cluster = await _cluster(b)
    running = sum(1 for c in containers if c.state.running)
    stopped = len(containers) - running
    return json_response({
        "ID": "", "Name": platform.node(), "ServerVersion": v.version,
        "Containers": len(containers), "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": stopped, "Images": len(images),
        "Driver": "overlay", "DriverStatus": [], "DockerRootDir": "",
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none", "overlay"], "Log": ["k8s-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "PidsLimit": True, "OomKillDisable": True, "IPv4Forwarding": True,
        "Debug": False, "NFd": 0, "NGoroutines": 0, "SystemTime": convert.rfc3339(convert.to_pb_time(time.time())),
        "LoggingDriver": "k8s-file", "CgroupDriver": "cgroupfs", "CgroupVersion": "2",
        "KernelVersion": v.kernel_version, "OperatingSystem": _os_name(), "OSType": "linux",
        "OSVersion": "", "Architecture": v.arch, "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": None,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [], "ExperimentalBuild": False,
        "Runtimes": {v.runtime: {"path": v.runtime}}, "DefaultRuntime": v.runtime, "Swarm": {
            "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": False,
            "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
        # The pre-swarm multi-host fields (an external store, overlay networks over it) and
        # berth's own section: the cluster's nodes. Swarm stays "inactive": berth is no swarm.
        "ClusterStore": cluster["Store"], "ClusterAdvertise": cluster["Advertise"],
        "Berth": {"Cluster": cluster["Section"]},
    })


async def _cluster(b) -> dict:
    try:
        nodes = await b.networks.nodes()
    except errors.FailedPrecondition:
        return {"Store": "", "Advertise": "", "Section": None}
    except errors.Unavailable as exc:
        # /info still answers while the store is away; it says so instead of the nodes.
        return {"Store": "etcd", "Advertise": "", "Section": {"Error": exc.message}}
    me = next((n for n in nodes.nodes if n.name == nodes.self), None)
    return {"Store": "etcd", "Advertise": me.address if me else "",
            "Section": {"NodeName": nodes.self, "Nodes": [
                {"Name": n.name, "Addr": n.address, "NCPU": n.cpus, "MemTotal": n.memory,
                 "Started": n.started, "Status": "ready"} for n in nodes.nodes]}}


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


async def events(request: web.Request) -> web.StreamResponse:
    q = request.query
    since, until = convert.timestamp(q.get("since")), convert.timestamp(q.get("until"))
    stream = backends(request).system.subscribe_events(since, until, convert.filters(q))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    # Headers at once: the CLI waits for them before it prints anything.
    await response.prepare(request)
    with long_lived(request):
        try:
            async for event in stream:
                await response.write(json.dumps(convert.event_json(event)).encode() + b"\n")
        except (ConnectionResetError, ConnectionError):
            return response
    await response.write_eof()
    return response


async def disk_usage(request: web.Request) -> web.Response:
    """`docker system df [-v]`: the engine's own count (backends/system.py), in docker's shape."""
    b = backends(request)
    usage, images, containers, volumes = await asyncio.gather(
        b.system.df(), b.images.list(True, ""), b.containers.list(True, {}), b.volumes.list())
    by_image = {u.id: u for u in usage.images}
    by_container = {c.id: c for c in usage.containers}
    by_volume = {v.name: v for v in usage.volumes}
    layers = next((s.size for s in usage.summary if s.type == "Images"), 0)
    image_rows = []
    for i in images:
        row = convert.image_summary(i)
        u = by_image.get(i.id)
        if u is not None:
            row.update(Size=u.size, VirtualSize=u.size, SharedSize=u.shared_size, Containers=u.containers)
        image_rows.append(row)
    container_rows = []
    for c in containers:
        u = by_container.get(c.id)
        size_rw = u.size_rw if u is not None else 0
        container_rows.append({**convert.container_summary(c), "SizeRw": size_rw,
                               "SizeRootFs": size_rw + by_image.get(c.image_id, engine_pb2.ImageUsage()).size})
    volume_rows = []
    for v in volumes:
        row = convert.volume_json(v)
        u = by_volume.get(v.name)
        row["UsageData"] = {"Size": u.size if u is not None else -1, "RefCount": u.ref_count if u is not None else 0}
        volume_rows.append(row)
    return json_response({"LayersSize": layers, "Images": image_rows, "Containers": container_rows,
                          "Volumes": volume_rows, "BuildCache": await _build_cache_rows(request)})


async def _build_cache_rows(request: web.Request) -> list[dict]:
    """The build service's cache entries, as docker's BuildCache records."""
    builds = backends(request).builds
    if builds is None:
        return []
    rows = []
    for e in await builds.cache():
        rows.append({"ID": e.key.split(":", 1)[-1][:25], "Parents": [], "Type": "regular",
                     "Description": e.description, "InUse": e.in_use, "Shared": False, "Size": e.size,
                     "CreatedAt": rfc3339(e.created),
                     "LastUsedAt": rfc3339(e.last_used) if e.HasField("last_used") else None,
                     "UsageCount": e.usage_count})
    return rows


async def auth(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    response = await backends(request).registry.login(engine_pb2.CheckRegistryAuthRequest(
        server=body.get("serveraddress") or "", auth=registry_pb2.RegistryAuth(
            username=body.get("username") or "", password=body.get("password") or "",
            identity_token=body.get("identitytoken") or "")))
    return json_response({"Status": response.status or "Login Succeeded", "IdentityToken": ""})
