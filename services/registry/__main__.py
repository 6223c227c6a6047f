"""berth-registry: serve the OCI distribution API from a directory, or collect its garbage.

    berth-registry --listen 127.0.0.1:5000 --root /var/lib/berth-registry
    berth-registry --htpasswd users.htpasswd --tls-cert cert.pem --tls-key key.pem ...
    berth-registry garbage-collect --root /var/lib/berth-registry [--dry-run]
    berth-registry htpasswd USER PASSWORD      # prints an htpasswd line (bcrypt)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys

import structlog
from aiohttp import web

from services.common import logging as logging_mod
from services.registry.api import RegistryApp
from services.registry.auth import Htpasswd, hash_password
from services.registry.service import garbage_collect
from services.registry.storage import Storage

log = structlog.get_logger("services.registry")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berth-registry", description="berth's private image registry")
    p.add_argument("command", nargs="?", default="serve", choices=("serve", "garbage-collect", "htpasswd"))
    p.add_argument("args", nargs="*", help="htpasswd: USER PASSWORD")
    p.add_argument("--listen", default="127.0.0.1:5000", help="host:port to listen on")
    p.add_argument("--root", default="/var/lib/berth-registry", help="storage directory")
    p.add_argument("--htpasswd", default="", help="require basic auth with these users (bcrypt)")
    p.add_argument("--tls-cert", default="")
    p.add_argument("--tls-key", default="")
    p.add_argument("--dry-run", action="store_true", help="garbage-collect: only report")
    p.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))
    return p


async def serve(ns) -> None:
    host, _, port = ns.listen.rpartition(":")
    htpasswd = Htpasswd(ns.htpasswd) if ns.htpasswd else None
    ssl_ctx = None
    if ns.tls_cert:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(ns.tls_cert, ns.tls_key or None)
    runner = web.AppRunner(RegistryApp(Storage(ns.root), htpasswd).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port), ssl_context=ssl_ctx)
    await site.start()
    log.info("registry_serving", listen=ns.listen, root=ns.root, tls=bool(ssl_ctx), auth=bool(htpasswd))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv=None) -> int:
    ns = _parser().parse_args(argv)
    logging_mod.setup("registry", ns.log_format)
    if ns.command == "htpasswd":
        if len(ns.args) != 2:
            print("usage: berth-registry htpasswd USER PASSWORD", file=sys.stderr)
            return 2
        print(f"{ns.args[0]}:{hash_password(ns.args[1])}")
        return 0
    if ns.command == "garbage-collect":
        result = garbage_collect(Storage(ns.root), ns.dry_run)
        verb = "would delete" if ns.dry_run else "deleted"
        for digest in result.deleted:
            print(f"{verb} blob {digest}")
        print(f"{len(result.deleted)} blobs {verb}, {result.kept} kept, {result.uploads} stale uploads")
        return 0
    asyncio.run(serve(ns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
