"""One health probe: exit 0 when a service answers grpc.health.v1 SERVING.

Runs in its own short-lived process (forked by berthd, or `python -m
services.berthd.probe ADDRESS [SECONDS]`, as the systemd units do) so that
berthd itself never starts gRPC.
"""

from __future__ import annotations

import sys
import time

POLL = 0.05
BUDGET = 2.0


def check(address: str, budget: float = BUDGET) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + budget
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return 0
            except grpc.RpcError:
                pass
            time.sleep(POLL)
    return 1


if __name__ == "__main__":
    sys.exit(check(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else BUDGET))
