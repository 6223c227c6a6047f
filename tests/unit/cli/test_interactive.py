"""CLI pieces of exec/attach/cp that need no engine."""

from __future__ import annotations

import pytest

from berth_cli import files, interactive


def test_detach_keys():
    assert interactive.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert interactive.parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(ValueError):
        interactive.parse_detach_keys("ctrl-pq")


def test_container_refs_in_cp():
    assert files._split_ref("web:/etc/hosts") == ("web", "/etc/hosts")
    assert files._split_ref("web:") == ("web", "/")
    assert files._split_ref("./a:b") is None and files._split_ref("/tmp/x") is None
