"""docker's everyday CLI habits against a real berthd: templates on every listing verb,
inspect -f, broken pipes, paused status, stats with no names, --cidfile, --pull never."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.support.engine import PYTHON, REPO

LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _running(engine, image: str) -> str:
    name = _name("habit")
    engine.cli("run", "-d", "--name", name, "-l", "role=web", image, *LOOP, check=True)
    return name


def test_templates_on_ps_images_volumes_networks_and_inspect(engine, busybox_image):
    name = _running(engine, busybox_image)
    try:
        out = engine.cli("ps", "-f", f"name={name}", "--format", '{{.Names}}|{{.Label "role"}}|{{.State}}',
                         check=True).stdout
        assert out == f"{name}|web|running\n"
        table = engine.cli("ps", "-f", f"name={name}", "--format", "table {{.Names}}\t{{.Image}}",
                           check=True).stdout.splitlines()
        assert table[0].split() == ["NAMES", "IMAGE"] and table[1].split() == [name, busybox_image]
        row = json.loads(engine.cli("ps", "-f", f"name={name}", "--format", "{{json .}}", check=True).stdout)
        assert row["Names"] == name and "role=web" in row["Labels"]
        assert engine.cli("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.count("busybox:latest")
        assert "bridge" in engine.cli("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
        out = engine.cli("inspect", "-f", "{{.State.Status}} {{index .Config.Labels \"role\"}} {{.Name}}", name,
                         check=True).stdout
        assert out == f"running web /{name}\n"
        bad = engine.cli("inspect", "-f", "{{.NoSuchField}}", name)
        assert bad.returncode == 1 and 'map has no entry for key "NoSuchField"' in bad.stderr
        assert "Traceback" not in bad.stderr
        bad = engine.cli("ps", "--format", "{{.Names")
        assert bad.returncode == 1 and "failed to parse template" in bad.stderr
    finally:
        engine.cli("rm", "-f", name)


def test_paused_shows_up_paused_and_stats_without_names_shows_it(engine, busybox_image):
    name = _running(engine, busybox_image)
    try:
        stats = engine.cli("stats", "--no-stream", check=True).stdout
        assert name in stats
        engine.cli("pause", name, check=True)
        status = engine.cli("ps", "-f", f"name={name}", "--format", "{{.Status}}", check=True).stdout
        assert status.startswith("Up ") and status.rstrip().endswith("(Paused)")
        engine.cli("unpause", name, check=True)
    finally:
        engine.cli("rm", "-f", name)


def test_inspect_into_a_closed_pipe_is_silent(engine, busybox_image):
    name = _running(engine, busybox_image)
    try:
        cmd = [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", "inspect", *[name] * 40]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert p.stdout.readline() == b"[\n"
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == 0 and err == ""
    finally:
        engine.cli("rm", "-f", name)


def test_cidfile_and_pull_never(engine, busybox_image, tmp_path):
    cidfile = tmp_path / "cid"
    cid = engine.cli("create", "--cidfile", str(cidfile), busybox_image, "true", check=True).stdout.strip()
    try:
        assert cidfile.read_text() == cid
        again = engine.cli("create", "--cidfile", str(cidfile), busybox_image, "true")
        assert again.returncode == 125 and "Container ID file found" in again.stderr
    finally:
        engine.cli("rm", "-f", cid)
    missing = engine.cli("run", "--rm", "--pull", "never", "no-such-image-here:1", "true")
    assert missing.returncode == 125 and "No such image" in missing.stderr
    assert "Unable to find image" not in missing.stderr
