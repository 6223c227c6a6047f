"""docker's everyday habits that need no engine: --version, completion scripts from the
parser, user errors without tracebacks, silence on a broken pipe, what a verb imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

BERTH = [sys.executable, "-c", "import berth_cli.__main__"]
NOWHERE = "unix:///tmp/bt-no-such-engine.sock"


def berth(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*BERTH, "-H", NOWHERE, *args], capture_output=True, text=True, timeout=60, **kw)


def test_version():
    for flag in ("--version", "-v"):
        out = berth(flag)
        assert out.returncode == 0 and out.stdout.startswith("berth version "), out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_come_from_the_parser(shell):
    out = berth("completion", shell)
    assert out.returncode == 0, out.stderr
    flag = (lambda f: f"-l {f[2:]}") if shell == "fish" else (lambda f: f)
    for word in ("ps", "run", "inspect", flag("--format"), flag("--env-file"), flag("--restart"),
                 "network", "prune"):
        assert word in out.stdout, f"{word} missing from the {shell} script"
    # Flags refused by name are not offered.
    assert "use-api-socket" not in out.stdout


def test_bash_completion_is_valid_bash_and_completes(tmp_path):
    script = tmp_path / "berth.bash"
    script.write_text(berth("completion", "bash").stdout)
    probe = (f"source {script}; COMP_WORDS=(berth network i); COMP_CWORD=2; _berth; "
             f"echo ${{COMPREPLY[@]}}; COMP_WORDS=(berth ps --fo); COMP_CWORD=2; _berth; echo ${{COMPREPLY[@]}}")
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["inspect", "--format"]


@pytest.mark.parametrize("args,status,message", [
    (("import", "/nonexistent.tar"), 1, "open /nonexistent.tar: no such file or directory"),
    (("load", "-i", "/nonexistent.tar"), 1, "open /nonexistent.tar: no such file or directory"),
    (("run", "--env-file", "/nonexistent", "busybox"), 125, "/nonexistent"),
    (("run", "--stop-signal", "BOGUS", "busybox"), 125, "invalid signal: BOGUS"),
    (("run", "--cap-add", "ALL", "busybox"), 125, None),
    (("run", "--pull", "sometimes", "busybox"), 125, '--pull: invalid pull option: "sometimes"'),
    (("run", "-p", "notaport", "busybox"), 125, None),
    (("nosuchverb",), 125, "invalid choice"),
    (("ps", "--bogus"), 125, "unrecognized arguments: --bogus"),
    (("ps",), 1, "Cannot connect to the berth daemon"),
    (("inspect", ""), 1, "invalid container name or ID: value is empty"),
    (("logs", "--tail", "x", "c"), 125, "--tail"),
])
def test_user_errors_get_a_message_and_docker_status_never_a_traceback(args, status, message):
    out = berth(*args)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == status, out
    assert out.stderr.strip()
    if message:
        assert message in out.stderr


def test_silent_on_a_broken_pipe():
    # The reader leaves after one line, as `berth completion fish | head -1` does.
    p = subprocess.Popen([*BERTH, "completion", "fish"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert err == ""


def test_ps_loads_no_heavy_machinery():
    """What `berth ps` imports: not h2, not protobuf's pure-Python descriptors, not shutil."""
    code = ("from berth_cli import messages; messages.install()\n"
            "from berth_cli import cli, commands, transport\n"
            "ns = cli.parse(['ps'])\n"
            "from berth.engine.v1 import engine_pb2\n"
            "engine_pb2.ListContainersResponse.FromString(engine_pb2.ListContainersResponse("
            "containers=[engine_pb2.ContainerInfo(id='x')]).SerializeToString())\n"
            "import sys\n"
            "heavy = ('h2', 'hyperframe', 'hpack', 'google.protobuf.descriptor_pool',\n"
            "         'google.protobuf.internal.python_message', 'shutil', 'grpc', 'logging')\n"
            "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in ('h2', 'grpc')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
