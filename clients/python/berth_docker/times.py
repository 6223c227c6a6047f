"""Times as docker writes and reads them: RFC 3339 with nanoseconds, --since/--until, "5 seconds ago"."""

from __future__ import annotations

import time

from berth_errors import InvalidArgument

# What docker prints for a time that never happened (Go's zero time.Time).
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts) -> str:
    """A google.protobuf.Timestamp (or None) as docker's RFC3339NanoFixed, "...T10:00:00.123000000Z"."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ZERO_TIME
    return _utc(ts.seconds, "T") + f".{ts.nanos:09d}Z"


def _utc(seconds: int, sep: str) -> str:
    """UTC date and time of unix seconds, "2024-05-01T10:00:00" (time.gmtime, not datetime:
    the CLI's ps and inspect print times, and importing datetime costs more than that)."""
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}{sep}{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def to_pb_time(seconds: float | None):
    """Unix seconds as a google.protobuf.Timestamp; None stays None."""
    if seconds is None:
        return None
    from google.protobuf import timestamp_pb2
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts) -> float:
    """A Timestamp as unix seconds; 0.0 for an unset one."""
    return ts.seconds + ts.nanos / 1e9 if ts is not None and (ts.seconds or ts.nanos) else 0.0


def timestamp(value: str | None) -> float | None:
    """The Docker API's `since`/`until`: unix seconds ("1700000000.123456789") or RFC 3339;
    "" or "0" means unset."""
    if value in (None, "", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    import datetime as dt
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid time value: {value!r}") from None


_DURATION = r"(?:(\d+(?:\.\d+)?)(h|m|s|ms))+"
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_since(text: str, now: float) -> float:
    """The CLI's --since/--until: a duration back from now ("10m", "1h30m"), a unix
    timestamp ("1700000000.5"), or an RFC 3339 date or date-time."""
    import re  # here: the CLI's verbs import this module, and most never parse a duration
    text = text.strip()
    if re.fullmatch(_DURATION, text):
        total = sum(float(n) * _UNIT[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text))
        return now - total
    try:
        return float(text)
    except ValueError:
        pass
    import datetime as dt
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid time {text!r}: use a duration (10m), a unix timestamp "
                              "or an RFC 3339 date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, which docker uses for "5 seconds ago" and "Up 3 hours"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(then: float | None, now: float) -> str:
    """"5 seconds ago"; "N/A" for a time that is unset."""
    if not then:
        return "N/A"
    return f"{human_duration(max(0.0, now - then))} ago"


def local_created(seconds: float) -> str:
    """CreatedAt in the CLI's `--format json`: "2024-05-01 10:00:00 +0000 UTC"."""
    return _utc(int(seconds), " ") + " +0000 UTC"
