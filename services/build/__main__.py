from services.build.api import build
from services.common.process import run_service

if __name__ == "__main__":
    run_service("build", build)
