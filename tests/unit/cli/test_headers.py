"""The CLI's HPACK: its static table is RFC 7541's, and it decodes what an HPACK encoder
writes (indexed fields, the dynamic table, Huffman strings, table size updates)."""

from __future__ import annotations

import hpack as reference  # the well-known implementation, as the judge of ours

from berth_cli import headers


def test_static_table_is_the_rfcs():
    from hpack.table import HeaderTable
    assert headers.STATIC_TABLE == tuple(HeaderTable.STATIC_TABLE)


def test_decodes_what_an_encoder_writes_across_blocks():
    enc, dec = reference.Encoder(), headers.Decoder()
    blocks = [
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity,gzip")],
        # The second block refers to the first's dynamic-table entries.
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0"), ("grpc-message", "")],
        [("grpc-status", "5"), ("grpc-message", "No such container: x " * 20),
         ("grpc-status-details-bin", "CAUSFk5vIHN1Y2ggY29udGFpbmVy")],
    ]
    for block in blocks:
        for huffman in (False, True):
            encoded = enc.encode(block, huffman=huffman)
            assert dec.decode(encoded) == [(k.encode(), v.encode()) for k, v in block]


def test_table_size_update_evicts():
    enc, dec = reference.Encoder(), headers.Decoder()
    dec.decode(enc.encode([("x-a", "1" * 100)]))
    enc.header_table_size = 0
    assert dec.decode(enc.encode([("x-b", "2")])) == [(b"x-b", b"2")]
    assert dec._dynamic == [] or dec._size <= dec._max_size


def test_our_encoding_is_plain_literals_any_decoder_reads():
    block = [(b":method", b"POST"), (b":path", b"/berth.engine.v1.EngineService/ListContainers"),
             (b"x-long", b"v" * 300)]
    assert reference.Decoder().decode(headers.encode(block), raw=True) == block


def test_garbage_is_an_hpack_error():
    import pytest
    with pytest.raises(headers.HPACKError):
        headers.Decoder().decode(b"\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(headers.HPACKError):
        headers.Decoder().decode(b"\x00\x05ab")


def test_huffman_strings_decode_as_hpack_decodes_them():
    # grpcio Huffman-codes a failed call's grpc-message: headers.py decodes it itself.
    import random

    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    from hpack.huffman_table import decode_huffman

    from berth_cli.headers import HPACKError, _huffman_decode
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    for text in (b"", b"No such container: web", bytes(range(256)), "ü 100%".encode()):
        assert _huffman_decode(encoder.encode(text)) == text
    rng = random.Random(7)
    for _ in range(3000):  # arbitrary bytes: the same string, or refused as hpack refuses it
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        try:
            expected = decode_huffman(data)
        except Exception:  # noqa: BLE001 — hpack's own error class
            expected = None
        try:
            got = _huffman_decode(data)
        except HPACKError:
            got = None
        assert got == expected, data
