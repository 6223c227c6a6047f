"""The generated message modules (`*_pb2`), loaded the cheap way for a process that lives
for one call.

A generated module, imported as protoc wrote it, loads protobuf's pure-Python descriptor
machinery (descriptor_pool, python_message, text_format: ~40 ms even on the upb backend)
and builds a class for every message of the file (engine.proto has hundreds) before the
verb sends its one request. With `install()`, importing a generated module costs nothing:
its serialized descriptor is added to upb's pool when the module is first used, and each
class, enum or constant is made when first asked for. The classes are upb's own (upb makes one class per descriptor), so messages
mix freely with code that imported the modules the usual way.

The serialized descriptor is read from the generated file itself, so there is nothing
extra to keep in step with `make protos`. Anything unexpected (not the upb backend, a
generated file of another shape) leaves the import to Python's usual machinery.
"""

from __future__ import annotations

import os
import sys

# importlib.machinery's classes, from the frozen modules the interpreter itself imports with:
# importing the importlib package (and with it warnings) costs a command a millisecond.
ModuleSpec = sys.modules["_frozen_importlib"].ModuleSpec
PathFinder = sys.modules["_frozen_importlib_external"].PathFinder


def _import(name: str):
    """importlib.import_module for an absolute name."""
    __import__(name)
    return sys.modules[name]

_MARK = b"AddSerializedFile(b'"
_PACKAGES = ("berth.", "google.protobuf.")


def install() -> None:
    """Load generated modules lazily from now on (in this process: call it from main).

    Without upb (another backend asked for, or none installed) the first use of a module
    finds out, and loads it as protoc meant (_register)."""
    if os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "upb") != "upb":
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def message_class(descriptor):
    """The class of a message descriptor from upb's pool (the same one the generated module has)."""
    cls = getattr(descriptor, "_concrete_class", None)
    if cls is not None:
        return cls
    from google._upb import _message
    from google.protobuf import message
    module = descriptor.file.name.removesuffix(".proto").replace("/", ".") + "_pb2"
    return _message.MessageMeta(descriptor.name, (message.Message,),
                                {"DESCRIPTOR": descriptor, "__module__": module})


class _Finder:
    """Claims `*_pb2` modules of berth's and protobuf's packages for _Loader."""

    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        if name == WELL_KNOWN_TYPES:
            spec = PathFinder.find_spec(name, path)
            if spec is None or not (spec.origin or "").endswith(".py"):
                return None
            ours = ModuleSpec(name, _WellKnownTypesLoader(spec), origin=spec.origin)
            ours.has_location, ours.cached = True, spec.cached
            return ours
        if not name.endswith("_pb2") or not name.startswith(_PACKAGES):
            return None
        spec = PathFinder.find_spec(name, path)
        if spec is None or not (spec.origin or "").endswith(".py"):
            return None
        try:
            with open(spec.origin, "rb") as f:
                source = f.read()
        except OSError:
            return None
        if _MARK not in source:
            return None
        return ModuleSpec(name, _Loader(source), origin=spec.origin)


_wire_classes = False
_wire_names: dict[tuple[str, str], object] = {}


class wire_classes:  # noqa: N801 — used as a `with` statement, like a function
    """While in effect, the generated modules' messages not yet used are berth_cli.wire's
    classes, not upb's: `berth run` and `create` build their ContainerConfig with them (with
    berth_docker's helpers, which build engine_pb2 messages) and never load upb. The names
    handed out meanwhile are not kept in the modules, so code that runs later gets protobuf's;
    the two kinds mix, as each sends its bytes (SerializeToString)."""

    def __enter__(self):
        global _wire_classes
        self._before, _wire_classes = _wire_classes, True
        return self

    def __exit__(self, *exc) -> None:
        global _wire_classes
        _wire_classes = self._before


def _wire_name(module, name: str):
    key = (module.__name__, name)
    if key not in _wire_names:
        from berth_cli import wire
        proto = module.__name__.removesuffix("_pb2").replace(".", "/") + ".proto"
        try:
            _wire_names[key] = wire.engine().top_level(proto, name)
        except (KeyError, ImportError, ValueError):
            _wire_names[key] = None
    return _wire_names[key]


