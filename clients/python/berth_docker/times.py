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
    return timestamp_pb2.Timestamp(**timestamp_fields(seconds))


def timestamp_fields(seconds: float) -> dict[str, int]:
    """Unix seconds as a google.protobuf.Timestamp's fields (nanos in [0, 1e9), as protobuf
    normalizes them), for a request encoded without protobuf (berth_cli.wire)."""
    whole, nanos = divmod(int(seconds * 1e9), 10**9)
    return {"seconds": whole, "nanos": nanos}


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
    seconds = _rfc3339_seconds(value)
    if seconds is not None:
        return seconds
    import datetime as dt
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid time value: {value!r}") from None


def _rfc3339_seconds(text: str) -> float | None:
    """Unix seconds of an RFC 3339 date-time as docker writes them, "2024-05-01T10:00:00[.fraction]"
    then "Z" or "+02:00", read without datetime (which costs a CLI command ~3 ms to import);
    None for any other shape, left to datetime. A date-time without an offset is UTC."""
    date, sep, clock = text.partition("T")
    if not sep or len(date) != 10 or date[4] != "-" or date[7] != "-" or len(clock) < 8 or clock[2] != ":" \
            or clock[5] != ":":
        return None
    offset = 0
    if clock.endswith(("Z", "z")):
        clock = clock[:-1]
    elif len(clock) >= 14 and clock[-6] in "+-" and clock[-3] == ":":
        hours, minutes = clock[-5:-3], clock[-2:]
        if not (hours.isdigit() and minutes.isdigit()):
            return None
        offset = (int(hours) * 3600 + int(minutes) * 60) * (1 if clock[-6] == "+" else -1)
        clock = clock[:-6]
    fraction = clock[8:]
    parts = (date[:4], date[5:7], date[8:], clock[:2], clock[3:5], clock[6:8])
    if not all(p.isdigit() and p.isascii() for p in parts) or fraction and (
            fraction[0] != "." or not fraction[1:].isdigit() or not fraction[1:].isascii()):
        return None
    year, month, day, hour, minute, second = map(int, parts)
    if not (1 <= month <= 12 and 1 <= day <= _month_days(year, month) and hour < 24 and minute < 60
            and second < 60):
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second - offset + (float(fraction) if fraction else 0.0)


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


_DURATION = r"(?:(\d+(?:\.\d+)?)(h|m|s|ms))+"
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_since(text: str, now: float) -> float:
    """The CLI's --since/--until: a duration back from now ("10m", "1h30m"), a unix
    timestamp ("1700000000.5"), or an RFC 3339 date or date-time."""
    text = text.strip()
    # A number, or a date-time as docker prints them, first: neither needs re or datetime,
    # and neither is ever a duration (which always ends in its unit).
    try:
        return float(text)
    except ValueError:
        pass
    seconds = _rfc3339_seconds(text)
    if seconds is not None:
        return seconds
    import re  # here: the CLI's verbs import this module, and most never parse a duration
    if re.fullmatch(_DURATION, text):
        total = sum(float(n) * _UNIT[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text))
        return now - total
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
