"""The Engine API's messages in protobuf's wire format, read and written without protobuf.

A verb such as `berth ps`, `inspect` or `stop` sends one small request and reads one
reply. Loading upb (its extension, the engine's descriptors, the well-known types: ~35 ms)
costs more than the rest of such a command, so those verbs encode their request and
decode their reply here. The schema is the generated modules' own: each `*_pb2.py` holds
its file's serialized FileDescriptorProto, which is read here with the few field numbers
of descriptor.proto it needs (_FILE, _SERVICE, _METHOD, _message_descriptor,
_field_descriptor; protobuf never renumbers a field), so there is nothing extra to keep
in step with `make protos`.

Replies are decoded lazily: a message's fields are read when one of them is first asked
for, and a nested message stays bytes until then, so `ps` never reads the configs it does
not show. A message offers what the CLI uses of protobuf's: fields by name with proto3's
defaults, repeated fields as lists, maps as dicts, HasField, WhichOneof, and for the ones
`run` and `create` build (berth_cli.messages.wire_classes) construction by keywords,
fields set, appended to and updated in place, SetInParent, CopyFrom, SerializeToString.
tests/unit/cli/test_wire.py checks both directions against protobuf itself on every
engine message with every field set.

    reply = client.call("ListContainers", all=True)           # berth_cli.engine.Client
    wire.request("StopContainerRequest", id="web", timeout=5)  # the bytes protobuf sends
"""

from __future__ import annotations

import _struct as struct
import codecs
import sys

SERVICE = "berth.engine.v1.EngineService"
ENGINE_FILE = "berth/engine/v1/engine.proto"
_ENGINE_PACKAGE = ".berth.engine.v1."

# FieldDescriptorProto.Type and .Label (descriptor.proto).
DOUBLE, FLOAT, INT64, UINT64, INT32, FIXED64, FIXED32, BOOL, STRING, GROUP, MESSAGE, BYTES, UINT32, ENUM, \
    SFIXED32, SFIXED64, SINT32, SINT64 = range(1, 19)
REPEATED = 3
_VARINTS = (INT64, UINT64, INT32, BOOL, UINT32, ENUM, SINT32, SINT64)
_FIXED = {DOUBLE: "<d", FLOAT: "<f", FIXED64: "<Q", FIXED32: "<I", SFIXED32: "<i", SFIXED64: "<q"}
_WIRE_TYPE = {**dict.fromkeys(_VARINTS, 0), DOUBLE: 1, FIXED64: 1, SFIXED64: 1, FLOAT: 5, FIXED32: 5,
              SFIXED32: 5, STRING: 2, BYTES: 2, MESSAGE: 2}
_DEFAULTS = {**dict.fromkeys((INT64, UINT64, INT32, UINT32, ENUM, SINT32, SINT64, FIXED64, FIXED32, SFIXED32,
                              SFIXED64), 0), DOUBLE: 0.0, FLOAT: 0.0, BOOL: False, STRING: "", BYTES: b""}
_RANGES = {INT32: (-2**31, 2**31), SINT32: (-2**31, 2**31), SFIXED32: (-2**31, 2**31), ENUM: (-2**31, 2**31),
           UINT32: (0, 2**32), FIXED32: (0, 2**32), INT64: (-2**63, 2**63), SINT64: (-2**63, 2**63),
           SFIXED64: (-2**63, 2**63), UINT64: (0, 2**64), FIXED64: (0, 2**64)}


class DecodeError(ValueError):
    """Bytes that are not a message of the type they were read as (protobuf's DecodeError)."""


# -- the wire format ---------------------------------------------------------------------

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7
        if shift >= 70:
            raise DecodeError("a varint longer than 10 bytes")


def _put_varint(out: bytearray, value: int) -> None:
    value &= (1 << 64) - 1  # a negative int32 or int64 is sent as its 64-bit two's complement
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _scalar(kind: int, value):
    """A decoded varint or fixed-width value as protobuf shows it."""
    if kind in (INT32, ENUM):
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    if kind == INT64:
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == BOOL:
        return value != 0
    if kind == UINT32:
        return value & 0xFFFFFFFF
    if kind in (SINT32, SINT64):
        return (value >> 1) ^ -(value & 1)
    return value


