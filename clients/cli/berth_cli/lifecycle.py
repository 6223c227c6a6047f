"""`berth` verbs for a container's life beyond run and stop: rename, commit, diff, update
(resources and restart policy), container prune, system df and system prune (run/create's
restart and healthcheck flags are runflags/lifecycle.py's).

Parsers import nothing heavy; the verbs load the generated code when they run.
"""

from __future__ import annotations

from berth_cli import argv as arguments
from berth_cli import format as fmt
from berth_cli.engine import each


# -- parsers -----------------------------------------------------------------------------

VERBS = ("rename", "commit", "diff", "update", "container", "system")


def add_parsers(add_verb, only: str | None) -> None:
    p = add_verb("rename", help="rename a container")
    p.add_argument("container")
    p.add_argument("new_name")

    p = add_verb("commit", help="create a new image from a container's changes")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-p", "--pause", action="store_true", help=arguments.SUPPRESS)
    p.add_argument("container")
    p.add_argument("reference", nargs="?", default="")

    p = add_verb("diff", help="list the changes to a container's filesystem")
    p.add_argument("container")

    p = add_verb("update", help="update the configuration of containers")
    p.add_argument("--restart", default="", metavar="POLICY")
    p.add_argument("-m", "--memory", default=None, help="memory limit, e.g. 64m (0: none)")
    p.add_argument("--cpus", default=None, help="number of CPUs (0: no limit)")
    p.add_argument("-c", "--cpu-shares", type=int, default=None)
    p.add_argument("--pids-limit", type=int, default=None)
    p.add_argument("containers", nargs="+")

    p = add_verb("container", help="manage containers", add_help=False)
    if only == "container":
        p.add_argument("--help", action="help", help="show this help")
        sub = p.add_subparsers(dest="container_verb", metavar="COMMAND", parser_class=type(p))
        sub.required = True
        c = sub.add_parser("prune", help="remove all stopped containers")
        c.add_argument("-f", "--force", action="store_true", help="do not prompt")

    p = add_verb("system", help="manage the engine", add_help=False)
    if only == "system":
        p.add_argument("--help", action="help", help="show this help")
        sub = p.add_subparsers(dest="system_verb", metavar="COMMAND", parser_class=type(p))
        sub.required = True
        c = sub.add_parser("df", help="show disk usage")
        c.add_argument("-v", "--verbose", action="store_true")
        c.add_argument("--format", default="")
        c = sub.add_parser("prune", help="remove unused data")
        c.add_argument("-a", "--all", action="store_true", help="remove all unused images, not just dangling ones")
        c.add_argument("--volumes", action="store_true", help="prune anonymous volumes")
        c.add_argument("-f", "--force", action="store_true", help="do not prompt")


# -- verbs -----------------------------------------------------------------------------------

