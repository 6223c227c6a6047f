"""Engine events as docker streams them (`GET /events`, `events --format json`)."""

from __future__ import annotations


def event_json(event, nanos: int | None = None) -> dict:
    """One message of `GET /events`, with the legacy status/id/from keys the old clients read.
    `event` has `time` in unix seconds (the gateway's event log entries) unless `nanos`
    gives the time."""
    if nanos is None:
        nanos = int(event.time * 1e9)
    message = {
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.actor_id, "Attributes": dict(event.attributes)},
        "scope": "local",
        "time": nanos // 1_000_000_000,
        "timeNano": nanos,
    }
    if event.type == "container":
        message.update(status=event.action, id=event.actor_id, **{"from": event.attributes.get("image", "")})
    elif event.type == "image":
        message.update(status=event.action, id=event.actor_id)
    return message