def _packed(kind: int, data: bytes) -> list:
    if kind in _FIXED:
        fmt = _FIXED[kind]
        size = struct.calcsize(fmt)
        if len(data) % size:
            raise DecodeError("a packed field cut short")
        return [struct.unpack_from(fmt, data, i)[0] for i in range(0, len(data), size)]
    out, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        out.append(_scalar(kind, value))
    return out


class Field:
    """One field of a message type, as its descriptor declares it."""

    __slots__ = ("name", "number", "kind", "repeated", "type_name", "oneof", "presence", "packed",
                 "message", "map_entry", "others", "schema")

    def __init__(self, name: str, number: int, kind: int, repeated: bool = False, type_name: str = "",
                 oneof: str | None = None, presence: bool = False, packed: bool = True):
        self.name, self.number, self.kind, self.repeated = name, number, kind, repeated
        self.type_name, self.oneof, self.packed = type_name, oneof, packed
        self.presence = presence or kind == MESSAGE and not repeated
        self.message: MessageType | None = None  # found on first use (MESSAGE only): link()
        self.map_entry = False
        self.schema: Schema | None = None
        self.others: tuple[str, ...] = ()  # the other members of its oneof

    def link(self) -> MessageType:
        """The field's message type, looked up when a value of it is first read or written."""
        if self.message is None:
            self.message = self.schema.message(self.type_name)
            self.map_entry = self.repeated and self.message.map_entry
        return self.message

    def default(self):
        if self.kind == MESSAGE:
            self.link()
        if self.map_entry:
            return {}
        if self.repeated:
            return []
        if self.kind == MESSAGE:
            return self.message.cls(b"")
        return _DEFAULTS[self.kind]


class MessageType:
    """A message type: its fields by number and name, its oneofs, and its class (`cls`)."""

    def __init__(self, schema: Schema | None, name: str, fields: list[Field], map_entry: bool = False):
        self.schema, self.name, self.map_entry = schema, name, map_entry
        self.fields = {f.number: f for f in fields}
        self.by_name = {f.name: f for f in fields}
        self.oneofs: dict[str, tuple[str, ...]] = {}
        for f in fields:
            if f.oneof is not None:
                self.oneofs[f.oneof] = (*self.oneofs.get(f.oneof, ()), f.name)
        for f in fields:
            if f.oneof is not None:
                f.others = tuple(m for m in self.oneofs[f.oneof] if m != f.name)
            f.schema = schema
        self.cls = type(name.rpartition(".")[2], (Message,), {"_type": self, "__slots__": ()})


