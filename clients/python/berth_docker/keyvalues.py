"""KEY=VALUE flags: --label and --opt, -e and --env-file."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc loads all of collections (`berth run` imports this)
    from collections.abc import Mapping, Sequence

from berth_errors import InvalidArgument


def key_values(values: Sequence[str], what: str) -> dict[str, str]:
    """Repeated KEY=VALUE flags (--label, --opt) as a dict; a missing key is an error.
    A bare KEY means an empty value, as docker's labels do."""
    out = {}
    for v in values:
        key, _, value = v.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {v!r}")
        out[key] = value
    return out


def env(values: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """-e flags: KEY=VALUE as given; a bare KEY takes the value from the client's environment
    and is left out when that has none, as docker does."""
    out = []
    for e in values:
        key, eq, _ = e.partition("=")
        if not key:
            raise InvalidArgument(f"invalid environment variable: {e!r}")
        if eq:
            out.append(e)
        elif e in environ:
            out.append(f"{e}={environ[e]}")
    return out


def env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """--env-file: one variable a line in -e's syntax; blank lines and lines starting with # are
    skipped, and nothing is unquoted (docker's rules)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{path}: not valid UTF-8") from None
    wanted = []
    for number, line in enumerate(lines, 1):
        text = line.lstrip()
        if not text or text.startswith("#"):
            continue
        key = text.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"{path}:{number}: variable {key!r} contains whitespaces")
        wanted.append(text)
    return env(wanted, environ)
