"""The gateway's Prometheus endpoint: GET http://<metrics_address>/metrics.

One scrape covers the gateway and every node service it drives, wherever they run:
each answers berth.metrics.v1.MetricsService on the channel the gateway already holds
(mutual TLS over TCP), and the families are merged with a `service` label on every
sample. `berth_up{service=...}` is 1 for each service that answered, 0 for one that
did not (its metrics are then missing from that scrape, not stale).

Plain HTTP, as dockerd's --metrics-addr: it only reads counters. Bind it to loopback
or a private network.
"""

from __future__ import annotations

import asyncio

import grpc
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from berth.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from services.common import metrics

log = structlog.get_logger(__name__)

SCRAPE_TIMEOUT = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def merge(texts: dict[str, str | None]) -> bytes:
    """Prometheus text of several services as one exposition; None marks a service that did not answer."""
    families: dict[str, Metric] = {}
    up = Metric("berth_up", "Whether the service answered this scrape", "gauge")
    for service, text in texts.items():
        up.add_sample("berth_up", {"service": service}, 0.0 if text is None else 1.0)
        for family in text_string_to_metric_families(text or ""):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
            merged.samples += [s._replace(labels={**s.labels, "service": service}) for s in family.samples]
    families["berth_up"] = up

    class Merged:
        def collect(self):
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged())
    return generate_latest(registry)


class MetricsServer:
    def __init__(self, address: str, channels: dict[str, grpc.aio.Channel]):
        self._address = address
        self._stubs = {name: metrics_pb2_grpc.MetricsServiceStub(ch) for name, ch in channels.items()}
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self._address:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, _, port = self._address.removeprefix("http://").rpartition(":")
        await web.TCPSite(self._runner, host or "127.0.0.1", int(port)).start()
        log.info("metrics_started", address=self._address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _scrape(self, name: str, stub) -> str | None:
        try:
            reply = await stub.ScrapeMetrics(metrics_pb2.ScrapeMetricsRequest(), timeout=SCRAPE_TIMEOUT)
            return reply.text
        except grpc.aio.AioRpcError as err:
            log.warning("metrics_scrape_failed", service=name, code=err.code().name, error=err.details())
            return None

    async def _metrics(self, request: web.Request) -> web.Response:
        names = list(self._stubs)
        texts = await asyncio.gather(*(self._scrape(n, self._stubs[n]) for n in names))
        body = merge({"gateway": metrics.render(), **dict(zip(names, texts))})
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