class Message:
    """A message: decoded, its fields read on first access (see the module docstring), or made
    and filled as protobuf's are (`Cls(name=value, ...)`, attributes set, repeated fields
    appended to, maps updated, SetInParent, CopyFrom) and sent with SerializeToString."""

    __slots__ = ("_data", "_present", "__dict__")
    _type: MessageType

    def __init__(self, raw: bytes = b"", /, **values):
        # `raw` positional only: a field may be named "data" (OutputChunk's, LoadImagesRequest's).
        object.__setattr__(self, "_data", raw if not values else None)
        # Set in its parent (a message field): read off the wire, or given a value since.
        object.__setattr__(self, "_present", False)
        for name, value in values.items():
            self._put(name, value)

    @classmethod
    def FromString(cls, data) -> Message:  # noqa: N802 — protobuf's name, for the transport
        return cls(bytes(data))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        values = self.__dict__
        if self._data is not None:
            self._scan()
            if name in values:
                return values[name]
        field = self._type.by_name.get(name)
        if field is None:
            raise AttributeError(f"{self._type.name} has no field {name!r}")
        value = field.default()
        if field.repeated or field.kind == MESSAGE:
            values[name] = value  # kept, so that what is appended to it or set in it stays
        return value

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        field = self._field(name)
        if field.repeated or field.kind == MESSAGE:
            # protobuf's rule: a message or repeated field is changed in place, never replaced.
            raise AttributeError(f"assignment not allowed to field {name!r} of {self._type.name}")
        self._put(name, value)

    def _field(self, name: str) -> Field:
        field = self._type.by_name.get(name)
        if field is None:
            raise AttributeError(f"{self._type.name} has no field {name!r}")
        if self._data is not None:
            self._scan()
        return field

    def _put(self, name: str, value) -> None:
        field = self._field(name)
        if field.kind == MESSAGE:
            field.link()
        values = self.__dict__
        if field.map_entry:
            value_field = field.message.by_name["value"]
            values[name] = {k: _child(value_field, v) for k, v in dict(value).items()}
        elif field.repeated:
            values[name] = [_child(field, v) for v in value]
        elif field.kind == MESSAGE:
            values[name] = _child(field, value)
        else:
            if field.kind == STRING and not isinstance(value, str):
                raise TypeError(f"field {name}: expected a str, got {type(value).__name__}")
            values[name] = value
        for other in field.others:  # setting a member of a oneof clears the others
            values.pop(other, None)
        self._present = True

    def HasField(self, name: str) -> bool:  # noqa: N802 — protobuf's name
        field = self._type.by_name.get(name)
        if field is None or not field.presence and name not in self._type.oneofs:
            raise ValueError(f'Protocol message {self._type.name} has no singular "{name}" field.')
        if self._data is not None:
            self._scan()
        if name in self._type.oneofs:
            return self.WhichOneof(name) is not None
        return _is_set(field, self.__dict__.get(name, _UNSET))

    def WhichOneof(self, oneof: str) -> str | None:  # noqa: N802 — protobuf's name
        members = self._type.oneofs.get(oneof)
        if members is None:
            raise ValueError(f'Protocol message has no oneof "{oneof}" field.')
        if self._data is not None:
            self._scan()
        by_name, values = self._type.by_name, self.__dict__
        return next((m for m in members if _is_set(by_name[m], values.get(m, _UNSET))), None)

    def SetInParent(self) -> None:  # noqa: N802 — protobuf's name
        self._present = True

    def CopyFrom(self, other) -> None:  # noqa: N802 — protobuf's name (any message with its bytes)
        self.__dict__.clear()
        self._data = other.SerializeToString()
        self._present = True

    def ClearField(self, name: str) -> None:  # noqa: N802 — protobuf's name
        self._field(name)
        self.__dict__.pop(name, None)

    def SerializeToString(self, deterministic: bool = False) -> bytes:  # noqa: N802 — protobuf's name
        if self._data is not None:
            return bytes(self._data)
        by_name = self._type.by_name
        return encode(self._type, {k: v for k, v in self.__dict__.items() if _is_set(by_name[k], v)})

    def ByteSize(self) -> int:  # noqa: N802 — protobuf's name
        return len(self.SerializeToString())

    def _has_content(self) -> bool:
        if self._data is not None:
            return bool(self._data)
        by_name = self._type.by_name
        return any(_is_set(by_name[k], v) for k, v in self.__dict__.items())

    def __eq__(self, other) -> bool:
        if not isinstance(other, Message) or other._type is not self._type:
            return NotImplemented
        return _plain(self) == _plain(other)

    __hash__ = None

    def __repr__(self) -> str:
        if self._data is not None:
            self._scan()
        return f"{self._type.name}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    def _scan(self) -> None:
        data, self._data = self._data, None
        values = self.__dict__
        fields = self._type.fields
        for number, wire_type, value in _fields(data, self._type.name):
            field = fields.get(number)
            if field is not None:  # an unknown field (a newer engine's) is skipped
                _take(values, field, wire_type, value)


_UNSET = object()


def _is_set(field: Field, value) -> bool:
    """Whether a field's value is sent: a message set in its parent or with content, a
    non-empty list or map, a scalar unlike its default (or with presence, any value)."""
    if value is _UNSET:
        return False
    if field.map_entry or field.repeated:
        return bool(value)
    if field.kind == MESSAGE:
        return value._present or value._has_content()
    return field.presence or value != _DEFAULTS[field.kind]


def _child(field: Field, value):
    """A value given for a field, as it is kept: a message given as a dict, a Message or
    protobuf's becomes this field's own Message."""
    if field.kind != MESSAGE:
        return value
    cls = field.link().cls
    if isinstance(value, dict):
        child = cls(**value)
    elif type(value) is cls:
        child = value
    else:
        child = cls(value.SerializeToString())
    child._present = True
    return child


