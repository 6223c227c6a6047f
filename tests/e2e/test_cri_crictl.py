"""The crictl walkthrough: a pod of two containers sharing its network, exec (both kinds),
logs, port-forward, stop and remove, with nothing left behind.

crictl is cri-tools' client (not built here): the test runs when it is on PATH
(or named by $CRICTL) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.request

import pytest

from tests.e2e.test_cri import IMAGE, rt, wait_for  # noqa: F401 - rt loads the images
from tests.support.registries import free_port

CRICTL = os.environ.get("CRICTL") or shutil.which("crictl")
# Pod addresses and the forwarded port are local: no proxy in between.
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
pytestmark = pytest.mark.skipif(not CRICTL, reason="crictl is not installed")


def test_crictl_walkthrough(engine, rt, tmp_path):  # noqa: F811
    endpoint = f"unix://{engine.socket('cri')}"

    def crictl(*args: str, input: str | None = None, timeout: float = 60) -> str:
        done = subprocess.run([CRICTL, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
                               "--timeout", "60s", *args], capture_output=True, text=True, input=input,
                              timeout=timeout, env=NO_PROXY_ENV)
        assert done.returncode == 0, f"crictl {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    logs = tempfile.mkdtemp(prefix="/tmp/bt-crictl-")
    pod = {"metadata": {"name": "walk", "namespace": "crictl", "uid": f"walk-{os.getpid()}", "attempt": 0},
           "hostname": "walk-host", "log_directory": logs, "linux": {}}
    web = {"metadata": {"name": "web"}, "image": {"image": IMAGE}, "log_path": "web.log", "linux": {},
           "command": ["sh", "-c", "mkdir -p /www && echo walked > /www/index.html && echo web-started && "
                                   "exec httpd -f -p 8080 -h /www"]}
    side = {"metadata": {"name": "side"}, "image": {"image": IMAGE}, "log_path": "side.log", "linux": {},
            "command": ["sleep", "3600"]}
    files = {}
    for name, doc in (("pod", pod), ("web", web), ("side", side)):
        files[name] = str(tmp_path / f"{name}.json")
        with open(files[name], "w") as f:
            json.dump(doc, f)
    try:
        assert IMAGE.split(":")[0] in crictl("images")
        pid = crictl("runp", files["pod"]).strip()
        ids = [crictl("create", pid, files[c], files["pod"]).strip() for c in ("web", "side")]
        for cid in ids:
            crictl("start", cid)
        assert {c for c in crictl("ps", "-q", "--pod", pid).split()} == set(ids)
        # The side container reaches the web one on the pod's shared loopback.
        fetch = [CRICTL, "--runtime-endpoint", endpoint, "exec", "-s", ids[1], "wget", "-qO-",
                 "http://127.0.0.1:8080/"]
        wait_for(lambda: "walked" in subprocess.run(fetch, capture_output=True, text=True, timeout=60).stdout,
                 what="the web container from its neighbour")
        assert crictl("exec", ids[1], "hostname").strip() == "walk-host"  # streaming exec (SPDY)
        wait_for(lambda: "web-started" in crictl("logs", ids[0]), what="the web container's log")
        port = free_port()
        forward = subprocess.Popen(
            [CRICTL, "--runtime-endpoint", endpoint, "port-forward", pid, f"{port}:8080"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NO_PROXY_ENV)
        try:
            def page() -> str:
                try:
                    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                            f"http://127.0.0.1:{port}/", timeout=5) as reply:
                        return reply.read().decode()
                except (OSError, socket.timeout):
                    return ""
            assert wait_for(page, what="the pod through crictl port-forward") == "walked\n"
        finally:
            forward.terminate()
            forward.wait(10)
        assert json.loads(crictl("inspectp", pid))["status"]["network"]["ip"]
        crictl("stop", *ids)
        crictl("rm", *ids)
        crictl("stopp", pid)
        crictl("rmp", pid)
        assert not set(ids) & set(crictl("ps", "-a", "-q").split())
        assert pid not in crictl("pods", "-q").split()
        node = engine.cli("ps", "-a", "-q", "--no-trunc", check=True).stdout.split()
        assert not set(ids + [pid]) & set(node)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
