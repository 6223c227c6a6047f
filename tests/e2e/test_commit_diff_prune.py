"""rename, commit, diff, container prune, system df and system prune through the CLI."""

from __future__ import annotations

import json
import time
import uuid

from tests.e2e.test_restart_policies import _events, _inspect, fresh_busybox  # noqa: F401 - fixture


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_rename_and_taken_name(engine, busybox_image):
    a, b, c = _name("ra"), _name("rb"), _name("rc")
    since = time.time()
    engine.cli("create", "--name", a, busybox_image, "true", check=True)
    engine.cli("create", "--name", b, busybox_image, "true", check=True)
    try:
        taken = engine.cli("rename", a, b)
        assert taken.returncode == 1 and f'"/{b}" is already in use' in taken.stderr
        bad = engine.cli("rename", a, "no/slash")
        assert bad.returncode == 1 and "Invalid container name" in bad.stderr
        assert _inspect(engine, a)["Name"] == f"/{a}"
        cid = _inspect(engine, a)["Id"]
        engine.cli("rename", a, c, check=True)
        assert _inspect(engine, c)["Id"] == cid
        assert engine.cli("inspect", "--type", "container", a).returncode == 1
        actions = _events(engine, since, c)
        assert actions[-1] == "rename"
    finally:
        engine.cli("rm", "-f", a, b, c)


def test_diff_and_commit_then_run(engine, busybox_image):
    name, ref = _name("src"), f"committed-{uuid.uuid4().hex[:8]}:v1"
    engine.cli("run", "--name", name, busybox_image, "sh", "-c",
               "echo hello > /hello.txt && mkdir -p /data && echo x > /data/x && rm /bin/true",
               check=True)
    try:
        diff = engine.cli("diff", name, check=True).stdout.splitlines()
        assert "A /hello.txt" in diff
        assert "A /data" in diff and "A /data/x" in diff
        assert "C /bin" in diff and "D /bin/true" in diff

        since = time.time()
        image_id = engine.cli("commit", "-m", "add hello", "-a", "tester", "-c", 'CMD ["cat", "/hello.txt"]',
                              "-c", "ENV GREETING=hi", name, ref, check=True).stdout.strip()
        assert image_id.startswith("sha256:")
        assert _events(engine, since, name) == ["commit"]
        image = json.loads(engine.cli("inspect", "--type", "image", ref, check=True).stdout)[0]
        assert image["Id"] == image_id
        assert image["Config"]["Cmd"] == ["cat", "/hello.txt"]
        assert "GREETING=hi" in image["Config"]["Env"]
        base = json.loads(engine.cli("inspect", "--type", "image", busybox_image, check=True).stdout)[0]
        assert len(image["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
        # The image service keeps what it was committed from, as docker's Parent.
        assert image["Parent"] == base["Id"] and base["Parent"] == ""

        out = engine.cli("run", "--rm", ref, check=True).stdout
        assert out == "hello\n"
        # The deletion is in the layer too (as a whiteout).
        gone = engine.cli("run", "--rm", ref, "sh", "-c", "test -e /bin/true && echo there || echo gone")
        assert gone.stdout == "gone\n"
        assert engine.cli("run", "--rm", ref, "sh", "-c", "echo $GREETING").stdout == "hi\n"
    finally:
        engine.cli("rm", "-f", name)
        engine.cli("rmi", ref)


def test_commit_of_unknown_container_and_bad_change(engine, busybox_image):
    missing = engine.cli("commit", "no-such-container-xyz")
    assert missing.returncode == 1 and "No such container" in missing.stderr
    name = _name("bc")
    engine.cli("create", "--name", name, busybox_image, "true", check=True)
    try:
        before = engine.cli("images", "-aq", check=True).stdout
        bad = engine.cli("commit", "-c", "FROM scratch", name)
        assert bad.returncode == 1 and "not a valid change command" in bad.stderr
        assert engine.cli("images", "-aq", check=True).stdout == before
    finally:
        engine.cli("rm", "-f", name)


def _df(eng) -> dict[str, dict]:
    out = eng.cli("system", "df", "--format", "json", check=True).stdout
    return {row["Type"]: row for row in map(json.loads, out.splitlines())}


def _total(df: dict[str, dict]) -> int:
    return sum(row["SizeBytes"] for row in df.values())


def test_container_prune_and_system_df_agree_with_prune(fresh_engine, fresh_busybox):
    eng = fresh_engine
    eng.cli("run", "-d", "--name", "running", fresh_busybox, "sleep", "300", check=True)
    # Two stopped containers with something in their writable layers and logs.
    eng.cli("run", "--name", "done1", fresh_busybox, "sh", "-c",
            "dd if=/dev/zero of=/blob bs=1k count=64 2>/dev/null; echo done1", check=True)
    eng.cli("run", "--name", "done2", fresh_busybox, "sh", "-c", "echo abc > /f; echo done2", check=True)
    # A dangling image: committed without a name.
    dangling = eng.cli("commit", "done1", check=True).stdout.strip()

    df = _df(eng)
    assert df["Containers"]["TotalCount"] == "3" and df["Containers"]["Active"] == "1"
    assert df["Containers"]["ReclaimableBytes"] >= 64 * 1024
    assert df["Images"]["TotalCount"] == "2" and df["Images"]["Active"] == "1"
    assert df["Images"]["ReclaimableBytes"] >= 64 * 1024
    assert df["Container logs"]["SizeBytes"] > 0
    verbose = eng.cli("system", "df", "-v", check=True).stdout
    assert "SHARED SIZE" in verbose and "done1" in verbose

    since = time.time()
    prune = eng.cli("system", "prune", "-f", check=True).stdout
    assert "Deleted Containers:" in prune and f"deleted: {dangling}" in prune
    reported = prune.strip().splitlines()[-1]
    assert reported.startswith("Total reclaimed space: ")
    after = _df(eng)
    freed = _total(df) - _total(after)
    assert freed >= 64 * 1024
    # What prune printed is what df stopped counting (printed rounded, as docker does).
    from berth_docker.units import human_size
    assert reported == f"Total reclaimed space: {human_size(freed)}"
    assert after["Containers"]["TotalCount"] == "1" and after["Containers"]["ReclaimableBytes"] == 0
    assert after["Images"]["TotalCount"] == "1"
    assert eng.cli("inspect", "--type", "container", "running", check=True).returncode == 0
    out = eng.cli("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--format", "json",
                  check=True).stdout
    actions = [(e["Type"], e["Action"]) for e in map(json.loads, out.splitlines())]
    assert ("container", "prune") in actions and ("image", "prune") in actions
    assert actions.index(("container", "prune")) < actions.index(("image", "prune"))

    # container prune with nothing stopped frees nothing; after a stop it frees that one.
    eng.cli("stop", "-t", "0", "running", check=True)
    out = eng.cli("container", "prune", "-f", check=True).stdout
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space" in out
    assert eng.cli("ps", "-aq", check=True).stdout == ""
    # -a now removes the unused busybox image too.
    out = eng.cli("system", "prune", "-a", "-f", check=True).stdout
    assert "untagged: busybox:latest" in out
    assert _df(eng)["Images"]["SizeBytes"] == 0
