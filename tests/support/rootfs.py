"""Test root filesystems made from Debian's busybox-static: nothing from outside."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "ls", "sleep", "true", "false", "env", "id", "hostname",
           "ps", "mkdir", "rm", "touch", "head", "tail", "dd", "wc", "grep", "printf",
           "kill", "mount", "stat", "test", "yes", "httpd", "wget", "pwd", "top", "seq", "date")


def make_busybox_rootfs(root: str) -> str:
    """Fill `root` with a minimal busybox system: /bin/busybox, applet links, /etc/passwd."""
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app", "var/www"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin/busybox"))
    for applet in APPLETS:
        link = os.path.join(root, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\napp:x:1000:\nnogroup:x:65534:\n")
    os.chown(os.path.join(root, "home/app"), 1000, 1000)
    return root


def rootfs_tar_bytes(root: str) -> bytes:
    """The directory as an uncompressed tar (numeric owners, relative names)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(os.path.join(root, entry), arcname=entry)
    return buf.getvalue()


def busybox_available() -> bool:
    return os.path.exists(BUSYBOX) and subprocess.run(
        [BUSYBOX, "true"], capture_output=True).returncode == 0
