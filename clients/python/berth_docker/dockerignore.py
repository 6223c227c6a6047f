""".dockerignore: which paths of a build context a build leaves out, by docker's rules.

    # comment
    *.log          a pattern matches a path, or any of its parent directories
    **/tmp         ** matches any number of directories (none too)
    !keep.log      ! makes an exception; the last pattern that matches decides
    /build         a leading / (and ./) means the same as none

Patterns are cleaned like Go's filepath.Clean, as docker does, so `a//b/../c` is
`a/c`. Used by the CLI to leave files out of the tar it sends, and by the build
service to apply the same rules to a context that arrives whole.
"""

from __future__ import annotations

import posixpath
import re


class _Pattern:
    # A plain class, not a dataclass: the CLI imports this module, and the import of
    # dataclasses (inspect, ast) would cost every `berth build` with a .dockerignore.
    __slots__ = ("regex", "exclusion", "depth")

    def __init__(self, regex: re.Pattern, exclusion: bool, depth: int):
        self.regex = regex
        self.exclusion = exclusion
        self.depth = depth       # path components in the pattern


def parse(text: str) -> list[str]:
    """The patterns of a .dockerignore file, in order, comments and blanks dropped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line)
    return out


class Matcher:
    def __init__(self, patterns: list[str]):
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            exclusion = raw.startswith("!")
            text = raw[1:].strip() if exclusion else raw
            if not text:
                continue
            text = posixpath.normpath(text).lstrip("/")
            if text in (".", ""):
                continue
            self.patterns.append(_Pattern(_compile(text), exclusion, text.count("/") + 1))
        self.exceptions = any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context path (relative, '/'-separated) is left out."""
        path = posixpath.normpath(path).lstrip("/")
        parts = path.split("/")
        matched = False
        for p in self.patterns:
            if p.exclusion == matched:
                # Only a pattern that could change the answer is worth trying.
                hit = bool(p.regex.fullmatch(path))
                if not hit:
                    # "dir" also matches everything under dir.
                    for i in range(1, len(parts)):
                        if p.regex.fullmatch("/".join(parts[:i])):
                            hit = True
                            break
                if hit:
                    matched = not p.exclusion
        return matched


def _compile(pattern: str) -> re.Pattern:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    # "**/" is any number of leading directories, none included.
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)
