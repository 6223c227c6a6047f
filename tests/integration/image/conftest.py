"""An ImageService on a throwaway state directory, closed after the test."""

import pytest

from services.image.service import ImageService


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "image")


@pytest.fixture
def service(state_dir):
    svc = ImageService(state_dir)
    try:
        yield svc
    finally:
        svc.close()
