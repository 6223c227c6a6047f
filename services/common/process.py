"""The entry point every service process goes through: config, logs, traces, serve."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from services.common import config as config_mod
from services.common import errors
from services.common import logging as logging_mod
from services.common import metrics, rpc, tracing

# build(config) -> (register, on_stop): constructs the service with its
# dependencies, and returns how to add its servicers and how to close it.
Builder = Callable[[config_mod.Config], Awaitable[tuple[rpc.Registrar, Callable[[], Any] | None]]]


def run_service(service: str, build: Builder) -> None:
    config = config_mod.load()
    logging_mod.setup(service, config.log_format, config.log_level)
    tracing.setup(service)
    metrics.setup(service)
    rpc.set_caller(service)

    async def main() -> None:
        register, on_stop = await build(config)
        await rpc.serve(service, config, register, on_stop=on_stop)

    try:
        asyncio.run(main())
    except errors.BerthError as exc:
        # A service that cannot start says why in one line (its supervisor retries it).
        structlog.get_logger(service).error("service_cannot_start", error=exc.message)
        raise SystemExit(1) from None
    finally:
        tracing.shutdown()
