"""Registry verbs: `berth pull`, `push`, `login`, `logout`, and the pull `run` does for a missing image.

Credentials live in a docker-compatible config.json ($BERTH_CONFIG/config.json,
else ~/.berth/config.json): {"auths": {"host:5000": {"auth": base64("user:pass")}}},
Docker Hub under "https://index.docker.io/v1/". The CLI reads them and sends
them with each pull or push; the engine never stores them.

Imports nothing heavy at module level: cli.py builds its parsers from here.
"""

from __future__ import annotations

import os
import sys

from berth_errors import IMAGE

from berth_cli.errors import ENGINE_ERROR, Failed, RpcError, StatusCode, Unreachable

from berth.types.v1 import registry_pb2

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_PROGRESS = ("Downloading", "Extracting", "Pushing")


def add_parsers(add_verb) -> None:
    p = add_verb("pull", help="download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    p.add_argument("--platform", default="", help="os/arch[/variant] from a multi-platform image")
    p.add_argument("image")

    p = add_verb("push", help="upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image name")
    p.add_argument("image")

    p = add_verb("login", help="log in to a registry")
    p.add_argument("-u", "--username", default="")
    p.add_argument("-p", "--password", default="")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="")

    p = add_verb("logout", help="log out from a registry")
    p.add_argument("server", nargs="?", default="")


# -- config.json ---------------------------------------------------------------------

def config_path() -> str:
    base = os.environ.get("BERTH_CONFIG") or os.path.join(os.path.expanduser("~"), ".berth")
    return os.path.join(base, "config.json")


def _load_config() -> dict:
    import json
    try:
        with open(config_path()) as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else {}
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{config_path()} is not valid JSON: {exc}") from None


def _save_config(doc: dict) -> None:
    import json
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.write("\n")
    os.rename(tmp, path)


