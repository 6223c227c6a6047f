"""Times, sizes, durations and statuses as docker writes and reads them (berth_docker.times,
units, shapes.containers), for the CLI and the Docker API alike."""

from __future__ import annotations

import pytest

import berth_errors
from google.protobuf import timestamp_pb2

from berth.engine.v1 import engine_pb2
from berth_docker import times, units
from berth_docker.shapes.containers import status_text


@pytest.mark.parametrize("seconds,want", [
    (0.4, "Less than a second"), (1, "1 second"), (5, "5 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (3 * 86400, "3 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (3 * 365 * 86400, "3 years"),
])
def test_human_duration(seconds, want):
    assert times.human_duration(seconds) == want


@pytest.mark.parametrize("status,code,started,finished,want", [
    ("running", 0, 97.0, 0, "Up 3 seconds"),
    ("exited", 0, 90.0, 98.0, "Exited (0) 2 seconds ago"),
    ("exited", 137, 0, 40.0, "Exited (137) About a minute ago"),
    ("created", 0, 0, 0, "Created"),
])
def test_status_line(status, code, started, finished, want):
    state = engine_pb2.ContainerState(status=status, exit_code=code, running=status == "running")
    if started:
        state.started_at.FromSeconds(int(started))
    if finished:
        state.finished_at.FromSeconds(int(finished))
    assert status_text(state, now=100.0) == want


def test_status_of_paused_unhealthy_and_removing():
    state = engine_pb2.ContainerState(status="paused", paused=True)
    state.started_at.FromSeconds(90)
    assert status_text(state, now=100.0) == "Up 10 seconds (Paused)"
    state = engine_pb2.ContainerState(status="running", running=True, health=engine_pb2.Health(status="unhealthy"))
    state.started_at.FromSeconds(90)
    assert status_text(state, now=100.0) == "Up 10 seconds (unhealthy)"
    assert status_text(engine_pb2.ContainerState(status="removing")) == "Removal In Progress"


@pytest.mark.parametrize("size,want", [
    (216, "216B"), (1240, "1.24kB"), (2_060_000, "2.06MB"), (4_260_000_000, "4.26GB"), (999, "999B"),
])
def test_human_size(size, want):
    assert units.human_size(size) == want


def test_parse_time():
    assert times.parse_since("10m", now=1000.0) == 400.0
    assert times.parse_since("1h30m", now=10000.0) == 4600.0
    assert times.parse_since("1700000000.5", now=0) == 1700000000.5
    assert times.parse_since("2024-01-01T00:00:00Z", now=0) == 1704067200.0
    with pytest.raises(ValueError):
        times.parse_since("yesterday", now=0)


@pytest.mark.parametrize("text,want", [("64m", 64 << 20), ("1g", 1 << 30), ("512", 512), ("100k", 100 << 10),
                                       ("1.5m", int(1.5 * (1 << 20))), ("64MB", 64 << 20)])
def test_parse_bytes(text, want):
    assert units.parse_bytes(text) == want


def test_parse_cpus():
    assert units.parse_cpus("0.5") == 500_000_000
    with pytest.raises(ValueError):
        units.parse_cpus("half")


def test_rfc3339():
    # docker's RFC3339NanoFixed, which logs -t, events and inspect print.
    assert times.rfc3339(timestamp_pb2.Timestamp(seconds=1704067200, nanos=123000000)) == \
        "2024-01-01T00:00:00.123000000Z"
    assert times.rfc3339(timestamp_pb2.Timestamp(seconds=1704067200)) == "2024-01-01T00:00:00.000000000Z"
    assert times.rfc3339(None) == times.rfc3339(timestamp_pb2.Timestamp()) == "0001-01-01T00:00:00Z"


def test_memory_in_binary_units():
    assert units.binary_size(64 * 1024 * 1024) == "64.00MiB"
    assert units.binary_size(512) == "512B"


def test_go_durations():
    assert units.parse_duration("1m30s", "--health-interval") == 90 * 10**9
    assert units.parse_duration("250ms", "--health-timeout") == 250 * 10**6
    with pytest.raises(ValueError):
        units.parse_duration("soon", "--health-interval")


def test_rfc3339_read_without_datetime_agrees_with_it():
    import datetime as dt
    import random

    def by_datetime(text):
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()

    rng = random.Random(7)
    for _ in range(2000):
        d = dt.datetime.fromtimestamp(rng.randint(-62_000_000_000, 253_000_000_000), dt.timezone.utc)
        text = (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
                + rng.choice(["", ".5", ".123456"]) + rng.choice(["Z", "+00:00", "+02:30", "-07:00", ""]))
        assert times.parse_since(text, 0) == pytest.approx(by_datetime(text), abs=1e-6)
        assert times.timestamp(text) == pytest.approx(by_datetime(text), abs=1e-6)
    # docker's own nanoseconds, and shapes left to datetime (a date alone) or refused.
    assert times.parse_since("2026-12-02T21:18:56.852584960Z", 0) == pytest.approx(1796246336.85258496)
    assert times.parse_since("2024-05-01", 0) == 1714521600.0
    for bad in ("2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z"):
        with pytest.raises(berth_errors.InvalidArgument):
            times.parse_since(bad, 0)
