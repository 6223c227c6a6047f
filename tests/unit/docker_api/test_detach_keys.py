"""Detach keys on the Docker API's hijacked streams: docker's key syntax and the scanner."""

import pytest

from services.common import errors
from services.gateway.docker import detach_keys


def test_parse_reads_dockers_syntax():
    assert detach_keys.parse("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_keys.parse("ctrl-@,CTRL-A,ctrl-_,x") == b"\x00\x01\x1fx"



@pytest.mark.parametrize("spec", ["ctrl-pq", "ctrl-1", "ab", "a,,b", "ctrl-", "alt-x"])
def test_parse_refuses_unknown_keys_naming_the_spec(spec):
    with pytest.raises(errors.InvalidArgument, match="Invalid detach keys"):
        detach_keys.parse(spec)


def test_sequence_split_across_reads_detaches_and_is_swallowed():
    s = detach_keys.Scanner(b"\x10\x11")
    assert s.feed(b"ab\x10") == (b"ab", False)
    assert s.feed(b"\x11rest") == (b"", True)


def test_a_broken_prefix_is_passed_on_with_the_byte_that_broke_it():
    s = detach_keys.Scanner(b"\x10\x11")
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"x") == (b"\x10x", False)
    assert s.feed(b"a\x10y\x10") == (b"a\x10y", False)
    assert s.feed(b"\x10\x11") == (b"\x10", True)


def test_one_key_and_no_keys():
    assert detach_keys.Scanner(b"\x18").feed(b"ab\x18cd") == (b"ab", True)
    assert detach_keys.Scanner(b"").feed(b"\x10\x11") == (b"\x10\x11", False)
