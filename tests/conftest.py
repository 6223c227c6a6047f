"""Fixtures shared by every test tier.

`engine` is one berthd for the whole run (cheap for tests that only add and
remove their own things); `fresh_engine` is a berthd of its own for tests that
restart or kill parts of it. Both are stopped with every trace removed.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.support.engine import Engine
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes

IS_ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.path)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.root)
        if f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.root)
        if not IS_ROOT and item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root (uid 0)"))


@pytest.fixture(scope="session")
def engine():
    eng = Engine().start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def fresh_engine():
    eng = Engine().start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture(scope="session")
def busybox_image(engine):
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
        tar = rootfs_tar_bytes(make_busybox_rootfs(root))
    engine.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
    return "busybox:latest"
