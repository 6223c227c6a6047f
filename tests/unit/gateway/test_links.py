"""Legacy links' environment, as docker gives it to the linking container."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.gateway.links import Linked, exposed_ports, link_env, parse


def test_a_link_names_itself_and_shares_the_linked_containers_env():
    env = link_env(Linked(parent="app", alias="my-db", address="172.17.0.5", ports=(),
                          env=["PATH=/bin", "HOME=/root", "FOO=1", "EMPTY="]))
    assert env == ["MY_DB_NAME=/app/my-db", "MY_DB_ENV_FOO=1", "MY_DB_ENV_EMPTY="]


def test_each_exposed_port_has_its_url_address_number_and_protocol_the_lowest_is_the_default():
    env = link_env(Linked(parent="app", alias="db", address="10.0.0.2", env=(),
                          ports={(6379, "tcp"), (53, "udp"), (53, "tcp")}))
    assert env[0] == "DB_PORT=tcp://10.0.0.2:53"
    assert env[1:9] == [
        "DB_PORT_53_TCP=tcp://10.0.0.2:53", "DB_PORT_53_TCP_ADDR=10.0.0.2", "DB_PORT_53_TCP_PORT=53",
        "DB_PORT_53_TCP_PROTO=tcp",
        "DB_PORT_53_UDP=udp://10.0.0.2:53", "DB_PORT_53_UDP_ADDR=10.0.0.2", "DB_PORT_53_UDP_PORT=53",
        "DB_PORT_53_UDP_PROTO=udp"]
    assert "DB_PORT_6379_TCP_PORT=6379" in env and env[-1] == "DB_NAME=/app/db"


def test_a_run_of_consecutive_ports_has_its_start_and_end():
    env = link_env(Linked(parent="p", alias="web", address="1.2.3.4", env=(),
                          ports={(8000, "tcp"), (8001, "tcp"), (8002, "tcp"), (9000, "tcp")}))
    assert {"WEB_PORT_8000_TCP_START=tcp://1.2.3.4:8000", "WEB_PORT_8000_TCP_PORT_START=8000",
            "WEB_PORT_8000_TCP_END=tcp://1.2.3.4:8002", "WEB_PORT_8000_TCP_PORT_END=8002",
            "WEB_PORT_8000_TCP_ADDR=1.2.3.4", "WEB_PORT_8000_TCP_PROTO=tcp"} <= set(env)
    assert not any(e.startswith("WEB_PORT_9000_TCP_START") for e in env)
    assert "WEB_PORT_8001_TCP=tcp://1.2.3.4:8001" in env


def test_exposed_ports_are_the_images_and_the_published_ones():
    assert exposed_ports(["80/tcp", "53/udp", "x"], [(8080, "tcp")]) == {(80, "tcp"), (53, "udp"), (8080, "tcp")}


@pytest.mark.parametrize("link,parsed", [("db", ("db", "db")), ("db:store", ("db", "store")),
                                         ("/db:/app/store", ("db", "store"))])
def test_link_forms(link, parsed):
    assert parse(link) == parsed


def test_a_link_without_a_container_is_refused():
    with pytest.raises(InvalidArgument, match="invalid link"):
        parse(":alias")
