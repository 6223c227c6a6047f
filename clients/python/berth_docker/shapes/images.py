"""Images as docker shows them: `images`, `image inspect`, `history`, and the `images` filters."""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc loads all of collections
    from collections.abc import Mapping, Sequence

from berth.engine.v1 import engine_pb2
from berth_errors import InvalidArgument
from berth_docker.reference import familiar
from berth_docker.times import ZERO_TIME, rfc3339, timestamp


def _image_config(info: engine_pb2.ImageInfo) -> dict:
    try:
        return json.loads(info.config_json) if info.config_json else {}
    except json.JSONDecodeError:
        return {}


def image_labels(info: engine_pb2.ImageInfo) -> dict:
    return (_image_config(info).get("config") or {}).get("Labels") or {}


def image_summary(info: engine_pb2.ImageInfo) -> dict:
    """One entry of `GET /images/json` (what `docker images` prints)."""
    return {
        "Id": info.id,
        "ParentId": info.parent,
        "RepoTags": [familiar(t) for t in info.repo_tags] or ["<none>:<none>"],
        "RepoDigests": [familiar(d) for d in info.repo_digests] or ["<none>@<none>"],
        "Created": info.created.seconds,
        "Size": info.size,
        "SharedSize": -1,
        "VirtualSize": info.size,
        "Labels": image_labels(info) or None,
        "Containers": info.containers,
    }


def image_json(info: engine_pb2.ImageInfo) -> dict:
    """`GET /images/{name}/json` and `berth inspect` of an image (what `docker image inspect` prints)."""
    config = _image_config(info)
    return {
        "Id": info.id,
        "RepoTags": [familiar(t) for t in info.repo_tags],
        "RepoDigests": [familiar(d) for d in info.repo_digests],
        "Parent": info.parent,
        "Comment": _comment(config),
        "Created": rfc3339(info.created if info.HasField("created") else None),
        "DockerVersion": "",
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": info.architecture,
        "Os": info.os,
        "Size": info.size,
        "VirtualSize": info.size,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(info.diff_ids)},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }


def _comment(config: dict) -> str:
    history = config.get("history") or []
    return history[-1].get("comment", "") if history else ""


def image_history(info: engine_pb2.ImageInfo) -> list[dict]:
    """`GET /images/{name}/history`, newest first; only the top entry carries the id."""
    history = _image_config(info).get("history") or []
    entries = []
    for i, h in enumerate(reversed(history)):
        created = timestamp(h.get("created")) if h.get("created") else 0
        entries.append({
            "Id": info.id if i == 0 else "<missing>",
            "Created": int(created or 0),
            "CreatedBy": h.get("created_by", ""),
            "Tags": [familiar(t) for t in info.repo_tags] if i == 0 else None,
            "Size": info.size if i == len(history) - 1 else 0,
            "Comment": h.get("comment", ""),
        })
    if not entries:
        entries.append({"Id": info.id, "Created": info.created.seconds, "CreatedBy": "",
                        "Tags": [familiar(t) for t in info.repo_tags], "Size": info.size, "Comment": ""})
    return entries


_IMAGE_FILTERS = ("reference", "dangling", "label", "before", "since", "until")


def filter_images(infos: Sequence[engine_pb2.ImageInfo], flt: Mapping[str, Sequence[str]],
                  by_ref: Mapping[str, str] | None = None) -> list[engine_pb2.ImageInfo]:
    """docker images filters: values of one key OR-ed (labels AND-ed), keys AND-ed.
    `by_ref` resolves before/since references to image ids."""
    unknown = sorted(set(flt) - set(_IMAGE_FILTERS))
    if unknown:
        raise InvalidArgument(f"invalid filter '{unknown[0]}'")
    by_ref = by_ref or {}
    created = {i.id: i.created.seconds for i in infos}
    out = []
    for info in infos:
        if "dangling" in flt:
            want = [v.lower() in ("1", "true") for v in flt["dangling"]]
            if (not info.repo_tags) not in want:
                continue
        if flt.get("reference"):
            names = [familiar(t) for t in info.repo_tags]
            if not any(_reference_matches(p, n) for p in flt["reference"] for n in names):
                continue
        if flt.get("label"):
            labels = image_labels(info)
            if not all(labels.get(k) == v if eq else k in labels
                       for k, eq, v in (f.partition("=") for f in flt["label"])):
                continue
        if flt.get("before"):
            if not all(info.created.seconds < created.get(by_ref.get(r, ""), 0) for r in flt["before"]):
                continue
        if flt.get("since"):
            if not all(info.created.seconds > created.get(by_ref.get(r, ""), 1 << 62) for r in flt["since"]):
                continue
        if flt.get("until"):
            # Created before every `until` given (RFC 3339 or Unix seconds).
            if not all(info.created.seconds < _until(u) for u in flt["until"]):
                continue
        out.append(info)
    return out


def _until(value: str) -> float:
    at = timestamp(value)
    if at is None:
        raise InvalidArgument(f"invalid filter 'until={value}'")
    return at


def _reference_matches(pattern: str, name: str) -> bool:
    """`reference=busybox` matches busybox:<any tag>; `busybox:1*` globs the tag too."""
    import fnmatch  # here: it imports re, and `berth inspect` imports this module
    repo, _, _tag = name.rpartition(":")
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(repo, pattern)
