"""Go's text/template language, as docker's `--format` and `inspect -f` use it.

One implementation for every verb. What it covers: text and actions with `{{-`/`-}}`
trimming; pipelines with `|`; fields (`.A.B`, `$x.A`, `$`), map keys, methods of a row
(`.Label "key"`); literals (strings, raw strings, numbers, true/false/nil); variables
(`$x := ...`, `$x = ...`, `range $i, $e := ...`); `if`/`else if`/`else`, `range` (with
`else`), `with`, `end`; Go's functions (and, or, not, len, index, slice, eq, ne, lt, le,
gt, ge, print, printf, println) and docker's (json, join, split, title, upper, lower,
pad, truncate). The data are Python values: dicts (maps, or Struct for docker's structs,
where a missing field is an error as in Go), lists, strings, numbers, booleans, None.

    render(parse("{{.Name}} {{json .Labels}}"), {"Name": "web", "Labels": {"a": "b"}})
    -> 'web {"a":"b"}'
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
    from collections.abc import Callable


class _LazyJson:
    """json, imported when a template first needs it (ps's table does not)."""

    def __getattr__(self, name):
        import json
        return getattr(json, name)


_json = _LazyJson()


class TemplateError(ValueError):
    """A template that does not parse (`parsing`) or cannot run on the data: docker's
    "template: ..." errors."""

    def __init__(self, message: str, parsing: bool = True):
        super().__init__(message)
        self.parsing = parsing


class Struct(dict):
    """A docker struct (a ps row, an event): asking for a field it lacks is an error.
    `type_name` is the Go type docker's message names."""

    type_name = "struct"

    def __init__(self, *args, type_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        if type_name:
            self.type_name = type_name


NO_VALUE = "<no value>"


# -- lexing ------------------------------------------------------------------------------

def _split(source: str) -> list[tuple[str, str, int]]:
    """[("text", s, pos) | ("action", s, pos)], with {{- and -}} trimming applied."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while True:
        start = source.find("{{", pos)
        if start < 0:
            out.append(("text", source[pos:], pos))
            return out
        text = source[pos:start]
        inner_start = start + 2
        if source.startswith("{{- ", start) or source.startswith("{{-\t", start) or \
                source.startswith("{{-\n", start):
            text = text.rstrip(" \t\r\n")
            inner_start += 1
        out.append(("text", text, pos))
        end = _action_end(source, inner_start)
        if end < 0:
            raise TemplateError(f"template: :{_line(source, start)}: unclosed action")
        inner = source[inner_start:end]
        pos = end + 2
        if inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-"):
            inner = inner[:-1]
            while pos < len(source) and source[pos] in " \t\r\n":
                pos += 1
        out.append(("action", inner, start))


def _action_end(source: str, pos: int) -> int:
    """Where the action's }} is, skipping quoted strings."""
    while pos < len(source):
        c = source[pos]
        if c in "\"`'":
            close = source.find(c, pos + 1)
            while c == '"' and close > 0 and source[close - 1] == "\\" and not _even_backslashes(source, close):
                close = source.find(c, close + 1)
            if close < 0:
                return -1
            pos = close + 1
            continue
        if source.startswith("}}", pos):
            return pos
        pos += 1
    return -1


def _even_backslashes(s: str, quote: int) -> bool:
    n, i = 0, quote - 1
    while i >= 0 and s[i] == "\\":
        n, i = n + 1, i - 1
    return n % 2 == 0


def _line(source: str, pos: int) -> int:
    return source.count("\n", 0, pos) + 1


def _tokens(text: str) -> list[tuple[str, object]]:
    """An action's tokens: (kind, value) with kinds str, num, field, var, ident, op."""
    toks: list[tuple[str, object]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= len(text):
                raise TemplateError("template: unterminated quoted string")
            try:
                # A literal without escapes is itself; json (which imports re) reads the others.
                literal = text[i + 1:j]
                toks.append(("str", literal if "\\" not in literal else _json.loads(text[i:j + 1])))
            except ValueError:
                toks.append(("str", text[i + 1:j].encode().decode("unicode_escape")))
            i = j + 1
        elif c == "`":
            j = text.index("`", i + 1)
            toks.append(("str", text[i + 1:j]))
            i = j + 1
        elif c == "'":
            j = text.index("'", i + 1)
            toks.append(("num", ord(text[i + 1:j].encode().decode("unicode_escape"))))
            i = j + 1
        elif text.startswith(":=", i):
            toks.append(("op", ":="))
            i += 2
        elif c in "|(),=":
            toks.append(("op", c))
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in " \t\r\n|(),\"`" and not text.startswith(":=", j) and \
                    not (text[j] == "=" and j > i):
                j += 1
            word = text[i:j]
            if word.startswith("."):
                toks.append(("field", [p for p in word.split(".")[1:] if p]))
            elif word.startswith("$"):
                name, *fields = word.split(".")
                toks.append(("var", (name, fields)))
            elif word[0].isdigit() or (word[0] in "+-" and len(word) > 1):
                try:
                    toks.append(("num", int(word, 0)))
                except ValueError:
                    try:
                        toks.append(("num", float(word)))
                    except ValueError:
                        raise TemplateError(f'template: bad number syntax: "{word}"') from None
            else:
                # A field chain after a parenthesis, e.g. (index . 0).Name, arrives as ".Name".
                toks.append(("ident", word))
            i = j
    return toks


# -- parsing -----------------------------------------------------------------------------

class _Node:
    pass


class _Text(_Node):
    def __init__(self, text):
        self.text = text


class _Action(_Node):
    def __init__(self, pipe):
        self.pipe = pipe


class _Block(_Node):
    """if / range / with: a pipeline, the body, the else part."""

    def __init__(self, kind, decl, assign, commands):
        self.kind, self.decl, self.commands = kind, decl, commands
        self.body: list[_Node] = []
        self.orelse: list[_Node] = []


class _Pipe:
    def __init__(self, decl, assign, commands):
        self.decl, self.assign, self.commands = decl, assign, commands


class Template:
    """A parsed template; `render(data)` runs it."""

    def __init__(self, source: str, nodes: list[_Node]):
        self.source = source
        self.nodes = nodes

    def render(self, data, funcs: dict[str, Callable] | None = None, missing_key_error: bool = False) -> str:
        """`missing_key_error`: a map's missing key is an error, not <no value> (docker's inspect)."""
        out: list[str] = []
        ex = _Exec(self.source, {**FUNCS, **(funcs or {})})
        ex.missing_key_error = missing_key_error
        ex.run(self.nodes, data, {"$": data}, out)
        return "".join(out)


def parse(source: str) -> Template:
    stack: list[tuple[_Block, list[_Node]]] = []
    nodes: list[_Node] = []
    current = nodes
    for kind, text, pos in _split(source):
        if kind == "text":
            if text:
                current.append(_Text(text))
            continue
        stripped = text.strip()
        if stripped.startswith("/*") and stripped.endswith("*/"):
            continue
        toks = _tokens(text)
        if not toks:
            raise TemplateError(f"template: :{_line(source, pos)}: missing value for command")
        head = toks[0]
        word = head[1] if head[0] == "ident" else None
        if word in ("if", "range", "with"):
            block = _Block(word, *_pipeline(toks[1:], source, pos, allow_decl=True))
            current.append(block)
            stack.append((block, current))
            current = block.body
        elif word == "else":
            if not stack:
                raise TemplateError(f"template: :{_line(source, pos)}: unexpected {{{{else}}}}")
            block, parent = stack[-1]
            if current is block.orelse:
                raise TemplateError(f"template: :{_line(source, pos)}: expected end; found {{{{else}}}}")
            if len(toks) > 1 and toks[1] == ("ident", "if"):
                # {{else if x}} is {{else}}{{if x}} whose {{end}} closes both.
                inner = _Block("if", *_pipeline(toks[2:], source, pos, allow_decl=False))
                inner.chained = True
                block.orelse.append(inner)
                stack[-1] = (block, parent)
                stack.append((inner, block.orelse))
                current = inner.body
            else:
                current = block.orelse
        elif word == "end":
            if not stack:
                raise TemplateError(f"template: :{_line(source, pos)}: unexpected {{{{end}}}}")
            while True:
                block, current = stack.pop()
                if not getattr(block, "chained", False):
                    break
        elif word in ("define", "template", "block", "break", "continue"):
            raise TemplateError(f"template: :{_line(source, pos)}: {{{{{word}}}}} is not supported")
        else:
            current.append(_Action(_Pipe(*_pipeline(toks, source, pos, allow_decl=True))))
    if stack:
        raise TemplateError(f"template: :{_line(source, len(source))}: unexpected EOF")
    return Template(source, nodes)


def _pipeline(toks, source, pos, allow_decl):
    decl: list[str] = []
    assign = False
    # $x := ...  |  $i, $e := ...  |  $x = ...
    if allow_decl and toks and toks[0][0] == "var":
        names, i = [], 0
        while i < len(toks) and toks[i][0] == "var" and not toks[i][1][1]:
            names.append(toks[i][1][0])
            i += 1
            if i < len(toks) and toks[i] == ("op", ","):
                i += 1
                continue
            break
        if i < len(toks) and toks[i] in (("op", ":="), ("op", "=")):
            decl, assign = names, toks[i] == ("op", "=")
            toks = toks[i + 1:]
    commands = [[]]
    depth = 0
    groups: list[list] = [commands]
    for tok in toks:
        if tok == ("op", "("):
            sub = [[]]
            groups[-1][-1].append(("pipe", sub))
            groups.append(sub)
            depth += 1
        elif tok == ("op", ")"):
            if depth == 0:
                raise TemplateError(f"template: :{_line(source, pos)}: unexpected right paren")
            groups.pop()
            depth -= 1
        elif tok == ("op", "|"):
            groups[-1].append([])
        elif tok[0] == "ident" and tok[1].startswith(".") and groups[-1][-1]:
            # (pipeline).Field: field access on the previous operand.
            prev = groups[-1][-1].pop()
            groups[-1][-1].append(("chain", (prev, [p for p in tok[1].split(".") if p])))
        else:
            if tok[0] == "ident" and tok[1] not in ("true", "false", "nil") and tok[1] not in FUNCS:
                # Go's parser knows its functions: an unknown one fails before anything runs.
                raise TemplateError(f'template: :{_line(source, pos)}: function "{tok[1]}" not defined')
            groups[-1][-1].append(tok)
    if depth:
        raise TemplateError(f"template: :{_line(source, pos)}: unclosed left paren")
    if any(not c for c in commands):
        raise TemplateError(f"template: :{_line(source, pos)}: missing value for command")
    return decl, assign, commands


# -- execution ---------------------------------------------------------------------------

class _Missing:
    """A map's missing key: prints as <no value>, is false."""

    def __bool__(self):
        return False

    def __repr__(self):
        return NO_VALUE


MISSING = _Missing()


class _Exec:
    def __init__(self, source: str, funcs: dict[str, Callable]):
        self.source = source
        self.funcs = funcs
        self.missing_key_error = False

    def fail(self, message: str):
        raise TemplateError(f"template: :1: executing \"\" {message}", parsing=False)

    def run(self, nodes, dot, scope, out) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(text(value))
            else:
                self.block(node, dot, scope, out)

    def block(self, node: _Block, dot, scope, out) -> None:
        inner = dict(scope)
        value = self.commands(node.commands, dot, inner)
        names = node.decl
        if node.kind == "range":
            items = _items(value)
            if items is None:
                self.fail(f"range can't iterate over {text(value)}")
            if not items:
                self.run(node.orelse, dot, scope, out)
                return
            for key, item in items:
                if len(names) == 1:
                    inner[names[0]] = item
                elif len(names) == 2:
                    inner[names[0]], inner[names[1]] = key, item
                self.run(node.body, item, inner, out)
            return
        if names:
            inner[names[0]] = value
        if truth(value):
            self.run(node.body, value if node.kind == "with" else dot, inner, out)
        else:
            self.run(node.orelse, dot, inner if node.kind == "if" else scope, out)

    def pipe(self, pipe: _Pipe, dot, scope):
        value = self.commands(pipe.commands, dot, scope)
        for name in pipe.decl:
            if pipe.assign and name not in scope:
                self.fail(f"undefined variable: {name}")
            scope[name] = value
        return value

    def commands(self, commands, dot, scope):
        value = _NOARG = object()
        for command in commands:
            value = self.command(command, dot, scope, None if value is _NOARG else (value,))
        return value

    def command(self, command, dot, scope, piped):
        head, args = command[0], command[1:]
        if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
            fn = self.funcs.get(head[1])
            if fn is None:
                self.fail(f'function "{head[1]}" not defined')
            values = [self.operand(a, dot, scope) for a in args] + list(piped or ())
            try:
                return fn(*values)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                self.fail(f"error calling {head[1]}: {exc}")
        if head[0] in ("field", "var", "chain") and (args or piped):
            # A method call: .Label "key"
            target = self.operand(head, dot, scope, call=True)
            values = [self.operand(a, dot, scope) for a in args] + list(piped or ())
            if callable(target):
                return target(*values)
            self.fail(f"can't give argument to non-function {_describe(head)}")
        if args or piped:
            self.fail(f"can't give argument to non-function {_describe(head)}")
        return self.operand(head, dot, scope)

    def operand(self, tok, dot, scope, call=False):
        kind, value = tok
        if kind in ("str", "num"):
            return value
        if kind == "ident":
            if value in ("true", "false"):
                return value == "true"
            if value == "nil":
                return None
            fn = self.funcs.get(value)
            if fn is None:
                self.fail(f'function "{value}" not defined')
            return fn()
        if kind == "field":
            return self.fields(dot, value, call)
        if kind == "var":
            name, fields = value
            if name not in scope:
                self.fail(f"undefined variable: {name}")
            return self.fields(scope[name], fields, call)
        if kind == "pipe":
            return self.commands(value, dot, scope)
        if kind == "chain":
            base, fields = value
            return self.fields(self.operand(base, dot, scope), fields, call)
        self.fail(f"unexpected {value}")

    def fields(self, value, names, call=False):
        for i, name in enumerate(names):
            if isinstance(value, dict):
                if name in value:
                    value = value[name]
                elif isinstance(value, Struct):
                    self.fail(f"at <.{name}>: can't evaluate field {name} in type {value.type_name}")
                elif self.missing_key_error:
                    self.fail(f'at <.{name}>: map has no entry for key "{name}"')
                else:
                    value = MISSING
            elif value is None or value is MISSING:
                self.fail(f"at <.{name}>: nil pointer evaluating interface {{}}.{name}")
            else:
                self.fail(f"at <.{name}>: can't evaluate field {name} in type {_go_type(value)}")
            if callable(value) and not (call and i == len(names) - 1):
                value = value()
        return value


def _describe(tok) -> str:
    kind, value = tok
    if kind == "field":
        return "." + ".".join(value)
    if kind == "var":
        return ".".join([value[0], *value[1]])
    return str(value)


def _items(value):
    if value is None or value is MISSING:
        return []
    if isinstance(value, dict):
        return sorted(value.items(), key=lambda kv: str(kv[0]))
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return [(i, i) for i in range(value)]
    return None


def truth(value) -> bool:
    if value is None or value is MISSING:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def _go_type(value) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), type(value).__name__)


# -- printing values as Go's fmt does ----------------------------------------------------

def text(value) -> str:
    """%v: how a value prints in a template's output."""
    if value is MISSING:
        return NO_VALUE
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{text(k)}:{text(v)}" for k, v in sorted(value.items(),
                                                                           key=lambda kv: str(kv[0]))) + "]"
    return str(value)


