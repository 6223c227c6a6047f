"""berth_cli.messages: generated modules cost nothing until used, and then behave as
protoc's, beside modules loaded the usual way."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", "from berth_cli import messages\nmessages.install()\n" + code],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_a_generated_module_loads_no_protobuf():
    assert _run("import sys\nfrom berth.engine.v1 import engine_pb2\nfrom berth_cli import commands\n"
                "print(sorted(m for m in sys.modules if m.startswith('google')))") == "[]"


def test_a_status_loaded_the_usual_way_finds_protobufs_types_in_the_pool():
    # google.rpc's status_pb2 (not ours) imports any_pb2 and expects it registered.
    code = ("import berth_errors\nfrom berth.engine.v1 import engine_pb2\n"
            "details = berth_errors.status_details(berth_errors.NotFound('no such image', resource='image'), 5)\n"
            "print(berth_errors.error_info(details))\n"
            "print(engine_pb2.ContainerInfo(id='x').created.ToDatetime().year)\n")
    assert _run(code).splitlines() == ["('NOT_FOUND', {'resource': 'image'})", "1970"]


def test_protobufs_well_known_types_use_typing_in_annotations_only():
    # What messages._WellKnownTypesLoader relies on: under PEP 563 those names are never
    # evaluated, so the module may run with typing's stand-in.
    import ast
    import importlib.util

    from berth_cli import messages
    tree = ast.parse(open(importlib.util.find_spec(messages.WELL_KNOWN_TYPES).origin).read())
    names = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module == "typing" for a in node.names}
    assert not any(isinstance(node, ast.Import) and any(a.name == "typing" for a in node.names)
                   for node in ast.walk(tree))
    in_annotations = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations = [node.returns] + [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                                   args.vararg, args.kwarg) if a is not None]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if annotation is not None:
                in_annotations.update(id(n) for n in ast.walk(annotation))
    used = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in names and id(n) not in in_annotations]
    assert not used, f"typing names used at run time on lines {used}"


def test_the_well_known_types_work_and_typing_calendar_come_when_asked():
    code = ("import sys, datetime\nfrom berth.engine.v1 import engine_pb2\n"
            "t = engine_pb2.ContainerInfo(id='x').created\n"
            "print(sorted(m for m in ('typing', 're', 'enum', 'locale') if m in sys.modules))\n"
            "t.FromDatetime(datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc))\n"
            "print(t.ToJsonString(), t.ToDatetime().year)\n"
            "import typing\nprint(typing.Optional[int])\n")
    assert _run(code).splitlines() == ["[]", "2020-01-02T00:00:00Z 2020", "typing.Optional[int]"]
