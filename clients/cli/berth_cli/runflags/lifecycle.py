"""run/create's restart policy and healthcheck flags."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--restart", default="", metavar="POLICY",
                   help="no, on-failure[:max-retries], always or unless-stopped")
    p.add_argument("--health-cmd", default=None, help="command to run to check health")
    p.add_argument("--health-interval", default="", help="time between checks (ms|s|m|h)")
    p.add_argument("--health-timeout", default="", help="maximum time to allow one check to run")
    p.add_argument("--health-retries", type=int, default=0, help="failures in a row to be unhealthy")
    p.add_argument("--health-start-period", default="", help="time to initialize before failures count")
    p.add_argument("--health-start-interval", default="", help="time between checks in the start period")
    p.add_argument("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")


def apply(ns, config) -> None:
    """--restart and --health-* onto an engine ContainerConfig (the engine validates them)."""
    from berth_docker.units import parse_duration
    if ns.restart:
        from berth_docker.create import restart_policy  # here: a big module most runs do not need
        config.restart_policy.CopyFrom(restart_policy(ns.restart))
    health_set = (ns.health_cmd is not None or ns.health_interval or ns.health_timeout
                  or ns.health_retries or ns.health_start_period or ns.health_start_interval)
    if ns.no_healthcheck:
        if health_set:
            raise ValueError("--no-healthcheck conflicts with --health-* options")
        config.healthcheck.test.append("NONE")
        return
    if not health_set:
        return
    h = config.healthcheck
    if ns.health_cmd is not None:
        h.test.extend(["CMD-SHELL", ns.health_cmd])
    for flag, name in (("--health-interval", "interval"), ("--health-timeout", "timeout"),
                       ("--health-start-period", "start_period"),
                       ("--health-start-interval", "start_interval")):
        value = getattr(ns, f"health_{name}")
        if value:
            setattr(h, name, parse_duration(value, flag))
    if ns.health_retries < 0:
        raise ValueError("--health-retries cannot be negative")
    h.retries = ns.health_retries
