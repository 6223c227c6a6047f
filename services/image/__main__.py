from services.common.process import run_service
from services.image.api import build

run_service("image", build)
