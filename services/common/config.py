"""Configuration of every berth process, read once into one typed object.

Defaults are embedded; each can be overridden by an environment variable
(BERTH_RUN_ROOT, BERTH_DATA_ROOT, ...) or by berthd's flags, which set the
same variables for the services it starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

SERVICES = ("image", "network", "volume", "container", "build", "gateway", "cri")


@dataclass(frozen=True)
class Config:
    # Unix sockets live here, one per service: <run_root>/<service>.sock.
    run_root: str = "/run/berth"
    # Each service keeps its state under <data_root>/<service>/.
    data_root: str = "/var/lib/berth"
    # OCI runtime binary and per-container monitor.
    runtime: str = "runc"
    conmon: str = "conmon"
    # The log driver of containers created without one (docker's daemon.json
    # "log-driver"/"log-opts"; berthd's --log-driver/--log-opt): json-file capped and
    # rotated, 20 MB x 5 files, so a chatty container cannot fill the disk
    # (moby#40207). json-file rather than local because docker clients (docker-py's
    # run, compose) read output back only from a "json-file" container; "json-file"
    # with no max-size keeps everything. Options as "key=value,..." (e.g. "max-size=10m,max-file=3").
    log_driver: str = "json-file"
    log_opts: str = "max-size=20m,max-file=5"
    # Most processes a container may have when it asks for no limit of its own
    # (docker's daemon.json "default-pids-limit"); 0 is none. Bounded by default
    # so that a fork bomb in one container cannot starve the node.
    default_pids_limit: int = 4096
    # Log output of the services: "json", "console" or "auto" (console on a tty).
    log_format: str = "auto"
    log_level: str = "info"
    # Per-service addresses override the sockets, for services on other hosts:
    # "unix:///path" or "host:port" (also "tcp://host:port"), TCP with mutual TLS only.
    addresses: dict[str, str] = field(default_factory=dict)
    # JSON file of registry settings (default registry, mirrors, insecure
    # registries, CA dirs, pull parallelism, timeouts); empty: built-in defaults.
    registries_file: str = ""
    # The default "bridge" network: its Linux bridge, and its subnet ("" picks
    # one that collides with no route on the host when the bridge is first made).
    bridge_name: str = "berth0"
    bridge_subnet: str = ""
    # berth's own nftables table (inet family); berth never touches another table.
    nft_table: str = "berth"
    # Where the embedded DNS resolver forwards names it does not know:
    # "ip[:port],..."; "" uses the host's /etc/resolv.conf.
    dns_upstreams: str = ""
    # The Docker Engine API the gateway serves for the docker CLI and SDKs: a root-only
    # unix socket ("" is <run_root>/docker.sock), and TCP ("host:port", "" is off), which
    # is served only with mutual TLS from docker_tls_dir (ca.pem, cert.pem, key.pem), or
    # else from tls_dir's ca.pem and gateway-cert.pem/-key.pem.
    docker_socket: str = ""
    docker_tcp: str = ""
    docker_tls_dir: str = ""
    # The image the CRI service runs as each pod sandbox's container (it holds the
    # pod's shared namespaces); containerd's sandbox_image.
    cri_sandbox_image: str = "registry.k8s.io/pause:3.6"
    # docker's userns-remap: "" runs containers in the host's user namespace; a user
    # name ("user" or "user:group") maps container root onto that user's subordinate
    # ranges in subuid_file/subgid_file; "default" is the user "berth", made (with
    # free ranges) when missing, as docker makes "dockremap". A container can opt out
    # with --userns host.
    userns_remap: str = ""
    subuid_file: str = "/etc/subuid"
    subgid_file: str = "/etc/subgid"
    # Certificates for services on TCP (see services/common/tls.py): ca.pem and
    # <service>-cert.pem/-key.pem. A TCP address is served and called only with
    # mutual TLS, so a TCP address without them is a config error.
    tls_dir: str = ""
    # Where the gateway serves Prometheus' /metrics for itself and the node services it
    # drives ("host:port"; "" is off); berthd's and the gateway's --metrics-addr.
    metrics_address: str = ""
    # The cluster (docs/cluster.md): etcd's client URLs ("http://host:port,..."; "" is no
    # cluster, one host as before), this node's name in it (unique; "" is the host name),
    # the address other nodes reach it at (the VXLAN tunnel source; needed with a store),
    # and the seconds its lease lives without a refresh (a dead node drops out after it).
    cluster_store: str = ""
    node_name: str = ""
    cluster_advertise: str = ""
    cluster_ttl: int = 10

    def socket_path(self, service: str) -> str:
        return os.path.join(self.run_root, f"{service}.sock")

    def address(self, service: str) -> str:
        return self.addresses.get(service) or f"unix://{self.socket_path(service)}"

    def local_address(self, service: str) -> str:
        """The unix socket a service serves on its own host, also beside a TCP address."""
        address = self.addresses.get(service, "")
        return address if address.startswith("unix:") else f"unix://{self.socket_path(service)}"

    def state_dir(self, service: str) -> str:
        return os.path.join(self.data_root, service)

    def env(self) -> dict[str, str]:
        """The environment that gives a child process this same config."""
        env = {
            "BERTH_RUN_ROOT": self.run_root,
            "BERTH_DATA_ROOT": self.data_root,
            "BERTH_RUNTIME": self.runtime,
            "BERTH_CONMON": self.conmon,
            "BERTH_LOG_DRIVER": self.log_driver,
            "BERTH_LOG_OPTS": self.log_opts,
            "BERTH_DEFAULT_PIDS_LIMIT": str(self.default_pids_limit),
            "BERTH_LOG_FORMAT": self.log_format,
            "BERTH_LOG_LEVEL": self.log_level,
            "BERTH_BRIDGE_NAME": self.bridge_name,
            "BERTH_BRIDGE_SUBNET": self.bridge_subnet,
            "BERTH_NFT_TABLE": self.nft_table,
            "BERTH_DNS_UPSTREAMS": self.dns_upstreams,
            "BERTH_CRI_SANDBOX_IMAGE": self.cri_sandbox_image,
            "BERTH_USERNS_REMAP": self.userns_remap,
            "BERTH_SUBUID_FILE": self.subuid_file,
            "BERTH_SUBGID_FILE": self.subgid_file,
        }
        if self.registries_file:
            env["BERTH_REGISTRIES_FILE"] = self.registries_file
        if self.cluster_store:
            env.update(BERTH_CLUSTER_STORE=self.cluster_store, BERTH_NODE_NAME=self.node_name,
                       BERTH_CLUSTER_ADVERTISE=self.cluster_advertise,
                       BERTH_CLUSTER_TTL=str(self.cluster_ttl))
        for key, value in (("BERTH_DOCKER_SOCKET", self.docker_socket), ("BERTH_DOCKER_TCP", self.docker_tcp),
                           ("BERTH_DOCKER_TLS_DIR", self.docker_tls_dir), ("BERTH_TLS_DIR", self.tls_dir),
                           ("BERTH_METRICS_ADDRESS", self.metrics_address)):
            if value:
                env[key] = value
        for service, address in self.addresses.items():
            env[f"BERTH_{service.upper()}_ADDRESS"] = address
        return env


def load(environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    defaults = Config()
    return Config(
        run_root=env.get("BERTH_RUN_ROOT", defaults.run_root),
        data_root=env.get("BERTH_DATA_ROOT", defaults.data_root),
        runtime=env.get("BERTH_RUNTIME", defaults.runtime),
        conmon=env.get("BERTH_CONMON", defaults.conmon),
        log_driver=env.get("BERTH_LOG_DRIVER", defaults.log_driver),
        log_opts=env.get("BERTH_LOG_OPTS", defaults.log_opts),
        default_pids_limit=int(env.get("BERTH_DEFAULT_PIDS_LIMIT") or defaults.default_pids_limit),
        log_format=env.get("BERTH_LOG_FORMAT", defaults.log_format),
        log_level=env.get("BERTH_LOG_LEVEL", defaults.log_level),
        registries_file=env.get("BERTH_REGISTRIES_FILE", defaults.registries_file),
        bridge_name=env.get("BERTH_BRIDGE_NAME", defaults.bridge_name),
        bridge_subnet=env.get("BERTH_BRIDGE_SUBNET", defaults.bridge_subnet),
        nft_table=env.get("BERTH_NFT_TABLE", defaults.nft_table),
        dns_upstreams=env.get("BERTH_DNS_UPSTREAMS", defaults.dns_upstreams),
        docker_socket=env.get("BERTH_DOCKER_SOCKET", defaults.docker_socket),
        docker_tcp=env.get("BERTH_DOCKER_TCP", defaults.docker_tcp),
        docker_tls_dir=env.get("BERTH_DOCKER_TLS_DIR", defaults.docker_tls_dir),
        cri_sandbox_image=env.get("BERTH_CRI_SANDBOX_IMAGE", defaults.cri_sandbox_image),
        userns_remap=env.get("BERTH_USERNS_REMAP", defaults.userns_remap),
        subuid_file=env.get("BERTH_SUBUID_FILE", defaults.subuid_file),
        subgid_file=env.get("BERTH_SUBGID_FILE", defaults.subgid_file),
        tls_dir=env.get("BERTH_TLS_DIR", defaults.tls_dir),
        metrics_address=env.get("BERTH_METRICS_ADDRESS", defaults.metrics_address),
        cluster_store=env.get("BERTH_CLUSTER_STORE", defaults.cluster_store),
        node_name=env.get("BERTH_NODE_NAME", defaults.node_name),
        cluster_advertise=env.get("BERTH_CLUSTER_ADVERTISE", defaults.cluster_advertise),
        cluster_ttl=int(env.get("BERTH_CLUSTER_TTL") or defaults.cluster_ttl),
        addresses={s: env[f"BERTH_{s.upper()}_ADDRESS"] for s in SERVICES
                   if env.get(f"BERTH_{s.upper()}_ADDRESS")},
    )
