"""berth_cli.wire writes the container-state requests exactly as protobuf does, from the
field numbers engine.proto gives them."""

from __future__ import annotations

import itertools

import pytest
from google.protobuf import descriptor

from berth.engine.v1 import engine_pb2
from berth_cli import wire

KINDS = {wire.STRING: descriptor.FieldDescriptor.TYPE_STRING, wire.BOOL: descriptor.FieldDescriptor.TYPE_BOOL,
         wire.INT32: descriptor.FieldDescriptor.TYPE_INT32, wire.OPTIONAL_INT32: descriptor.FieldDescriptor.TYPE_INT32}
SAMPLES = {wire.STRING: (None, "", "web", "ü" * 70), wire.BOOL: (None, False, True),
           wire.INT32: (None, 0, 5, -1), wire.OPTIONAL_INT32: (None, 0, 10, -1, 2**31 - 1, 300)}
# The verbs' methods (berth_cli.commands) and the request each sends.
METHODS = {"StartContainer": "StartContainerRequest", "StopContainer": "StopContainerRequest",
           "RestartContainer": "RestartContainerRequest", "KillContainer": "KillContainerRequest",
           "RemoveContainer": "RemoveContainerRequest", "PauseContainer": "PauseContainerRequest",
           "UnpauseContainer": "UnpauseContainerRequest"}


@pytest.mark.parametrize("name", sorted(wire.REQUESTS))
def test_fields_are_engine_protos(name):
    message = engine_pb2.DESCRIPTOR.message_types_by_name[name]
    assert {f.name for f in message.fields} == {f[0] for f in wire.REQUESTS[name]}, "a field is missing"
    for field, number, kind in wire.REQUESTS[name]:
        pb = message.fields_by_name[field]
        assert (pb.number, pb.type) == (number, KINDS[kind]), field
        assert pb.has_presence == (kind == wire.OPTIONAL_INT32), field


@pytest.mark.parametrize("name", sorted(wire.REQUESTS))
def test_bytes_are_protobufs(name):
    fields = wire.REQUESTS[name]
    for values in itertools.product(*(SAMPLES[kind] for _, _, kind in fields)):
        given = {f[0]: v for f, v in zip(fields, values) if v is not None}
        expected = getattr(engine_pb2, name)(**given).SerializeToString()
        assert wire.request(name, **given).SerializeToString() == expected, given


def test_methods_take_these_requests():
    service = engine_pb2.DESCRIPTOR.services_by_name["EngineService"]
    assert service.full_name == wire.SERVICE
    for method, request in METHODS.items():
        assert service.methods_by_name[method].input_type.name == request


def test_out_of_range_and_unknown_fields_are_refused():
    with pytest.raises(ValueError):
        wire.request("StopContainerRequest", id="x", timeout=2**31)
    with pytest.raises(TypeError, match="timout"):
        wire.request("StopContainerRequest", id="x", timout=1)
