"""The Docker Engine API's query parameters: booleans, integers and `filters`."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the CLI's `ps -f` imports this module, json and collections not
    from collections.abc import Mapping

from berth_errors import InvalidArgument


def flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Docker's boolean query values: "1", "true", "True" are true; "0", "false", "" false."""
    value = query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no")


def integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {value!r}") from None


def filters(query: Mapping[str, str]) -> dict[str, list[str]]:
    """The `filters` parameter: {"key": ["v", ...]} or the old {"key": {"v": true}} form."""
    raw = query.get("filters")
    if not raw:
        return {}
    import json
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"invalid filter: {raw!r}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid filter: {raw!r}")
    out = {}
    for key, values in data.items():
        if isinstance(values, dict):
            out[key] = [v for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            out[key] = [str(values)]
    return out


def filter_flags(values) -> dict[str, list[str]]:
    """The CLI's repeated `--filter KEY=VALUE`, in the shape `filters` returns."""
    out: dict[str, list[str]] = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {v}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def label_matches(labels: Mapping[str, str], want: str) -> bool:
    """A `label` filter value: "key" (present) or "key=value"."""
    key, eq, value = want.partition("=")
    return key in labels and (not eq or labels[key] == value)