def _plain(value):
    """A message's set fields as plain values (equality)."""
    if isinstance(value, Message):
        if value._data is not None:
            value._scan()
        by_name = value._type.by_name
        return {k: _plain(v) for k, v in value.__dict__.items() if _is_set(by_name[k], v)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _value(field: Field, wire_type: int, value):
    kind = field.kind
    if wire_type != _WIRE_TYPE.get(kind):
        raise DecodeError(f"field {field.name} came with wire type {wire_type}")
    if kind == STRING:
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise DecodeError(f"field {field.name} is not UTF-8") from None
    if kind == MESSAGE:
        child = field.message.cls(value)
        child._present = True
        return child
    if kind == BYTES:
        return value
    if kind in _FIXED:
        return struct.unpack(_FIXED[kind], value)[0]
    return _scalar(kind, value)


def _take(values: dict, field: Field, wire_type: int, value) -> None:
    name = field.name
    if field.kind == MESSAGE and field.message is None:
        field.link()
    if field.map_entry:
        entry = field.message.cls(value)
        values.setdefault(name, {})[entry.key] = entry.value
    elif field.repeated:
        if wire_type == 2 and field.kind not in (STRING, BYTES, MESSAGE):
            values.setdefault(name, []).extend(_packed(field.kind, value))
        else:
            values.setdefault(name, []).append(_value(field, wire_type, value))
    elif field.kind == MESSAGE and name in values:
        # A message seen twice is merged, which in the wire format is the two joined.
        previous = values[name]
        values[name] = field.message.cls((previous._data or b"") + value)
        values[name]._present = True
    else:
        values[name] = _value(field, wire_type, value)
        for other in field.others:  # the last member of a oneof seen is the one set
            values.pop(other, None)


def encode(message_type: MessageType, values: dict) -> bytes:
    """`values` (field name -> value; a nested message as a dict) as protobuf serializes them."""
    fields = message_type.by_name
    unknown = set(values) - set(fields)
    if unknown:
        raise TypeError(f"{message_type.name} has no field {sorted(unknown)[0]!r}")
    out = bytearray()
    for field in sorted((fields[name] for name in values), key=lambda f: f.number):
        value = values[field.name]
        if value is None:
            continue
        if field.kind == MESSAGE:
            field.link()
        if field.map_entry:
            for key, item in value.items():
                _put_field(out, field, encode(field.message, {"key": key, "value": item}))
        elif field.repeated:
            if field.packed and field.kind not in (STRING, BYTES, MESSAGE):
                packed = bytearray()
                for item in value:
                    _put_scalar(packed, field, item)
                if packed:
                    _put_varint(out, field.number << 3 | 2)
                    _put_varint(out, len(packed))
                    out += packed
            else:
                for item in value:
                    _put_field(out, field, item)
        elif field.presence or value != _DEFAULTS.get(field.kind):
            _put_field(out, field, value)
    return bytes(out)


def _put_field(out: bytearray, field: Field, value) -> None:
    kind = field.kind
    _put_varint(out, field.number << 3 | _WIRE_TYPE[kind])
    if kind in (STRING, BYTES, MESSAGE):
        if kind == STRING:
            if not isinstance(value, str):
                raise TypeError(f"field {field.name}: expected a str, got {type(value).__name__}")
            value = value.encode()
        elif kind == MESSAGE and not isinstance(value, (bytes, bytearray)):
            value = encode(field.message, value) if isinstance(value, dict) else value.SerializeToString()
        _put_varint(out, len(value))
        out += value
    else:
        _put_scalar(out, field, value)


def _put_scalar(out: bytearray, field: Field, value) -> None:
    kind = field.kind
    if kind in (DOUBLE, FLOAT):
        out += struct.pack(_FIXED[kind], value)
        return
    if kind == BOOL:
        out.append(1 if value else 0)
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"field {field.name}: expected an int, got {type(value).__name__}")
    low, high = _RANGES[kind]
    if not low <= value < high:
        raise ValueError(f"Value out of range: {value}")  # protobuf's words
    if kind in _FIXED:
        out += struct.pack(_FIXED[kind], value)
    elif kind in (SINT32, SINT64):
        _put_varint(out, (value << 1) ^ (value >> 63))
    else:
        _put_varint(out, value)


