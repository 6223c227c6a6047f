"""Docker-style image references: parsing, normalisation and display.

A reference names an image the way `docker` does:

    busybox                       -> docker.io/library/busybox:latest
    host:5000/team/app:1.2        -> host:5000/team/app:1.2
    app@sha256:<64 hex>           -> docker.io/library/app@sha256:<64 hex>

Everything stored or sent between services uses the full, normalised form;
`familiar` turns it back into what a person typed, for display. This module
is pure (no I/O) so the gateway and the CLI can import it.
"""

from __future__ import annotations

from berth_errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

# The patterns as text, compiled by re (and cached) at their first match: the CLI's image
# verbs import this module for `familiar`, which matches nothing, and importing re costs more.
_PATH_RE = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_RE = _DOMAIN
_TAG_RE = _TAG
_DIGEST_RE = _DIGEST
_HEX64_RE = r"[a-f0-9]{64}"
_SHORT_ID_RE = r"[a-f0-9]{1,64}"


def _fullmatch(pattern: str, text: str) -> bool:
    import re
    return re.fullmatch(pattern, text) is not None


class Reference:
    """A parsed, normalised reference (immutable). `tag` and `digest` may both be empty.

    A plain class, not a frozen dataclass: the dataclasses module imports inspect and ast,
    which costs the CLI's image verbs (they import this module) more than their call.
    """

    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain: str, path: str, tag: str = "", digest: str = ""):
        for field, value in zip(self.__slots__, (domain, path, tag, digest)):
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    __delattr__ = __setattr__

    def _fields(self) -> tuple[str, str, str, str]:
        return self.domain, self.path, self.tag, self.digest

    def __eq__(self, other) -> bool:
        return self._fields() == other._fields() if isinstance(other, Reference) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Reference(" + ", ".join(f"{k}={v!r}" for k, v in zip(self.__slots__, self._fields())) + ")"

    @property
    def name(self) -> str:
        """The repository: "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_default_tag(self) -> Reference:
        """The same reference with ":latest" when it names neither a tag nor a digest."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, "")

    @property
    def familiar(self) -> str:
        return familiar(str(self))


def _invalid(detail: str = "") -> InvalidArgument:
    return InvalidArgument("invalid reference format" + (f": {detail}" if detail else ""))


def _split_domain(remainder: str) -> tuple[str, str]:
    first, sep, rest = remainder.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, remainder
    else:
        domain, path = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference; ":latest" is added unless default_tag is False.

    Raises InvalidArgument with docker's "invalid reference format" wording.
    """
    if not isinstance(text, str) or not text:
        raise _invalid("reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise _invalid(f"{text!r} contains whitespace")
    if _fullmatch(_HEX64_RE, text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")

    remainder, _, digest = text.partition("@")
    if "@" in text:
        if not _fullmatch(_DIGEST_RE, digest):
            raise _invalid(f"invalid digest {digest!r}")
        algorithm, _, hexpart = digest.partition(":")
        if algorithm == "sha256" and not _fullmatch(_HEX64_RE, hexpart):
            raise _invalid(f"invalid sha256 digest {digest!r} (want 64 lowercase hex characters)")
    tag = ""
    # A ':' after the last '/' is a tag; before it, it is a registry port.
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _fullmatch(_TAG_RE, tag):
            raise _invalid(f"invalid tag {tag!r}")
    if not remainder:
        raise _invalid("repository name is empty")

    domain, path = _split_domain(remainder)
    if not _fullmatch(_DOMAIN_RE, domain):
        raise _invalid(f"invalid registry {domain!r}")
    if path.lower() != path:
        raise _invalid(f"repository name ({path}) must be lowercase")
    if not _fullmatch(_PATH_RE, path):
        raise _invalid(f"invalid repository name {path!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_MAX} characters")
    ref = Reference(domain, path, tag, digest)
    return ref.with_default_tag() if default_tag else ref


def normalize(text: str) -> str:
    """The full form of a reference: "busybox" -> "docker.io/library/busybox:latest"."""
    return str(parse(text))


def familiar(name: str) -> str:
    """How a person writes a full reference: "docker.io/library/busybox:latest" -> "busybox:latest".

    Anything that is not a full docker.io reference comes back unchanged.
    """
    prefix = DEFAULT_DOMAIN + "/"
    if not name.startswith(prefix):
        return name
    rest = name[len(prefix):]
    if rest.startswith(OFFICIAL_PREFIX):
        short = rest[len(OFFICIAL_PREFIX):]
        # "docker.io/library/a/b" is not an official image; keep "library/".
        if "/" not in short.split(":")[0].split("@")[0]:
            return short
    return rest


def looks_like_id(text: str, min_length: int = 4) -> bool:
    """Whether `text` could be an image id: "sha256:<64 hex>", 64 hex, or a hex prefix."""
    if text.startswith("sha256:"):
        return bool(_fullmatch(_HEX64_RE, text[len("sha256:"):]))
    return len(text) >= min_length and bool(_fullmatch(_SHORT_ID_RE, text))


def matches(pattern: str, name: str) -> bool:
    """Whether a stored full name matches a `docker images` filter pattern.

    "busybox" matches every tag of docker.io/library/busybox; "busybox:1.*"
    matches the tags the glob allows.
    """
    import fnmatch  # here: only filters need globs
    repo_pattern, _, tag_pattern = pattern.rpartition(":") if _has_tag(pattern) else (pattern, "", "")
    ref = parse(name, default_tag=False)
    try:
        pattern_ref = parse(repo_pattern, default_tag=False)
        repo_ok = pattern_ref.name == ref.name
    except InvalidArgument:
        # Globs in the repository part are not references; match both forms.
        repo_ok = (fnmatch.fnmatchcase(ref.name, repo_pattern)
                   or fnmatch.fnmatchcase(familiar(ref.name), repo_pattern))
    if not repo_ok:
        return False
    return not tag_pattern or fnmatch.fnmatchcase(ref.tag, tag_pattern)


def _has_tag(pattern: str) -> bool:
    colon = pattern.rfind(":")
    return colon > pattern.rfind("/")
