"""The /build stream as the legacy builder prints it, and its query read as docker's clients send it."""

import pytest
from aiohttp.test_utils import make_mocked_request

from berth.types.v1 import build_pb2 as b
from services.common import errors
from services.gateway.docker.routes.build import options_from_query, render


def _step(**kw):
    return b.BuildEvent(step=b.BuildStep(**kw))


def test_render_a_build_as_the_legacy_builder():
    state: dict = {}
    events = [
        _step(number=1, total=2, instruction="FROM busybox", state=b.BUILD_STEP_STATE_STARTED),
        _step(number=1, state=b.BUILD_STEP_STATE_DONE, image_id="sha256:" + "a" * 64),
        _step(number=2, total=2, instruction="RUN echo hi", state=b.BUILD_STEP_STATE_STARTED),
        _step(number=2, state=b.BUILD_STEP_STATE_STARTED, container_id="c" * 64),
        b.BuildEvent(output=b.BuildOutput(number=2, data=b"oops\n", stderr=True)),
        _step(number=2, state=b.BUILD_STEP_STATE_DONE, image_id="sha256:" + "b" * 64),
        b.BuildEvent(result=b.BuildResult(image_id="sha256:" + "b" * 64, tags=["docker.io/library/app:1"])),
    ]
    lines = [m for e in events for m in render(e, False, state)]
    assert lines == [
        {"stream": "Step 1/2 : FROM busybox\n"}, {"stream": " ---> aaaaaaaaaaaa\n"},
        {"stream": "Step 2/2 : RUN echo hi\n"}, {"stream": " ---> Running in cccccccccccc\n"},
        {"stream": "\x1b[91moops\n\x1b[0m"},
        {"stream": "Removing intermediate container cccccccccccc\n"}, {"stream": " ---> bbbbbbbbbbbb\n"},
        {"aux": {"ID": "sha256:" + "b" * 64}}, {"stream": "Successfully built bbbbbbbbbbbb\n"},
        {"stream": "Successfully tagged app:1\n"},
    ]
    cached = _step(number=3, state=b.BUILD_STEP_STATE_CACHED, image_id="sha256:" + "d" * 64)
    assert render(cached, False, {}) == [{"stream": " ---> Using cache\n"}, {"stream": " ---> dddddddddddd\n"}]
    assert render(cached, True, {}) == []


def test_query_as_the_sdk_and_the_cli_send_it():
    req = make_mocked_request("POST", "/build?t=a&t=b:2&nocache=True&pull=False&rm=False&buildargs=%7B%22X%22%3A%221%22%7D"
                                      "&labels=%7B%7D&cachefrom=%5B%22c%22%5D&networkmode=default&memory=0"
                                      "&extrahosts=h%3A1.2.3.4&shmsize=1024")
    o = options_from_query(req)
    assert list(o.tags) == ["a", "b:2"] and o.no_cache and not o.pull
    assert dict(o.build_args) == {"X": "1"} and list(o.cache_from) == ["c"] and o.network_mode == ""
    assert list(o.extra_hosts) == ["h:1.2.3.4"] and o.shm_size == 1024


@pytest.mark.parametrize("query, kind", [
    ("squash=1", errors.NotImplementedYet), ("remote=https://x/y.git", errors.NotImplementedYet),
    ("memory=100", errors.NotImplementedYet), ("version=2", errors.NotImplementedYet),
    ("buildargs=notjson", errors.InvalidArgument), ("isolation=hyperv", errors.InvalidArgument),
])
def test_what_berth_cannot_do_is_refused(query, kind):
    with pytest.raises(kind):
        options_from_query(make_mocked_request("POST", "/build?" + query))


def test_registry_config_header_gives_credentials_per_registry():
    import base64
    import json
    header = base64.urlsafe_b64encode(json.dumps({
        "https://index.docker.io/v1/": {"username": "u", "password": "p"},
        "https://reg.example:5000": {"identitytoken": "t"}}).encode()).decode()
    o = options_from_query(make_mocked_request("POST", "/build", headers={"X-Registry-Config": header}))
    assert o.registry_auths["https://index.docker.io/v1/"].username == "u"
    assert o.registry_auths["reg.example:5000"].identity_token == "t"
    with pytest.raises(errors.InvalidArgument):
        options_from_query(make_mocked_request("POST", "/build", headers={"X-Registry-Config": base64.b64encode(b"not json").decode()}))