# -- the schema, from the generated modules' descriptors ---------------------------------------

def _bootstrap(name: str, *fields: tuple) -> MessageType:
    return MessageType(None, name, [Field(*f) for f in fields])


def _fields(data: bytes, what: str = "a descriptor"):
    """(field number, wire type, value) of each field in `data`, the message `what`: a varint's
    value, or the bytes of any other field."""
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            wire_type = key & 7
            if wire_type == 0:
                value, pos = _varint(data, pos)
            elif wire_type == 2:
                size, pos = _varint(data, pos)
                value = data[pos:pos + size]
                pos += size
            elif wire_type in (1, 5):
                size = 8 if wire_type == 1 else 4
                value = data[pos:pos + size]
                pos += size
            else:
                raise DecodeError(f"wire type {wire_type} in {what}")
            if pos > end:
                raise DecodeError(f"{what} cut short")
            yield key >> 3, wire_type, value
    except IndexError:
        raise DecodeError(f"{what} cut short") from None


# descriptor.proto's field numbers, as read here. FileDescriptorProto, ServiceDescriptorProto and
# MethodDescriptorProto are read as messages; DescriptorProto and FieldDescriptorProto, of which
# a verb reads dozens, by _message_descriptor and _field_descriptor directly.
_METHOD = _bootstrap("MethodDescriptorProto", ("name", 1, STRING), ("input_type", 2, STRING),
                     ("output_type", 3, STRING), ("client_streaming", 5, BOOL), ("server_streaming", 6, BOOL))
_SERVICE = _bootstrap("ServiceDescriptorProto", ("name", 1, STRING), ("method", 2, MESSAGE, True))
_SERVICE.by_name["method"].message = _METHOD
_FILE = _bootstrap("FileDescriptorProto", ("name", 1, STRING), ("package", 2, STRING),
                   ("dependency", 3, STRING, True), ("message_type", 4, BYTES, True),
                   ("enum_type", 5, BYTES, True), ("service", 6, MESSAGE, True), ("syntax", 12, STRING))
_FILE.by_name["service"].message = _SERVICE


def _message_descriptor(data: bytes) -> tuple[str, list[bytes], list[bytes], bool, list[str]]:
    """A DescriptorProto: (name, its fields' FieldDescriptorProtos, its nested DescriptorProtos,
    whether it is a map's entry, the names of its oneofs)."""
    name, fields, nested, map_entry, oneofs = "", [], [], False, []
    for number, _, value in _fields(data):
        if number == 1:
            name = value.decode()
        elif number == 2:
            fields.append(value)
        elif number == 3:
            nested.append(value)
        elif number == 7:  # MessageOptions: map_entry = 7
            map_entry = any(n == 7 and v for n, _, v in _fields(value))
        elif number == 8:  # OneofDescriptorProto: name = 1
            oneofs.append(next((v.decode() for n, _, v in _fields(value) if n == 1), ""))
    return name, fields, nested, map_entry, oneofs


def _field_descriptor(data: bytes, oneofs: list[str], proto3: bool) -> Field:
    """A FieldDescriptorProto as a Field."""
    name = type_name = ""
    number = kind = label = 0
    oneof_index = packed = None
    synthetic = False  # proto3 `optional`: a oneof of its own, not a real one
    for n, _, value in _fields(data):
        if n == 1:
            name = value.decode()
        elif n == 3:
            number = value
        elif n == 4:
            label = value
        elif n == 5:
            kind = value
        elif n == 6:
            type_name = value.decode()
        elif n == 8:  # FieldOptions: packed = 2
            packed = next((bool(v) for o, _, v in _fields(value) if o == 2), None)
        elif n == 9:
            oneof_index = value
        elif n == 17:
            synthetic = bool(value)
    return Field(name, number, kind, label == REPEATED, type_name,
                 oneofs[oneof_index] if oneof_index is not None and not synthetic else None,
                 presence=synthetic or oneof_index is not None or not proto3,
                 packed=proto3 if packed is None else packed)


