"""berth in Docker's words: the run/create flags and request bodies docker users send, and the
JSON shapes docker prints, over the engine's generated types (berth.engine.v1).

One module for both edges that speak Docker: the CLI (`berth`) and the gateway's Docker
Engine API. What a flag or a request field means is decided here once, so `-v /a:/b:cached`
from the CLI and `"Binds": ["/a:/b:cached"]` from the Docker API are the same mount, and
`berth inspect` prints what `GET /containers/{id}/json` answers.

    mounts.py       -v, --mount, --tmpfs; HostConfig.Binds/Mounts/Tmpfs, Config.Volumes
    ports.py        -p, -P; HostConfig.PortBindings; the PORTS column and NetworkSettings.Ports
    units.py        byte sizes (64m), CPUs, Go durations (1m30s), human sizes
    times.py        RFC 3339, --since/--until, "5 seconds ago"
    keyvalues.py    KEY=VALUE flags (--label, --opt), -e and --env-file
    reference.py    image references (busybox -> docker.io/library/busybox:latest)
    query.py        the Docker API's query parameters (booleans, integers, filters)
    create.py       a container create body -> engine ContainerConfig; update bodies
    shapes/         engine types -> Docker JSON: containers, images, networks, volumes, ...
    api.py          all of the above under the names the Docker API's routes call

Depends only on the generated code and the standard library (errors: berth_errors), and
imports nothing at package level, so a CLI verb pays only for the modules it uses.
"""
