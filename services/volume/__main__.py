from services.common.process import run_service
from services.volume.api import build

if __name__ == "__main__":
    run_service("volume", build)
