from services.common.process import run_service
from services.image.api import build

if __name__ == "__main__":
    run_service("image", build)