def server_key(server: str) -> str:
    """The config.json key of a registry, as docker spells it."""
    host = server.removeprefix("https://").removeprefix("http://").split("/")[0]
    if host in ("", "docker.io", "index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB_KEY
    return host


def _domain(image: str) -> str:
    from berth_docker import reference
    try:
        return reference.parse(image).domain
    except ValueError:
        return ""


def auth_for(server: str):
    """The engine_pb2.RegistryAuth config.json holds for a registry (empty when none)."""
    import base64
    entry = (_load_config().get("auths") or {}).get(server_key(server)) or {}
    username = entry.get("username", "")
    password = entry.get("password", "")
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{config_path()}: the auth of {server_key(server)} is not base64 user:password")
    return registry_pb2.RegistryAuth(username=username, password=password,
                                     identity_token=entry.get("identitytoken", ""))


# -- progress ---------------------------------------------------------------------------

class ProgressPrinter:
    """Docker's way of showing a pull: one line per layer, redrawn in place on a terminal."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.rows: dict[str, int] = {}

    def show(self, m) -> None:
        if not m.id:
            self.rows.clear()
            self.out.write(m.status + "\n")
        else:
            text = f"{m.id}: {m.status}"
            if m.total and m.status in _PROGRESS:
                text += f" {_bar(m.current, m.total)}"
            if not self.tty:
                if m.status not in _PROGRESS:
                    self.out.write(text + "\n")
            elif m.id not in self.rows:
                self.rows[m.id] = len(self.rows)
                self.out.write(text + "\n")
            else:
                up = len(self.rows) - self.rows[m.id]
                self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
        self.out.flush()


def _bar(current: int, total: int, width: int = 40) -> str:
    from berth_docker.units import human_size
    filled = min(width, int(width * current / total)) if total else 0
    arrow = ">" if filled < width else ""
    return f"[{'=' * max(filled - 1, 0)}{arrow}{' ' * (width - filled)}] {human_size(current)}/{human_size(total)}"


# -- verbs -----------------------------------------------------------------------------

def _transfer(client, call, request, image: str, quiet: bool, out) -> int:
    from berth_docker import reference
    printer = ProgressPrinter(out)
    try:
        for reply in call(request):
            if not quiet:
                printer.show(reply.progress)
    except RpcError as err:
        print(describe(client, err), file=sys.stderr)
        return 1 if out is sys.stdout else ENGINE_ERROR
    try:
        name = str(reference.parse(image))
    except ValueError:
        name = image
    print(name, file=out if not quiet else sys.stdout)
    return 0


def describe(client, err) -> str:
    """Like Client.describe, but an unreachable registry is not an unreachable daemon."""
    details = err.details() or ""
    if err.code() == StatusCode.UNAVAILABLE and not isinstance(err, Unreachable):
        return f"Error response from daemon: {details}"
    return client.describe(err)


def pull(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    request = engine_pb2.PullImageRequest(reference=ns.image, platform=ns.platform,
                                          auth=auth_for(_domain(ns.image)))
    return _transfer(client, client.stub.PullImage, request, ns.image, ns.quiet, sys.stdout)


def push(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    request = engine_pb2.PushImageRequest(reference=ns.image, auth=auth_for(_domain(ns.image)))
    return _transfer(client, client.stub.PushImage, request, ns.image, ns.quiet, sys.stdout)


def login(client, ns) -> int:
    import base64
    import getpass

    from berth.engine.v1 import engine_pb2
    username, password = ns.username, ns.password
    if ns.password_stdin:
        if ns.password:
            raise ValueError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\n")
    if not username:
        username = input("Username: ").strip()
    if not password:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise ValueError("login needs a username and a password")
    if ns.password and not ns.password_stdin:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    try:
        response = client.stub.CheckRegistryAuth(engine_pb2.CheckRegistryAuthRequest(
            server=ns.server, auth=registry_pb2.RegistryAuth(username=username, password=password)))
    except RpcError as err:
        client.report(err)
        return 1
    doc = _load_config()
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    doc.setdefault("auths", {})[server_key(ns.server)] = {"auth": auth}
    _save_config(doc)
    print(response.status or "Login Succeeded")
    return 0


def logout(client, ns) -> int:
    key = server_key(ns.server)
    doc = _load_config()
    auths = doc.get("auths") or {}
    if key not in auths:
        print(f"Not logged in to {key}")
        return 0
    del auths[key]
    _save_config(doc)
    print(f"Removing login credentials for {key}")
    return 0


def pull_if_missing(client, ns, err) -> bool:
    """For run/create: when the engine says the image is missing, pull it as docker does; True to retry."""
    from berth_docker import reference
    if getattr(ns, "pulled", False) or not err.is_missing(IMAGE) or reference.looks_like_id(ns.image):
        return False
    try:
        shown = reference.familiar(str(reference.parse(ns.image)))
    except ValueError:
        return False
    if getattr(ns, "pull", "missing") == "never":
        return False
    print(f"Unable to find image '{shown}' locally", file=sys.stderr)
    _pull_for_run(client, ns, shown)
    return True


def pull_if_always(client, ns) -> None:
    """run/create --pull=always: pull before creating, as docker does."""
    if getattr(ns, "pull", "missing") != "always" or getattr(ns, "pulled", False):
        return
    from berth_docker import reference
    try:
        shown = reference.familiar(str(reference.parse(ns.image)))
    except ValueError:
        shown = ns.image
    _pull_for_run(client, ns, shown)


def _pull_for_run(client, ns, shown: str) -> None:
    from berth.engine.v1 import engine_pb2
    ns.pulled = True
    request = engine_pb2.PullImageRequest(reference=ns.image, platform=getattr(ns, "platform", ""),
                                          auth=auth_for(_domain(ns.image)))
    printer = ProgressPrinter(open(os.devnull, "w") if getattr(ns, "quiet", False) else sys.stderr)
    try:
        for message in (reply.progress for reply in client.stub.PullImage(request)):
            printer.show(message)
    except RpcError as pull_err:
        # The image is still missing: say so, then why the pull could not fetch it.
        print(f"Error response from daemon: No such image: {shown}: pull failed: {pull_err.details()}",
              file=sys.stderr)
        raise Failed(ENGINE_ERROR) from None
