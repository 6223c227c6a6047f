"""How the CLI lays things out, the way docker's CLI does: tables, truncation, quoting.
Pure: no I/O, no gRPC. Times, sizes and references are berth_docker's (shared with the
Docker API)."""

from __future__ import annotations

from collections.abc import Sequence


def split_repo_tag(name: str) -> tuple[str, str]:
    """"busybox:1.36" -> ("busybox", "1.36"); a ':' before the last '/' is a registry port."""
    # Imported here: only the image verbs need references, and `berth ps` should not pay for them.
    from berth_docker.reference import familiar
    name = familiar(name)
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1:]
    return name, "<none>"


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
