"""Accept rules for berth's bridges in the host's iptables FORWARD chain, kept there.

Why: a packet is forwarded only if every base chain on the forward hook
accepts it. berth's own table accepts its bridges' traffic, but when dockerd
or ufw set the iptables FORWARD policy to DROP (`table ip filter`, chain
FORWARD, made by iptables-nft), that chain drops it anyway: an accept in one
base chain does not stop a drop in another (checked on this kernel; see
tests/e2e/test_network_firewalls.py). dockerd and netavark therefore add
accept rules for their own bridges to that chain; berth does the same:

    -i <bridge> -j ACCEPT                                   (egress, same network)
    -o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT   (replies)
    -o <bridge> -m conntrack --ctstate DNAT -j ACCEPT       (published ports)

each with the comment "berth:<table> <bridge>", inserted at the top. They
only lift the other chain's verdict: berth's own table still isolates
networks and keeps internal ones internal. The rules are written with the
iptables tools (the chain belongs to them: rules in another dialect would make
`iptables -L` refuse the table), into whichever backend holds a filter table
with a FORWARD chain: nftables (iptables-nft, Debian's default) and the
legacy x_tables. Nothing is written where no such chain exists.

Those tools replace the whole chain when they reload (`ufw reload`,
`iptables-restore`, dockerd's start), which removes berth's rules. A watcher
thread listens to the kernel's nftables change notifications and puts the
rules back after every change it sees; a check every POLL_SECONDS catches
legacy reloads, which send no notification (so a notification looks at
nftables only). A check after a notification is one in-process nftables
listing (the rules' shapes, since nft does not show iptables comments); the
tools run only when a rule is missing, and then sync by comment (`iptables
-S`), which also removes the rules of bridges berth no longer has. Every
change berth makes to its own networks syncs by comment.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import threading
from collections.abc import Callable

import structlog

from services.network.firewall import Nft

log = structlog.get_logger(__name__)

POLL_SECONDS = 30.0
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
# A burst of change notifications (an iptables-restore sends several) is handled once.
SETTLE_SECONDS = 0.1

_RULES = (("-i", None), ("-o", "RELATED,ESTABLISHED"), ("-o", "DNAT"))


def rule_args(bridge: str, direction: str, state: str | None, comment: str) -> list[str]:
    args = [direction, bridge]
    if state:
        args += ["-m", "conntrack", "--ctstate", state]
    return args + ["-m", "comment", "--comment", comment, "-j", "ACCEPT"]


class HostForward:
    """Keeps the accept rules of `bridges` in every FORWARD chain the iptables tools own."""

    def __init__(self, table: str, nft: Nft | None = None,
                 run: Callable[[list[str]], subprocess.CompletedProcess] | None = None):
        self.tag = f"berth:{table}"
        self._nft = nft or Nft()
        self._ctx = None
        self._run = run or _run
        self._bridges: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    # -- the rules ---------------------------------------------------------------

    def sync(self, bridges: list[str] | None = None, quick: bool = False,
             backends: tuple[str, ...] = ("nft", "legacy")) -> None:
        """Make every FORWARD chain hold exactly the rules of `bridges` (blocking). `quick`
        trusts the rules' shapes in an nftables chain when all are there; `backends` are
        the ones looked at."""
        with self._lock:
            if bridges is not None:
                # The same bridges as last time (a container came or went): only check.
                quick = quick or tuple(sorted(bridges)) == self._bridges
                self._bridges = tuple(sorted(bridges))
            for family, tool in (("ip", "iptables"), ("ip6", "ip6tables")):
                for backend in backends:
                    try:
                        self._sync_one(family, f"{tool}-{backend}", backend, quick)
                    except Exception as exc:  # noqa: BLE001 - logged; retried on the next change
                        log.warning("host_forward_sync_failed", tool=f"{tool}-{backend}", error=str(exc))

    def _sync_one(self, family: str, tool: str, backend: str, quick: bool) -> None:
        if backend == "nft":
            listing = self._nft_chain(family)
            if listing is None:
                return   # no FORWARD chain in nftables: nothing to lift
            if quick and all(_shapes_present(listing, b) for b in self._bridges):
                return
        elif not _legacy_filter_loaded(family):
            return
        present = self._present(tool)
        if present is None:
            return
        wanted = {f"{self.tag} {b}": b for b in self._bridges}
        for comment, rules in present.items():
            if comment not in wanted or rules != len(_RULES):
                self._delete(tool, comment, rules)
        for comment, bridge in wanted.items():
            if present.get(comment) != len(_RULES):
                for direction, state in _RULES:
                    self._tool(tool, ["-I", "FORWARD", "1", *rule_args(bridge, direction, state, comment)])
                log.info("host_forward_rules_added", tool=tool, bridge=bridge)

    def _nft_chain(self, family: str) -> str | None:
        """The listing of `<family> filter FORWARD`, or None when there is no such chain."""
        if self._ctx is None:
            self._ctx = self._nft.context()
        ok, output, _ = self._nft.run(self._ctx, f"list chain {family} filter FORWARD")
        return output if ok else None

    def _present(self, tool: str) -> dict[str, int] | None:
        """Comment -> number of berth's rules with it in the tool's FORWARD chain."""
        done = self._run([tool, "-w", "-S", "FORWARD"])
        if done.returncode != 0:
            return None
        return self._count(re.findall(r'--comment "?([^"\n]*?)"? -j', done.stdout))

    def _count(self, comments: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in comments:
            if c.startswith(self.tag + " "):
                out[c] = out.get(c, 0) + 1
        return out

    def _delete(self, tool: str, comment: str, count: int) -> None:
        bridge = comment[len(self.tag) + 1:]
        for direction, state in _RULES:
            for _ in range(count):
                if self._run([tool, "-w", "-D", "FORWARD",
                              *rule_args(bridge, direction, state, comment)]).returncode != 0:
                    break
        log.info("host_forward_rules_removed", tool=tool, bridge=bridge)

    def _tool(self, tool: str, args: list[str]) -> None:
        done = self._run([tool, "-w", *args])
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {done.stderr.strip()}")

    # -- the watcher -------------------------------------------------------------

    def watch(self) -> None:
        """Start the thread that puts the rules back after other tools changed the firewall."""
        if self._thread is not None:
            return
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        except OSError as exc:
            log.warning("host_forward_watch_unavailable", error=str(exc), poll_seconds=POLL_SECONDS)
            sock = None
        self._thread = threading.Thread(target=self._loop, args=(sock,), name="host-forward",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self, sock: socket.socket | None) -> None:
        sources = [self._wake_r] + ([sock] if sock is not None else [])
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select(sources, [], [], POLL_SECONDS)
                if self._stop.is_set():
                    return
                # A notification says nftables changed (any table of the host's, other
                # engines' included): the legacy tables send none, so they are looked
                # at on the poll only, sparing a run of the legacy tools per notification.
                backends = ("nft",) if ready else ("nft", "legacy")
                # Let the burst settle, then drain it.
                while ready:
                    for source in ready:
                        if source is sock:
                            sock.recv(65536)
                        else:
                            os.read(self._wake_r, 64)
                    ready, _, _ = select.select(sources, [], [], SETTLE_SECONDS)
                self.sync(quick=True, backends=backends)
        finally:
            if sock is not None:
                sock.close()


def _shapes_present(listing: str, bridge: str) -> bool:
    q = re.escape(f'"{bridge}"')
    return all(re.search(p, listing) for p in (rf"iifname {q} .*accept", rf"oifname {q} ct state .*accept",
                                                 rf"oifname {q} ct status dnat .*accept"))


def _legacy_filter_loaded(family: str) -> bool:
    names = "/proc/net/ip_tables_names" if family == "ip" else "/proc/net/ip6_tables_names"
    try:
        with open(names) as f:
            return "filter" in f.read().split()
    except OSError:
        return False


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]} is not installed")
