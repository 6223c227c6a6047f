"""The Dockerfile frontend: text into instructions, grouped into stages.

Parsing follows the Dockerfile reference in this order:

    # syntax=docker/dockerfile:1      parser directives: only at the very top
    # escape=`                        (the escape character, \\ or `)
    ARG BASE=busybox                  ARGs before the first FROM: usable in FROMs
    FROM $BASE AS build               a stage, named or known by its index
    RUN make \\                        continuation: the escape char ends the line;
        # a comment inside            comment and empty lines inside are dropped
        install
    RUN <<EOF                         a heredoc: the lines up to EOF belong to it
    echo hi
    EOF

Words are expanded later, when the values of ARG and ENV are known (see
`expand` and `split_words`), exactly where docker expands them: FROM, COPY,
ADD, ENV, ARG, LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL; never in RUN,
CMD or ENTRYPOINT, whose shell does it. Every error names its line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from services.common.errors import InvalidArgument

INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})
# Flags each instruction accepts (--name=value); any other is an error naming it.
FLAGS = {
    "FROM": {"platform"},
    "RUN": {"mount", "network", "security"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "link", "keep-git-dir", "checksum", "exclude"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
# The frontends whose language this parser speaks: `# syntax=` naming another is refused.
SYNTAX = re.compile(r"^(docker\.io/)?docker/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([a-zA-Z_][a-zA-Z0-9_]*)\2")


def fail(line: int, message: str) -> InvalidArgument:
    return InvalidArgument(f"Dockerfile:{line}: {message}")


@dataclass(frozen=True)
class Heredoc:
    name: str
    content: str
    # `<<"EOF"` / `<<'EOF'`: no expansion of the content.
    quoted: bool


@dataclass(frozen=True)
class Instruction:
    keyword: str          # upper case: "RUN"
    args: str             # the text after the keyword and its flags
    line: int             # first line, from 1
    original: str         # as written (continuations joined), for messages and history
    flags: tuple[tuple[str, str], ...] = ()
    heredocs: tuple[Heredoc, ...] = ()

    def flag(self, name: str) -> str | None:
        values = [v for k, v in self.flags if k == name]
        return values[-1] if values else None

    def flag_all(self, name: str) -> list[str]:
        return [v for k, v in self.flags if k == name]

    def json_args(self) -> list[str] | None:
        """The exec form (`["a", "b"]`), or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


@dataclass
class Stage:
    index: int
    name: str             # lower case, or "" when unnamed
    base: str             # the FROM image or stage, unexpanded
    platform: str         # --platform, unexpanded
    line: int
    instructions: list[Instruction] = field(default_factory=list)
    original: str = ""

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    escape: str
    syntax: str
    # ARGs before the first FROM: their defaults are what FROM lines can use.
    meta_args: list[Instruction]
    stages: list[Stage]

    def stage(self, ref: str) -> Stage | None:
        """The stage a FROM or --from names: a name (any case) or an index."""
        low = ref.lower()
        for s in self.stages:
            if s.name and s.name == low:
                return s
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"Dockerfile: not UTF-8 text ({exc})") from None
    lines = text.split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    escape, syntax, start = _directives(lines)
    instructions = _instructions(lines, start, escape)
    return _stages(instructions, escape, syntax)


