"""Numbers with units as docker reads and prints them: 64m, --cpus 0.5, 1m30s, 4.26MB, 64.00MiB."""

from __future__ import annotations

from berth_errors import InvalidArgument

# Patterns as text, compiled by re (and cached) when first used: the CLI imports this
# module for human_size, which needs no pattern, and importing re costs more.
_SIZE = r"(?i)(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?"
_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: "64m" -> 67108864 (binary units; a bare number is bytes)."""
    import re
    m = re.fullmatch(_SIZE, text.strip())
    if not m:
        raise InvalidArgument(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _BINARY[m.group(2).lower()])


def parse_cpus(text: str) -> int:
    """--cpus 0.5 -> 500000000 nano CPUs."""
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"invalid value {text!r} for --cpus") from None
    if value < 0:
        raise InvalidArgument("--cpus must not be negative")
    return int(round(value * 1e9))


_DURATION = r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)"
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str, flag: str) -> int:
    """Go's duration syntax as docker takes it ("30s", "1m30s", "250ms"), in nanoseconds."""
    text = text.strip()
    if text == "0":
        return 0
    import re
    pos, total = 0, 0.0
    for m in re.finditer(_DURATION, text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise InvalidArgument(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"')
    return int(total)


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision(size, precision): decimal units, "4.26MB", "1.24kB", "216B"
    (go-units' HumanSize is precision 4)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    # Go's %.3g without an exponent for the sizes that occur.
    text = f"{size:.{precision}g}"
    if "e" in text:
        text = f"{size:.0f}"
    return f"{text}{units[i]}"


def binary_size(n: float) -> str:
    """Memory as docker stats shows it: 1024-based units (MiB, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024
    return f"{n}B"
