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
