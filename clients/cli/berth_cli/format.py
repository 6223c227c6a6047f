"""How the CLI lays things out, the way docker's CLI does: tables, truncation, quoting.
Pure: no I/O, no gRPC. Times, sizes and references are berth_docker's (shared with the
Docker API)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
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


MIN_WIDTH, PADDING = 10, 3  # docker's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Go's tabwriter as docker sets it up: a column is its widest cell plus 3 spaces, at least 10."""
    return tabwrite(["\t".join(row) for row in [headers, *rows]])


def tabwrite(lines: Sequence[str]) -> str:
    """Tab-separated cells aligned in columns; a line's last cell is not padded."""
    split = [line.split("\t") for line in lines]
    widths: list[int] = []
    for cells in split:
        for i, cell in enumerate(cells[:-1]):
            if i == len(widths):
                widths.append(0)
            widths[i] = max(widths[i], len(cell))
    widths = [max(w + PADDING, MIN_WIDTH) for w in widths]
    # Every cell but the last is padded, an empty last one too (Go's tabwriter, as docker prints).
    return "\n".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])) + cells[-1]
                     for cells in split)


def formatted(template: str, rows: Sequence[dict], headers: dict[str, str]) -> str | None:
    """Rows as a --format asks (docker's Go template, "json", "table" or "table TEMPLATE");
    None when the verb's own table is wanted. `headers` names each field's column."""
    from berth_cli import templates
    if template in ("", "table"):
        return None
    if template == "json":
        template = "{{json .}}"
    is_table = template.startswith("table ")
    if is_table:
        template = template[len("table "):]
    # \t and \n as docker's users write them in a shell's single quotes.
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    parsed = templates.parse(template)
    out = [parsed.render(row) for row in rows]
    if not is_table:
        return "".join(line + "\n" for line in out)
    header = templates.Struct({k: ((lambda *a, h=h: h) if callable(rows[0].get(k) if rows else None) else h)
                               for k, h in headers.items()})
    return tabwrite([parsed.render(header), *out]) + "\n"


def inspect_template(source: str):
    """inspect's -f/--format, parsed before anything is asked of the engine (None: JSON)."""
    from berth_cli import templates
    return templates.parse("{{json .}}" if source == "json" else source) if source else None


def write_inspect(found: list, template) -> None:
    """inspect's output: the objects as an indented JSON array, or each through the -f template
    (a missing map key is an error there, as in docker's inspect)."""
    if template is None:
        print(indented_json(found))
        return
    for obj in found:
        print(template.render(obj, missing_key_error=True))


def indented_json(value, indent: str = "") -> str:
    """json.dumps(value, indent=4), without importing json: its package imports re, and with it
    enum, which together cost `inspect` more than the rest of its work. Strings are escaped by
    the C function json itself uses; a value JSON has no plain form for is left to json."""
    import _json
    inner = indent + "    "
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    if isinstance(value, dict) and all(type(k) is str for k in value):
        if not value:
            return "{}"
        items = ",\n".join(f"{inner}{_json.encode_basestring_ascii(k)}: {indented_json(v, inner)}"
                           for k, v in value.items())
        return f"{{\n{items}\n{indent}}}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = ",\n".join(inner + indented_json(v, inner) for v in value)
        return f"[\n{items}\n{indent}]"
    import json
    return json.dumps(value, indent=4).replace("\n", "\n" + indent)
