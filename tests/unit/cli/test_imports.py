"""The CLI is a client: it imports nothing from services/ (nor grpcio), and its modules
import each other without a circle."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

CLI = pathlib.Path(__file__).resolve().parents[3] / "clients" / "cli" / "berth_cli"
MODULES = sorted(p.stem for p in CLI.glob("*.py") if p.stem not in ("__init__", "__main__"))


@pytest.mark.parametrize("module", MODULES)
def test_no_module_of_the_cli_imports_services_or_grpcio(module):
    # Everything a verb may load: the module, its functions' imports (all verbs' modules are
    # imported by commands), and berth_docker's modules the verbs use.
    code = (f"import sys, berth_cli.{module}, berth_cli.commands, berth_cli.cli\n"
            "import berth_docker.api, berth_docker.keyvalues, berth_docker.units\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('services', 'grpc'))\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _imports(path: pathlib.Path) -> set[str]:
    """berth_cli modules imported anywhere in a file, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "berth_cli":
                found.update(a.name for a in node.names)
            elif node.module.startswith("berth_cli."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("berth_cli."))
    return found & set(MODULES)


def test_no_import_circle_in_the_cli():
    graph = {m: _imports(CLI / f"{m}.py") for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, path + (module,))
        done.add(module)

    for module in MODULES:
        visit(module, ())


def test_no_file_named_depth():
    assert "depth" not in MODULES
