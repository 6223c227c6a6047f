"""berth_cli.wire reads and writes the Engine API's messages exactly as protobuf does: every
message of engine.proto (and google.rpc's Status), filled with every field set, is parsed by
wire from protobuf's bytes and compared field by field, and written by wire from its fields
and compared with protobuf's own bytes."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor
from google.rpc import error_details_pb2, status_pb2

import berth_errors
from berth.engine.v1 import engine_pb2
from berth_cli import wire

FD = descriptor.FieldDescriptor
ENGINE_MESSAGES = sorted(engine_pb2.DESCRIPTOR.message_types_by_name)
# A value of each scalar type that a sign, width or encoding mistake would change.
SCALARS = {FD.TYPE_INT32: -5, FD.TYPE_INT64: -2**40, FD.TYPE_UINT32: 2**32 - 1, FD.TYPE_UINT64: 2**64 - 1,
           FD.TYPE_SINT32: -7, FD.TYPE_SINT64: -2**50, FD.TYPE_FIXED32: 2**31 + 3, FD.TYPE_FIXED64: 2**63 + 5,
           FD.TYPE_SFIXED32: -9, FD.TYPE_SFIXED64: -2**60, FD.TYPE_BOOL: True, FD.TYPE_FLOAT: 1.5,
           FD.TYPE_DOUBLE: -2.25}
DEPTH = 3


def _scalar(field, i: int):
    if field.type == FD.TYPE_STRING:
        return f"{field.name}-ü-{i}"
    if field.type == FD.TYPE_BYTES:
        return b"\x00\xff" + field.name.encode() + bytes([i])
    if field.type == FD.TYPE_ENUM:
        return field.enum_type.values[-1].number
    return SCALARS[field.type]


def _real(oneof) -> bool:
    """Not the oneof protoc makes of a proto3 `optional` field."""
    return not (len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name)


def fill(message, variant: int = 0, depth: int = 0, entries: int = 2):
    """Every field of `message` set (a oneof: its member number `variant`), nested to DEPTH."""
    chosen = {o.name: o.fields[variant % len(o.fields)].name for o in message.DESCRIPTOR.oneofs if _real(o)}
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen.get(oneof.name) != field.name:
            continue
        is_message = field.type == FD.TYPE_MESSAGE
        if is_message and depth >= DEPTH:
            continue
        value = getattr(message, field.name)
        if is_message and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for i in range(entries):
                key = _scalar(field.message_type.fields_by_name["key"], i)
                if value_field.type == FD.TYPE_MESSAGE:
                    fill(value[key], variant, depth + 1, entries)
                else:
                    value[key] = _scalar(value_field, i)
        elif field.is_repeated:
            for i in range(2):
                if is_message:
                    fill(value.add(), variant, depth + 1, entries)
                else:
                    value.append(_scalar(field, i))
        elif is_message:
            value.SetInParent()
            fill(value, variant, depth + 1, entries)
        else:
            setattr(message, field.name, _scalar(field, 0))
    return message


def same(pb, ours, depth: int = 0) -> None:
    """Every field of the protobuf message `pb` reads the same from wire's `ours`."""
    d = pb.DESCRIPTOR
    for field in d.fields:
        where = f"{d.full_name}.{field.name}"
        theirs, mine = getattr(pb, field.name), getattr(ours, field.name)
        if field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            assert isinstance(mine, dict) and set(mine) == set(theirs), where
            for key in theirs:
                if field.message_type.fields_by_name["value"].type == FD.TYPE_MESSAGE:
                    same(theirs[key], mine[key], depth + 1)
                else:
                    assert mine[key] == theirs[key], where
        elif field.is_repeated:
            assert isinstance(mine, list) and len(mine) == len(theirs), where
            if field.type == FD.TYPE_MESSAGE:
                for a, b in zip(theirs, mine):
                    same(a, b, depth + 1)
            else:
                assert mine == list(theirs), where
        else:
            if field.has_presence:
                assert ours.HasField(field.name) == pb.HasField(field.name), where
            if field.type == FD.TYPE_MESSAGE:
                if depth <= DEPTH:
                    same(theirs, mine, depth + 1)
            else:
                assert mine == theirs and type(mine) is type(theirs), (where, mine, theirs)
    for oneof in filter(_real, d.oneofs):
        assert ours.WhichOneof(oneof.name) == pb.WhichOneof(oneof.name), f"{d.full_name}.{oneof.name}"


