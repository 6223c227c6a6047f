"""How the CLI shows things, the way docker users know them. Pure: no I/O, no gRPC."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from services.common.humanize import human_duration

# "docker.io/library/busybox:latest" -> "busybox:latest", kept here (not imported from
# services.common.reference) so the CLI stays a client that starts fast.
_DEFAULT_DOMAIN = "docker.io/"
_OFFICIAL = "library/"


def familiar(name: str) -> str:
    if not name.startswith(_DEFAULT_DOMAIN):
        return name
    rest = name[len(_DEFAULT_DOMAIN):]
    if rest.startswith(_OFFICIAL):
        short = rest[len(_OFFICIAL):]
        if "/" not in short.split(":")[0].split("@")[0]:
            return short
    return rest


def split_repo_tag(name: str) -> tuple[str, str]:
    """"busybox:1.36" -> ("busybox", "1.36"); a ':' before the last '/' is a registry port."""
    name = familiar(name)
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1:]
    return name, "<none>"


def ago(then: float | None, now: float) -> str:
    if not then:
        return "N/A"
    return f"{human_duration(max(0.0, now - then))} ago"


def status_line(status: str, exit_code: int, started: float | None, finished: float | None,
                now: float) -> str:
    """The STATUS column: "Up 3 seconds", "Exited (0) 2 seconds ago", "Created"."""
    if status == "running":
        return f"Up {human_duration(max(0.0, now - (started or now)))}"
    if status == "exited":
        return f"Exited ({exit_code}) {ago(finished, now)}" if finished else f"Exited ({exit_code})"
    if status == "restarting":
        return f"Restarting ({exit_code}) {ago(finished, now)}"
    if status == "removing":
        return "Removal In Progress"
    return "Created"


def ellipsis(text: str, width: int) -> str:
    """Docker's truncation: width-1 characters and "…"."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def quote(text: str) -> str:
    """Go's strconv.Quote, enough for the COMMAND column."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def command_column(path: str, args: Sequence[str], truncate: bool = True) -> str:
    command = " ".join([path, *args]) if path else " ".join(args)
    return quote(ellipsis(command, 20) if truncate else command)


def short_id(image_or_container_id: str) -> str:
    return image_or_container_id.removeprefix("sha256:")[:12]


def human_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(size, 3): decimal units, "4.26MB", "1.24kB", "216B"."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{_g3(size)}{units[i]}"


def _g3(value: float) -> str:
    # Go's %.3g without an exponent for the sizes that occur.
    text = f"{value:.3g}"
    if "e" in text:
        text = f"{value:.0f}"
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Go's tabwriter as docker sets it up: columns padded to the widest cell plus 3 spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i] + 3) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def rfc3339(seconds: float, nanos: int | None = None) -> str:
    """"2024-05-01T10:00:00.123456789Z", the form docker uses in inspect and logs -t."""
    whole = int(seconds)
    if nanos is None:
        nanos = int(round((seconds - whole) * 1e9))
    t = dt.datetime.fromtimestamp(whole, dt.timezone.utc)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    return text + "Z"


def local_created(seconds: float) -> str:
    """CreatedAt in `--format json`: "2024-05-01 10:00:00 +0000 UTC"."""
    t = dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(h|m|s|ms))+")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_time(text: str, now: float) -> float:
    """Docker's --since/--until: a duration back from now ("10m", "1h30m"), a unix
    timestamp ("1700000000.5"), or an RFC 3339 date or date-time."""
    text = text.strip()
    if _DURATION.fullmatch(text):
        total = sum(float(n) * _UNIT[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text))
        return now - total
    try:
        return float(text)
    except ValueError:
        pass
    iso = text.replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use a duration (10m), a unix timestamp "
                         "or an RFC 3339 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: "64m" -> 67108864 (binary units; a bare number is bytes)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit])


def parse_cpus(text: str) -> int:
    """--cpus 0.5 -> 500000000 nano CPUs."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid value {text!r} for --cpus") from None
    if value < 0:
        raise ValueError("--cpus must not be negative")
    return int(round(value * 1e9))


def key_values(values: Sequence[str], what: str) -> dict[str, str]:
    """Repeated KEY=VALUE flags (--label, --opt) as a dict; a missing key is an error."""
    out = {}
    for v in values:
        key, _, value = v.partition("=")
        if not key:
            raise ValueError(f"invalid {what}: {v!r}")
        out[key] = value
    return out