class _LazyModule(type(sys)):
    """A generated module whose descriptor is added to the pool, and whose names are made,
    on first use: importing one (commands.py imports engine_pb2) costs nothing, and a verb
    that sends no generated message never loads upb at all."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if _wire_classes and name != "DESCRIPTOR":
            value = _wire_name(self, name)
            if value is not None:
                return value
        file = self.__dict__.get("DESCRIPTOR")
        if file is None:
            file = _register(self)
            if name == "DESCRIPTOR":
                return file
        value = _lookup(file, name)
        setattr(self, name, value)
        return value


def _lookup(file, name: str):
    message = file.message_types_by_name.get(name)
    if message is not None:
        return message_class(message)
    enum = file.enum_types_by_name.get(name)
    if enum is not None:
        from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
        return EnumTypeWrapper(enum)
    for enum in file.enum_types_by_name.values():
        value = enum.values_by_name.get(name)
        if value is not None:
            return value.number
    if name.startswith("_"):
        # The descriptors protoc names _FOO (messages, enums, services).
        for table in (file.message_types_by_name, file.enum_types_by_name, file.services_by_name):
            for key, descriptor in table.items():
                if "_" + key.upper() == name:
                    return descriptor
    raise AttributeError(f"module {file.name!r} has no attribute {name!r}")


class _Loader:
    def __init__(self, source: bytes):
        self.source = source

    def create_module(self, spec: ModuleSpec):
        return _LazyModule(spec.name)

    def exec_module(self, module) -> None:
        # A berth module waits for the first name asked of it (_register). protobuf's own
        # (timestamp, any, ...) are registered at once: generated modules loaded the usual
        # way (google.rpc's status) import them and expect them in the pool.
        if module.__name__.startswith("google.protobuf."):
            _register(module)


def _register(module):
    """Add the module's file (after the files it imports) to upb's pool; its DESCRIPTOR."""
    source = module.__spec__.loader.source
    try:
        from berth_cli import wire
        serialized = wire.serialized(source)
        # The files this one imports come first: the pool needs them to resolve it.
        for line in source.splitlines():
            if line.startswith(b"from ") and b"_pb2 as " in line:
                words = line.split()
                _import(f"{words[1].decode()}.{words[3].decode()}").DESCRIPTOR  # noqa: B018
        from google._upb import _message
        module.DESCRIPTOR = _message.default_pool.AddSerializedFile(serialized)
    except Exception:  # noqa: BLE001 — any surprise: load it as protoc meant
        module.__class__ = type(sys)
        exec(compile(source, module.__spec__.origin, "exec"), module.__dict__)  # noqa: S102
    return module.DESCRIPTOR


# -- protobuf's well-known types ------------------------------------------------------------

WELL_KNOWN_TYPES = "google.protobuf.internal.well_known_types"


class _WellKnownTypesLoader:
    """protobuf's well_known_types (the Timestamp, Duration, ... mixins), which upb imports
    when it makes its first message class, run without what it needs only in annotations
    and function bodies: `from typing import Union` (for return annotations) and calendar
    (for Timestamp.FromDatetime) would import typing, calendar, locale, re and enum, ~half
    the cost of the first message. While protobuf's own module (its cached bytecode) runs,
    `typing` answers names with stand-ins that annotations can be made of, and calendar is
    imported at its first use. tests/unit/cli/test_messages.py checks that the installed
    protobuf uses its typing names in annotations only."""

    def __init__(self, spec: ModuleSpec):
        self._spec = spec

    def create_module(self, spec: ModuleSpec):
        return None

    def exec_module(self, module) -> None:
        if "calendar" not in sys.modules:
            sys.modules["calendar"] = _deferred("calendar")
        standin = "typing" not in sys.modules
        if standin:
            sys.modules["typing"] = _AnnotationNames(module.__dict__)
        try:
            self._spec.loader.exec_module(module)
        finally:
            if standin and isinstance(sys.modules.get("typing"), _AnnotationNames):
                del sys.modules["typing"]


class _AnnotationNames(type(sys)):
    """Stands in for typing while a module imports names for its annotations from it; any
    other module that asks it for a name (one imported meanwhile) gets typing's own."""

    def __init__(self, for_globals: dict):
        super().__init__("typing")
        self._for = for_globals

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if sys._getframe(1).f_globals is self._for:
            return _Unevaluated(name)
        if sys.modules.get("typing") is self:
            del sys.modules["typing"]
        return getattr(_import("typing"), name)


class _Unevaluated:
    """A typing name in an annotation: `Union[a, b]` and `a | b` make more of the same."""

    def __init__(self, name: str):
        self._name = name

    def __getitem__(self, item) -> _Unevaluated:
        return self

    def __or__(self, other) -> _Unevaluated:
        return self

    __ror__ = __or__

    def __repr__(self) -> str:
        return f"typing.{self._name}"


class _Deferred(type(sys)):
    """A module of the standard library, executed when first used."""

    def __getattr__(self, name: str):
        spec = self.__dict__["__spec__"]
        self.__class__ = type(sys)
        spec.loader.exec_module(self)
        return getattr(self, name)


def _deferred(name: str):
    spec = PathFinder.find_spec(name)
    if spec is None or spec.loader is None:
        return _import(name)
    module = _Deferred(name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    module.__package__ = ""
    return module