def values_of(pb) -> dict:
    """The fields set in `pb`, as wire.encode takes them."""
    out = {}
    for field, value in pb.ListFields():
        if field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            message_values = field.message_type.fields_by_name["value"].type == FD.TYPE_MESSAGE
            out[field.name] = {k: values_of(v) if message_values else v for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [values_of(v) for v in value] if field.type == FD.TYPE_MESSAGE else list(value)
        else:
            out[field.name] = values_of(value) if field.type == FD.TYPE_MESSAGE else value
    return out


def _variants(name: str) -> range:
    oneofs = getattr(engine_pb2, name).DESCRIPTOR.oneofs
    return range(max([len(o.fields) for o in oneofs] or [1]))


def ours(pb):
    return wire.engine().message("." + pb.DESCRIPTOR.full_name)


@pytest.mark.parametrize("name", ENGINE_MESSAGES)
def test_every_message_reads_as_protobuf_reads_it(name):
    for variant in _variants(name):
        pb = fill(getattr(engine_pb2, name)(), variant)
        same(pb, ours(pb).cls.FromString(pb.SerializeToString()))
    empty = getattr(engine_pb2, name)()
    same(empty, ours(empty).cls.FromString(b""))


@pytest.mark.parametrize("name", ENGINE_MESSAGES)
def test_every_message_writes_protobufs_bytes(name):
    for variant in _variants(name):
        pb = fill(getattr(engine_pb2, name)(), variant, entries=1)
        data = wire.encode(ours(pb), values_of(pb))
        assert data == pb.SerializeToString(deterministic=True)
        assert type(pb).FromString(data) == pb


def test_defaults_are_not_sent_and_an_optional_zero_is():
    assert wire.request("StopContainerRequest", id="", timeout=None).SerializeToString() == b""
    assert wire.request("StopContainerRequest", id="web", timeout=0).SerializeToString() == \
        engine_pb2.StopContainerRequest(id="web", timeout=0).SerializeToString()
    assert wire.request("RemoveContainerRequest", id="a", force=False).SerializeToString() == \
        engine_pb2.RemoveContainerRequest(id="a").SerializeToString()


def test_out_of_range_wrong_types_and_unknown_fields_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        wire.request("StopContainerRequest", id="x", timeout=2**31)
    with pytest.raises(TypeError, match="timout"):
        wire.request("StopContainerRequest", id="x", timout=1)
    with pytest.raises(TypeError):
        wire.request("StopContainerRequest", id=5)


def test_a_field_unknown_to_this_client_is_skipped_and_bad_bytes_are_refused():
    known = engine_pb2.InspectContainerRequest(id="web").SerializeToString()
    newer = known + b"\xf8\x3e\x07" + b"\xfa\x3e\x02hi"  # fields 999 (varint) and 999 (bytes)
    assert wire.message("InspectContainerRequest").FromString(newer).id == "web"
    for bad in (b"\x0a\x05web", b"\x0a", b"\x08\xff", b"\x0b"):
        with pytest.raises(wire.DecodeError):
            wire.message("InspectContainerRequest").FromString(bad).id  # noqa: B018


def test_a_message_sent_twice_is_merged_as_protobuf_merges_it():
    first = engine_pb2.ContainerInfo(id="a", state=engine_pb2.ContainerState(status="running", pid=5))
    second = engine_pb2.ContainerInfo(state=engine_pb2.ContainerState(exit_code=3))
    data = first.SerializeToString() + second.SerializeToString()
    same(engine_pb2.ContainerInfo.FromString(data), wire.message("ContainerInfo").FromString(data))


def test_has_field_and_which_oneof_refuse_what_protobuf_refuses():
    info = wire.message("ContainerInfo").FromString(b"")
    with pytest.raises(ValueError):
        info.HasField("id")
    with pytest.raises(ValueError):
        info.WhichOneof("nothing")
    with pytest.raises(AttributeError):
        info.no_such_field  # noqa: B018


def test_every_engine_method_is_found_with_its_types():
    service = engine_pb2.DESCRIPTOR.services_by_name["EngineService"]
    assert service.full_name == wire.SERVICE
    for method in service.methods:
        request, reply, client_streaming, server_streaming = wire.engine().method(wire.SERVICE, method.name)
        assert (request.name, reply.name) == (method.input_type.full_name, method.output_type.full_name)
        assert (client_streaming, server_streaming) == (method.client_streaming, method.server_streaming)


def test_status_details_read_as_berth_errors_reads_them():
    for err in (berth_errors.NotFound("no such image", resource="image"), berth_errors.Conflict("in use")):
        details = berth_errors.status_details(err, 5)
        assert wire.error_info(details, berth_errors.DOMAIN) == berth_errors.error_info(details)
    other = status_pb2.Status(code=5)
    other.details.add().Pack(error_details_pb2.ErrorInfo(reason="X", domain="elsewhere"))
    assert wire.error_info(other.SerializeToString(), berth_errors.DOMAIN) is None
    assert wire.error_info(b"\x0b", berth_errors.DOMAIN) is None


def test_the_serialized_descriptors_are_the_generated_modules_own():
    for module in (engine_pb2, status_pb2, error_details_pb2):
        assert wire.serialized_file(module.DESCRIPTOR.name) == module.DESCRIPTOR.serialized_pb


@pytest.mark.parametrize("name", ENGINE_MESSAGES)
def test_every_field_is_read_from_the_descriptor_as_protobuf_reads_it(name):
    d = getattr(engine_pb2, name).DESCRIPTOR
    fields = wire.engine().message("." + d.full_name).by_name
    assert set(fields) == {f.name for f in d.fields}
    for f in d.fields:
        mine = fields[f.name]
        assert (mine.number, mine.kind, mine.repeated, mine.presence) == \
            (f.number, f.type, f.is_repeated, f.has_presence), f.name
        if f.is_repeated and f.type not in (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_MESSAGE):
            assert mine.packed == f.is_packed, f.name


def test_the_well_known_types_are_protobufs():
    from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
    for module in (timestamp_pb2, duration_pb2, empty_pb2):
        for d in module.DESCRIPTOR.message_types_by_name.values():
            mine = wire.WELL_KNOWN["." + d.full_name]
            assert {(f.name, f.number, f.type, f.is_repeated) for f in d.fields} == \
                {(f.name, f.number, f.kind, f.repeated) for f in mine.fields.values()}


def test_messages_are_made_and_filled_as_protobufs():
    # What run/create do to their config, and a field named as the raw-bytes argument is not.
    chunk = wire.message("LoadImagesRequest")(data=b"tar bytes")
    assert chunk.SerializeToString() == engine_pb2.LoadImagesRequest(data=b"tar bytes").SerializeToString()
    ours, theirs = wire.message("ContainerConfig")(image="busybox", cmd=["sh"]), engine_pb2.ContainerConfig(
        image="busybox", cmd=["sh"])
    for config in (ours, theirs):
        config.labels.update({"a": "b"})
        config.env.extend(["A=1"])
        config.entrypoint.SetInParent()
        config.restart_policy.CopyFrom(engine_pb2.RestartPolicy(name="always"))
        config.log_config.options.update({})  # an empty update sets nothing
        config.endpoint_settings.links.append("db:db")
        config.stop_timeout = 0
    assert engine_pb2.ContainerConfig.FromString(ours.SerializeToString()) == theirs
    assert [ours.HasField(f) for f in ("entrypoint", "log_config", "stop_timeout", "healthcheck")] == \
        [theirs.HasField(f) for f in ("entrypoint", "log_config", "stop_timeout", "healthcheck")]
    with pytest.raises(AttributeError):
        ours.cmd = ["x"]
    with pytest.raises(AttributeError):
        ours.no_such_field = 1


def test_the_cli_s_stderr_stream_number_is_the_proto_s():
    from berth.types.v1 import stdio_pb2
    from berth_cli import engine
    assert engine.OUTPUT_STREAM_STDERR == stdio_pb2.OUTPUT_STREAM_STDERR
