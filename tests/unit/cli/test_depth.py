"""CLI pieces of exec/attach/cp that need no engine."""

from __future__ import annotations

import pytest

from berth_cli import depth


def test_detach_keys():
    assert depth.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert depth.parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(ValueError):
        depth.parse_detach_keys("ctrl-pq")


def test_container_refs_in_cp():
    assert depth._split_ref("web:/etc/hosts") == ("web", "/etc/hosts")
    assert depth._split_ref("web:") == ("web", "/")
    assert depth._split_ref("./a:b") is None and depth._split_ref("/tmp/x") is None


def test_memory_in_binary_units():
    assert depth.binary_size(64 * 1024 * 1024) == "64.00MiB"
    assert depth.binary_size(512) == "512B"