def _directives(lines: list[str]) -> tuple[str, str, int]:
    escape, syntax, seen = "\\", "", set()
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        name, value = m.group(1).lower(), m.group(2)
        if name in seen:
            raise fail(i + 1, f"only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise fail(i + 1, f"invalid escape token {value!r}: it must be \\ or `")
            escape = value
        elif name == "syntax":
            if not SYNTAX.match(value):
                raise fail(i + 1, f"syntax {value!r}: berth builds with its own Dockerfile frontend "
                                  "and cannot run another one")
            syntax = value
        # Unknown directives are comments, as docker treats them.
        i += 1
    return escape, syntax, i


def _instructions(lines: list[str], start: int, escape: str) -> list[Instruction]:
    out: list[Instruction] = []
    i = start
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        parts: list[str] = []
        text = raw.lstrip()
        while True:
            body = text.rstrip()
            if body.endswith(escape):
                parts.append(body[:-1])
                i += 1
                # Comment and empty lines inside a continuation are dropped.
                while i < n and (not lines[i].strip() or lines[i].strip().startswith("#")):
                    i += 1
                if i >= n:
                    break
                text = lines[i]
                continue
            parts.append(body)
            i += 1
            break
        joined = "".join(parts).strip()
        keyword, _, rest = joined.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise fail(first, f"unknown instruction: {keyword}")
        rest = rest.strip()
        flags, rest = _flags(keyword, rest, first)
        heredocs: list[Heredoc] = []
        if keyword in ("RUN", "COPY", "ADD"):
            for m in _HEREDOC.finditer(rest):
                chomp, quote, name = m.group(1), m.group(2), m.group(3)
                body: list[str] = []
                while True:
                    if i >= n:
                        raise fail(first, f"heredoc {name} is not terminated")
                    ln = lines[i]
                    i += 1
                    check = ln.lstrip("\t") if chomp else ln
                    if check == name:
                        break
                    body.append(check)
                heredocs.append(Heredoc(name, "".join(b + "\n" for b in body), bool(quote)))
        out.append(Instruction(keyword, rest, first, joined, tuple(flags), tuple(heredocs)))
    return out


def _flags(keyword: str, rest: str, line: int) -> tuple[list[tuple[str, str]], str]:
    flags: list[tuple[str, str]] = []
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if not eq and name in ("link", "parents", "keep-git-dir"):
            value = "true"
        elif not eq:
            raise fail(line, f"{keyword} flag --{name} needs a value (--{name}=...)")
        if name not in FLAGS.get(keyword, set()):
            raise fail(line, f"unknown flag for {keyword}: --{name}")
        flags.append((name, _unquote(value)))
        rest = after.lstrip()
    return flags, rest


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _stages(instructions: list[Instruction], escape: str, syntax: str) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = split_words(ins.args, escape, None, ins.line)
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
                if not re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
                    raise fail(ins.line, f"invalid stage name {words[2]!r}")
                if any(s.name == name for s in stages):
                    raise fail(ins.line, f"duplicate stage name {words[2]!r}")
            elif len(words) == 1:
                name = ""
            else:
                raise fail(ins.line, "FROM requires one image, optionally followed by AS <name>")
            stages.append(Stage(len(stages), name, words[0], ins.flag("platform") or "", ins.line,
                                original=ins.original))
        elif not stages:
            if ins.keyword != "ARG":
                raise fail(ins.line, f"{ins.keyword} before the first FROM: only ARG may come first")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise InvalidArgument("Dockerfile: no FROM instruction: the file has no build stage")
    return Dockerfile(escape, syntax, meta, stages)


# -- words and variables ---------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def expand(text: str, env: dict[str, str] | None, escape: str = "\\", line: int = 0) -> str:
    """One word with quotes removed and variables substituted, docker's shell-lexer way."""
    words = _lex(text, escape, env, line, split=False)
    return words[0] if words else ""


def split_words(text: str, escape: str = "\\", env: dict[str, str] | None = None,
                line: int = 0) -> list[str]:
    """Whitespace-separated words, quotes removed; variables substituted when env is given."""
    return _lex(text, escape, env, line, split=True)


def _lex(text: str, escape: str, env: dict[str, str] | None, line: int, split: bool) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    has_word = False
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                cur.append(c)
            i += 1
            continue
        if c == escape and i + 1 < n:
            nxt = text[i + 1]
            if quote == '"' and nxt not in ('"', "$", escape):
                cur.append(c)
            cur.append(nxt)
            has_word = True
            i += 2
            continue
        if c == "$" and env is not None:
            value, i = _variable(text, i, escape, env, line)
            cur.append(value)
            has_word = has_word or bool(value) or quote == '"'
            continue
        if quote == '"':
            if c == '"':
                quote = ""
            else:
                cur.append(c)
            i += 1
            continue
        if c in "'\"":
            quote = c
            has_word = True
            i += 1
            continue
        if split and c in " \t":
            if cur or has_word:
                words.append("".join(cur))
            cur, has_word = [], False
            i += 1
            continue
        cur.append(c)
        has_word = True
        i += 1
    if quote:
        raise fail(line, f"unmatched {quote} in: {text}")
    if cur or has_word or not split:
        words.append("".join(cur))
    return words


def _variable(text: str, i: int, escape: str, env: dict[str, str], line: int) -> tuple[str, int]:
    """The value of the variable at text[i] ('$'), and where the text goes on."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "{":
        end = _closing_brace(text, i + 2)
        if end < 0:
            raise fail(line, f"missing '}}' in: {text}")
        inner = text[i + 2:end]
        m = _NAME.match(inner)
        if not m:
            raise fail(line, f"bad substitution in: {text}")
        name, op = m.group(0), inner[m.end():]
        value = env.get(name)
        if not op:
            return value or "", end + 1
        for form in (":-", ":+", ":?", "-", "+", "?"):
            if op.startswith(form):
                word = expand(op[len(form):], env, escape, line)
                unset = value is None or (form.startswith(":") and value == "")
                if form.endswith("-"):
                    return (word if unset else value), end + 1
                if form.endswith("+"):
                    return ("" if unset else word), end + 1
                if unset:
                    raise fail(line, f"{name}: {word or 'is not set'}")
                return value, end + 1
        raise fail(line, f"unsupported modifier ({op}) in substitution: {text}")
    m = _NAME.match(text, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(0), ""), m.end()


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def key_values(ins: Instruction, escape: str, env: dict[str, str] | None,
               legacy_single: bool = True) -> list[tuple[str, str]]:
    """ENV/LABEL pairs: `k=v k2="v 2"`, or docker's legacy one-pair form `ENV k v w`."""
    text = ins.args.strip()
    if not text:
        raise fail(ins.line, f"{ins.keyword} requires at least one argument")
    first_raw = text.split(None, 1)[0]
    if legacy_single and "=" not in first_raw:
        key, _, value = text.partition(" ")
        if not value.strip() and ins.keyword == "ENV":
            raise fail(ins.line, "ENV must have two arguments: ENV <key> <value> or ENV <key>=<value>")
        return [(key, expand(value.strip(), env, escape, ins.line) if env is not None
                 else value.strip())]
    pairs = []
    # Split on unquoted whitespace first, then expand each word on its own.
    for word in _raw_words(text, escape):
        key, eq, value = word.partition("=")
        if not eq:
            raise fail(ins.line, f"{ins.keyword} names {key!r} without a value: use {key}=<value>")
        pairs.append((expand(key, env, escape, ins.line), expand(value, env, escape, ins.line)))
    return pairs


def _raw_words(text: str, escape: str) -> list[str]:
    """Words split on unquoted whitespace, quotes and escapes kept as written."""
    words, cur, quote, i = [], [], "", 0
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and quote != "'":
            cur.append(text[i:i + 2])
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in " \t":
            if cur:
                words.append("".join(cur))
                cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if cur:
        words.append("".join(cur))
    return words