def rename(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    client.stub.RenameContainer(engine_pb2.RenameContainerRequest(id=ns.container, new_name=ns.new_name))
    return 0


def commit(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    response = client.stub.CommitContainer(engine_pb2.CommitContainerRequest(
        container=ns.container, reference=ns.reference, changes=ns.change, message=ns.message,
        author=ns.author))
    print(response.id)
    return 0


def diff(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    response = client.stub.DiffContainer(engine_pb2.DiffContainerRequest(id=ns.container))
    for change in response.changes:
        print(f"{change.kind} {change.path}")
    return 0


_RESOURCE_FLAGS = ("memory", "cpus", "cpu_shares", "pids_limit")


def update(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.create import restart_policy
    if any(getattr(ns, k) is not None for k in _RESOURCE_FLAGS):
        # Memory, CPU and pids limits (the container service applies them with runc update).
        status = update_resources(client, ns)
        if status or not ns.restart:
            return status
    if not ns.restart:
        raise ValueError("you must provide one or more flags when using this command")
    policy = restart_policy(ns.restart)
    return each(client, ns.containers, lambda ref: client.stub.UpdateContainerRestartPolicy(
        engine_pb2.UpdateContainerRestartPolicyRequest(id=ref, restart_policy=policy)))


def update_resources(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.units import parse_bytes, parse_cpus
    fields = {}
    if ns.memory is not None:
        fields["memory_bytes"] = parse_bytes(ns.memory) if ns.memory not in ("0", "") else 0
    if ns.cpus is not None:
        fields["nano_cpus"] = parse_cpus(ns.cpus) if ns.cpus not in ("0", "") else 0
    if ns.cpu_shares is not None:
        fields["cpu_shares"] = ns.cpu_shares
    if ns.pids_limit is not None:
        fields["pids_limit"] = ns.pids_limit
    return each(client, ns.containers,
                lambda ref: client.stub.UpdateContainerResources(
                    engine_pb2.UpdateContainerResourcesRequest(id=ref, **fields)))


def _reclaimed(response) -> None:
    from berth_docker.units import human_size
    print(f"Total reclaimed space: {human_size(response.space_reclaimed)}")


def container(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    response = client.stub.PruneContainers(engine_pb2.PruneContainersRequest())
    if response.containers_deleted:
        print("Deleted Containers:")
        for cid in response.containers_deleted:
            print(cid)
        print()
    _reclaimed(response)
    return 0


def system(client, ns) -> int:
    return {"df": df, "prune": system_prune}[ns.system_verb](client, ns)


def system_prune(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.reference import familiar
    response = client.stub.PruneSystem(engine_pb2.PruneSystemRequest(all=ns.all, volumes=ns.volumes))
    for title, items in (("Deleted Containers:", response.containers_deleted),
                         ("Deleted Networks:", response.networks_deleted),
                         ("Deleted Volumes:", response.volumes_deleted)):
        if items:
            print(title)
            print("\n".join(items))
            print()
    if response.images_untagged or response.images_deleted:
        print("Deleted Images:")
        for name in response.images_untagged:
            print(f"untagged: {familiar(name)}")
        for image_id in response.images_deleted:
            print(f"deleted: {image_id}")
        print()
    _reclaimed(response)
    return 0


def _percent(part: int, whole: int) -> str:
    return f" ({round(100 * part / whole)}%)" if whole else ""


def df(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    import json


    from berth_docker.units import human_size
    response = client.stub.GetDiskUsage(engine_pb2.GetDiskUsageRequest())
    if ns.format == "json":
        for s in response.summary:
            print(json.dumps({
                "Type": s.type, "TotalCount": str(s.total), "Active": str(s.active),
                "Size": human_size(s.size),
                "Reclaimable": human_size(s.reclaimable) + _percent(s.reclaimable, s.size),
                # Exact numbers, for scripts that add them up.
                "SizeBytes": s.size, "ReclaimableBytes": s.reclaimable}))
        return 0
    print(fmt.table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"), [
        (s.type, str(s.total), str(s.active), human_size(s.size),
         human_size(s.reclaimable) + _percent(s.reclaimable, s.size))
        for s in response.summary]))
    if not ns.verbose:
        return 0
    print("\nImages space usage:\n")
    print(fmt.table(("REPOSITORY", "TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"), [
        (*(fmt.split_repo_tag(i.repo_tags[0]) if i.repo_tags else ("<none>", "<none>")),
         fmt.short_id(i.id), human_size(i.size), human_size(i.shared_size),
         human_size(i.size - i.shared_size), str(i.containers))
        for i in response.images]))
    print("\nContainers space usage:\n")
    print(fmt.table(("CONTAINER ID", "IMAGE", "STATUS", "SIZE", "LOG SIZE", "NAMES"), [
        (c.id[:12], c.image, c.status, human_size(c.size_rw), human_size(c.log_size), c.name)
        for c in response.containers]))
    print("\nLocal Volumes space usage:\n")
    print(fmt.table(("VOLUME NAME", "LINKS", "SIZE"), [
        (v.name, str(v.ref_count), human_size(v.size)) for v in response.volumes]))
    return 0