# protobuf's well-known types that engine.proto uses, frozen like descriptor.proto (their
# generated modules are not read for them: that would load protobuf's package).
WELL_KNOWN = {
    ".google.protobuf.Timestamp": _bootstrap("google.protobuf.Timestamp", ("seconds", 1, INT64),
                                             ("nanos", 2, INT32)),
    ".google.protobuf.Duration": _bootstrap("google.protobuf.Duration", ("seconds", 1, INT64),
                                            ("nanos", 2, INT32)),
    ".google.protobuf.Empty": _bootstrap("google.protobuf.Empty"),
}


class Schema:
    """The message types of a .proto file and of the files it imports, each read when first
    named. `loader` gives a file's serialized FileDescriptorProto by its name."""

    def __init__(self, loader):
        self._loader = loader
        self._raw: dict[str, tuple[bytes, bool]] = {}  # full name -> (DescriptorProto, proto3)
        self._types: dict[str, MessageType] = dict(WELL_KNOWN)
        self._files: dict[str, Message] = {}
        self._pending: list[str] = []  # files named as imports and not read yet

    def add_file(self, name: str) -> Message:
        file = self._files.get(name)
        if file is None:
            file = self._files[name] = _FILE.cls(self._loader(name))
            proto3 = file.syntax == "proto3"
            self._index(f".{file.package}" if file.package else "", file.message_type, proto3)
            self._pending += [d for d in file.dependency if d not in self._files]
        return file

    def _index(self, prefix: str, messages: list, proto3: bool) -> None:
        for raw in messages:
            self._raw[f"{prefix}.{_name_of(raw)}"] = (raw, proto3)

    def _next_file(self, full_name: str) -> str:
        """The pending import most likely to hold `full_name`: one named for its start (PortBinding
        in port.proto, Timestamp in timestamp.proto), else one in its package's directory."""
        package, _, short = full_name.rpartition(".")
        snake = "".join("_" + c.lower() if c.isupper() else c for c in short).lstrip("_")
        in_package = [i for i, name in enumerate(self._pending)
                      if "." + name.rpartition("/")[0].replace("/", ".") == package]
        for i in in_package:
            base = self._pending[i].rpartition("/")[2].removesuffix(".proto")
            if snake == base or snake.startswith(base + "_"):
                return self._pending.pop(i)
        return self._pending.pop(in_package[0] if in_package else 0)

    def message(self, full_name: str) -> MessageType:
        """A type by its full name with the leading dot, as descriptors name them."""
        found = self._types.get(full_name)
        if found is not None:
            return found
        while full_name not in self._raw:
            parent = full_name.rpartition(".")[0]
            if parent in self._raw and parent not in self._types:
                self.message(parent)  # registers its nested types
            elif self._pending:
                self.add_file(self._next_file(full_name))
            else:
                raise KeyError(f"no message type {full_name} in the loaded descriptors")
        raw, proto3 = self._raw[full_name]
        _, field_data, nested, map_entry, oneofs = _message_descriptor(raw)
        fields = [_field_descriptor(f, oneofs, proto3) for f in field_data]
        found = self._types[full_name] = MessageType(self, full_name.lstrip("."), fields, map_entry)
        self._index(full_name, nested, proto3)
        return found

    def top_level(self, file_name: str, name: str):
        """What a generated module of `file_name` names `name`: a message's class, or an enum
        value's number (protoc puts a file's enum values at its module's top level); None
        for anything else (an enum's wrapper, a descriptor)."""
        file = self.add_file(file_name)
        full_name = f".{file.package}.{name}" if file.package else f".{name}"
        if full_name in self._raw or full_name in self._types:
            return self.message(full_name).cls
        for enum in file.enum_type:
            for n, _, value in _fields(enum):
                if n == 2:  # EnumValueDescriptorProto: name = 1, number = 2
                    fields = {k: v for k, _, v in _fields(value)}
                    if fields.get(1, b"").decode() == name:
                        return _scalar(INT32, fields.get(2, 0))
        return None

    def method(self, service: str, name: str) -> tuple[MessageType, MessageType, bool, bool]:
        """(request type, reply type, client streaming, server streaming) of service.name."""
        package, _, short = service.rpartition(".")
        for file in list(self._files.values()):
            if file.package != package:
                continue
            for svc in file.service:
                if _name_of(svc) == short:
                    for m in svc.method:
                        if _name_of(m) == name:
                            return (self.message(m.input_type), self.message(m.output_type),
                                    m.client_streaming, m.server_streaming)
        raise KeyError(f"{service} has no method {name}")


