"""The Docker Engine API edge's view of berth_docker: every parser and shape its routes call,
under one name (`from berth_docker import api as convert`). Defined in the modules named
for what they hold; this file only gathers them.
"""

from berth_docker.create import container_config, create_warnings, healthcheck, update_request  # noqa: F401
from berth_docker.mounts import host_config_mounts as mounts, mount, volume as bind  # noqa: F401
from berth_docker.ports import port_bindings, ports_json  # noqa: F401
from berth_docker.query import filters, flag, integer  # noqa: F401
from berth_docker.reference import familiar  # noqa: F401
from berth_docker.shapes.containers import (  # noqa: F401
    container_json, container_summary, health_json, healthcheck_json, mount_point_json, status_text)
from berth_docker.shapes.logs import log_line  # noqa: F401
from berth_docker.shapes.events import event_json  # noqa: F401
from berth_docker.shapes.execs import exec_json  # noqa: F401
from berth_docker.shapes.files import change_json, path_stat  # noqa: F401
from berth_docker.shapes.images import (  # noqa: F401
    filter_images, image_history, image_json, image_labels, image_summary)
from berth_docker.shapes.networks import network_json  # noqa: F401
from berth_docker.shapes.stats import stats_json  # noqa: F401
from berth_docker.shapes.volumes import volume_json  # noqa: F401
from berth_docker.times import ZERO_TIME, human_duration, rfc3339, timestamp, to_pb_time  # noqa: F401