def _go_float(value: float) -> str:
    # Go's %v of a float64: 1 for 1.0, 1.5 for 1.5 (the shortest form that reads back).
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _marshalable(value):
    """Go's json.Marshal order: a struct's fields as declared, a map's keys sorted; methods left out."""
    if value is MISSING:
        return None
    if isinstance(value, dict):
        items = value.items() if isinstance(value, Struct) else sorted(value.items(), key=lambda kv: str(kv[0]))
        return {str(k): _marshalable(v) for k, v in items if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_marshalable(v) for v in value]
    return value


def go_json(value) -> str:
    """Go's json.Marshal: compact, with <, > and & escaped."""
    out = _json.dumps(_marshalable(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_quote(s) -> str:
    return _json.dumps(str(s), ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")


def sprintf(fmt: str, *args) -> str:
    """Go's fmt.Sprintf for the verbs templates use: %v %s %d %q %t %x %X %o %f %e %g %c %%."""
    out, i, n = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        flags, verb = fmt[i + 1:j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[n]
        n += 1
        try:
            if verb in "vs":
                s = text(arg)
                out.append(("%" + flags + "s") % s)
            elif verb == "q":
                out.append(("%" + flags + "s") % _go_quote(text(arg)))
            elif verb == "t":
                out.append(("%" + flags + "s") % text(arg))
            elif verb == "c":
                out.append(chr(arg))
            elif verb in "dxXob":
                out.append(("%" + flags + verb) % int(arg) if verb != "b" else format(int(arg), "b"))
            elif verb in "feEgG":
                out.append(("%" + flags + verb) % float(arg))
            else:
                out.append(f"%!{verb}({text(arg)})")
        except (TypeError, ValueError):
            out.append(f"%!{verb}({_go_type(arg)}={text(arg)})")
    if n < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(a)}={text(a)}" for a in args[n:]) + ")")
    return "".join(out)


def _print(*args) -> str:
    # Go's Sprint: spaces between operands when neither is a string.
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(text(a))
    return "".join(out)


def _index(value, *keys):
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, MISSING if not isinstance(value, Struct) else None)
        elif isinstance(value, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise IndexError(f"index out of range: {key}")
            value = value[key]
        else:
            raise TypeError(f"can't index item of type {_go_type(value)}")
    return value


def _len(value) -> int:
    if value is None or value is MISSING:
        raise TypeError("len of nil pointer")
    if not isinstance(value, (str, list, tuple, dict)):
        raise TypeError(f"len of type {_go_type(value)}")
    return len(value)


def _compare(op):
    def compare(a, *bs):
        if op == "eq":
            return any(a == b for b in bs)
        b = bs[0]
        return {"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
    return compare


def _and(*args):
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _or(*args):
    for a in args:
        if truth(a):
            return a
    return args[-1]


def _slice(value, *idx):
    return value[idx[0] if idx else 0: idx[1] if len(idx) > 1 else None]


def _title(s) -> str:
    # Go's strings.Title: the first letter of each word upper-cased, the rest unchanged.
    s = text(s)
    return "".join(c.upper() if i == 0 or not s[i - 1].isalnum() else c for i, c in enumerate(s))


def _pad(s, left: int, right: int) -> str:
    return " " * left + text(s) + " " * right


def _truncate(s, length: int) -> str:
    s = text(s)
    return s[:length]


FUNCS: dict[str, Callable] = {
    # Go's text/template built-ins
    "and": _and, "or": _or, "not": lambda a: not truth(a), "len": _len, "index": _index,
    "slice": _slice, "print": _print, "printf": sprintf,
    "println": lambda *a: " ".join(text(x) for x in a) + "\n",
    "eq": _compare("eq"), "ne": _compare("ne"), "lt": _compare("lt"), "le": _compare("le"),
    "gt": _compare("gt"), "ge": _compare("ge"),
    "html": lambda *a: _print(*a).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
    "urlquery": lambda *a: __import__("urllib.parse").parse.quote_plus(_print(*a)),
    # docker's additions (cli/templates)
    "json": go_json, "join": lambda items, sep: sep.join(text(i) for i in (items or [])),
    "split": lambda s, sep: text(s).split(sep), "title": _title,
    "upper": lambda s: text(s).upper(), "lower": lambda s: text(s).lower(),
    "pad": _pad, "truncate": _truncate,
}