def _name_of(descriptor: Message | bytes) -> str:
    """A descriptor's name (field 1 of each of them) without reading the rest of it: protoc
    writes field 1 first."""
    data = descriptor if isinstance(descriptor, bytes) else descriptor._data
    if data and data[0] == 0x0A:
        size, pos = _varint(data, 1)
        return data[pos:pos + size].decode()
    return descriptor.name if isinstance(descriptor, Message) else _message_descriptor(data)[0]


def serialized(source: bytes) -> bytes:
    """The serialized FileDescriptorProto a generated module's source adds to the pool: protoc
    writes it as one bytes literal, on the call's line or (googleapis' files) the next."""
    start = source.index(b"AddSerializedFile(") + len(b"AddSerializedFile(")
    while source[start] in b" \n":
        start += 1
    if source[start:start + 2] != b"b'":
        raise ValueError("the serialized descriptor is not one bytes literal")
    start += 2
    end = start
    while True:
        end = source.index(b"'", end)
        escapes = len(source[start:end]) - len(source[start:end].rstrip(b"\\"))
        if escapes % 2 == 0:
            break
        end += 1
    return codecs.escape_decode(source[start:end])[0]


def serialized_file(proto: str) -> bytes:
    """The serialized FileDescriptorProto of a .proto file ("berth/engine/v1/engine.proto"),
    read from its generated module's source without running it."""
    name = proto.removesuffix(".proto").replace("/", ".") + "_pb2"
    loader = getattr(getattr(sys.modules.get(name), "__spec__", None), "loader", None)
    if isinstance(getattr(loader, "source", None), bytes):  # imported lazily (messages): source read then
        return serialized(loader.source)
    package = name.rpartition(".")[0]
    __import__(package)
    # importlib.machinery's PathFinder, without importing importlib (see berth_cli.messages).
    finder = sys.modules["_frozen_importlib_external"].PathFinder
    spec = finder.find_spec(name, sys.modules[package].__path__)
    if spec is None or not (spec.origin or "").endswith(".py"):
        raise ImportError(f"no generated module {name} for {proto}")
    with open(spec.origin, "rb") as f:
        return serialized(f.read())


_engine: Schema | None = None


def engine() -> Schema:
    """The schema of engine.proto and what it imports, read from the generated modules."""
    global _engine
    if _engine is None:
        _engine = Schema(serialized_file)
        _engine.add_file(ENGINE_FILE)
    return _engine


class Request:
    """A request encoded at once (so a bad value fails before anything is sent): what the
    transport asks of a message (SerializeToString)."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def SerializeToString(self) -> bytes:  # noqa: N802 — protobuf's name, for the transport
        return self._data


def request(name: str, **values) -> Request:
    """An engine.proto request with these fields; proto3's defaults (and an unset optional)
    are not sent, as protobuf does not send them."""
    return Request(name, encode(engine().message(_ENGINE_PACKAGE + name), values))


def message(name: str) -> type[Message]:
    """The class of an engine.proto message (its FromString decodes a reply)."""
    return engine().message(_ENGINE_PACKAGE + name).cls


def error_info(details: bytes, domain: str) -> tuple[str, dict[str, str]] | None:
    """(reason, metadata) of the google.rpc.ErrorInfo of `domain` in a status's details
    (grpc-status-details-bin); None when there is none."""
    schema = Schema(serialized_file)
    schema.add_file("google/rpc/status.proto")
    schema.add_file("google/rpc/error_details.proto")
    try:
        for detail in schema.message(".google.rpc.Status").cls(details).details:
            if detail.type_url.rpartition("/")[2] == "google.rpc.ErrorInfo":
                info = schema.message(".google.rpc.ErrorInfo").cls(detail.value)
                if info.domain == domain:
                    return info.reason, dict(info.metadata)
    except DecodeError:
        return None
    return None
