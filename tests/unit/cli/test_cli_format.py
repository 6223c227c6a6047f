"""How the CLI lays things out: truncation, quoting, image names, tables."""

from __future__ import annotations

import pytest

from berth_cli import format as fmt


def test_command_column_truncates_like_docker():
    assert fmt.command_column("sleep", ["100"]) == '"sleep 100"'
    assert fmt.command_column("sh", ["-c", "while true; do echo hi; done"]) == '"sh -c while true; d…"'
    long = fmt.command_column("sh", ["-c", "x" * 40], truncate=False)
    assert long == '"sh -c ' + "x" * 40 + '"'


def test_ellipsis():
    assert fmt.ellipsis("abcdef", 6) == "abcdef"
    assert fmt.ellipsis("abcdefg", 6) == "abcde…"


@pytest.mark.parametrize("name,want", [
    ("docker.io/library/busybox:latest", ("busybox", "latest")),
    ("docker.io/team/app:1.2", ("team/app", "1.2")),
    ("registry:5000/app:1", ("registry:5000/app", "1")),
    ("registry:5000/app", ("registry:5000/app", "<none>")),
])
def test_split_repo_tag(name, want):
    assert fmt.split_repo_tag(name) == want


def test_table_pads_like_tabwriter():
    # docker's tabwriter: widest cell + 3, at least 10 wide; the last column unpadded, and the
    # cell before an empty last one padded still (as `docker ps --format 'table {{.ID}}\t{{.Labels}}'`).
    out = fmt.table(("A", "LONGER"), [("xx", "y"), ("x", "")])
    assert out.splitlines() == ["A         LONGER", "xx        y", "x         "]
    out = fmt.table(("NAME", "X"), [("a-rather-long-name", "1")])
    assert out.splitlines() == ["NAME".ljust(21) + "X", "a-rather-long-name   1"]


def test_short_id():
    assert fmt.short_id("sha256:" + "ab" * 32) == "abababababab"


def test_inspect_json_is_json_dumps_indented():
    import json

    from berth_cli import format as fmt
    value = [{"Id": "x", "Args": [], "Labels": {}, "Env": ["A=ü", 'q"<>&\\'], "Pid": -3, "Big": 2**70,
              "Ok": True, "No": False, "None": None, "Nested": {"a": [1, {"b": []}], "c": {}},
              "Float": 1.5}, {}]
    assert fmt.indented_json(value) == json.dumps(value, indent=4)
    assert fmt.indented_json([]) == json.dumps([], indent=4)
