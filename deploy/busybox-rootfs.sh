#!/usr/bin/env bash
# busybox-rootfs.sh OUT.tar: a small root filesystem for `berth import`, made
# from Debian's busybox-static (the binary, its applets, /etc/passwd and
# /etc/group); nothing is downloaded. The demo and the tests use the same one.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
out=$(realpath -m "$1")
cd "$(dirname "$0")/.."
exec .venv/bin/python - "$out" <<'PY'
import sys, tempfile
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes
with tempfile.TemporaryDirectory() as d:
    data = rootfs_tar_bytes(make_busybox_rootfs(d))
with open(sys.argv[1], "wb") as f:
    f.write(data)
PY
