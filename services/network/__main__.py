from services.common.process import run_service
from services.network.api import build

if __name__ == "__main__":
    run_service("network", build)
