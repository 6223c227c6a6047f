"""How the CLI shows things: relative times, statuses, truncation, sizes, tables."""

from __future__ import annotations

import pytest

from berth_cli import format as fmt


@pytest.mark.parametrize("seconds,want", [
    (0.4, "Less than a second"), (1, "1 second"), (5, "5 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (3 * 86400, "3 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (3 * 365 * 86400, "3 years"),
])
def test_human_duration(seconds, want):
    assert fmt.human_duration(seconds) == want


@pytest.mark.parametrize("status,code,started,finished,want", [
    ("running", 0, 97.0, 0, "Up 3 seconds"),
    ("exited", 0, 90.0, 98.0, "Exited (0) 2 seconds ago"),
    ("exited", 137, 0, 40.0, "Exited (137) About a minute ago"),
    ("created", 0, 0, 0, "Created"),
])
def test_status_line(status, code, started, finished, want):
    assert fmt.status_line(status, code, started, finished, now=100.0) == want


def test_command_column_truncates_like_docker():
    assert fmt.command_column("sleep", ["100"]) == '"sleep 100"'
    assert fmt.command_column("sh", ["-c", "while true; do echo hi; done"]) == '"sh -c while true; d…"'
    long = fmt.command_column("sh", ["-c", "x" * 40], truncate=False)
    assert long == '"sh -c ' + "x" * 40 + '"'


def test_ellipsis():
    assert fmt.ellipsis("abcdef", 6) == "abcdef"
    assert fmt.ellipsis("abcdefg", 6) == "abcde…"


@pytest.mark.parametrize("size,want", [
    (216, "216B"), (1240, "1.24kB"), (2_060_000, "2.06MB"), (4_260_000_000, "4.26GB"), (999, "999B"),
])
def test_human_size(size, want):
    assert fmt.human_size(size) == want


@pytest.mark.parametrize("name,want", [
    ("docker.io/library/busybox:latest", ("busybox", "latest")),
    ("docker.io/team/app:1.2", ("team/app", "1.2")),
    ("registry:5000/app:1", ("registry:5000/app", "1")),
    ("registry:5000/app", ("registry:5000/app", "<none>")),
])
def test_split_repo_tag(name, want):
    assert fmt.split_repo_tag(name) == want


def test_table_pads_like_tabwriter():
    out = fmt.table(("A", "LONGER"), [("xx", "y"), ("x", "")])
    assert out.splitlines() == ["A    LONGER", "xx   y", "x"]


def test_short_id():
    assert fmt.short_id("sha256:" + "ab" * 32) == "abababababab"


def test_parse_time():
    assert fmt.parse_time("10m", now=1000.0) == 400.0
    assert fmt.parse_time("1h30m", now=10000.0) == 4600.0
    assert fmt.parse_time("1700000000.5", now=0) == 1700000000.5
    assert fmt.parse_time("2024-01-01T00:00:00Z", now=0) == 1704067200.0
    with pytest.raises(ValueError):
        fmt.parse_time("yesterday", now=0)


@pytest.mark.parametrize("text,want", [("64m", 64 << 20), ("1g", 1 << 30), ("512", 512), ("100k", 100 << 10),
                                       ("1.5m", int(1.5 * (1 << 20))), ("64MB", 64 << 20)])
def test_parse_bytes(text, want):
    assert fmt.parse_bytes(text) == want


def test_parse_cpus():
    assert fmt.parse_cpus("0.5") == 500_000_000
    with pytest.raises(ValueError):
        fmt.parse_cpus("half")


def test_rfc3339():
    assert fmt.rfc3339(1704067200, 123000000) == "2024-01-01T00:00:00.123Z"
    assert fmt.rfc3339(1704067200, 0) == "2024-01-01T00:00:00Z"
