"""The command line read without importing argparse when it can be: argparse (with re,
gettext and enum) costs more to import than the rest of `berth ps` together.

A verb's flags are declared with argparse's own calls (add_argument, add_subparsers,
add_parser) on a `Parser` of this module, which records them. `Parser.parse` reads the
everyday forms itself and gives the namespace argparse would give:

    berth ps -a --format '{{.Names}}'      exact names, a value in the next word
    berth logs --tail=5 web                --long=value, positionals in one run

Everything else raises `Fallback`: help, any mistake, an abbreviated flag, bundled short
flags (`-it`), a value that starts with "-", a flag with an action of its own. The caller
then replays the recorded calls into argparse (`Parser.to_argparse`), so argparse stays the
judge of every command line this module does not read: its help, its error messages, its
answers. tests/unit/cli/test_argv.py checks that both read every verb's flags alike.
"""

from __future__ import annotations

SUPPRESS = "==SUPPRESS=="   # argparse.SUPPRESS
REMAINDER = "..."           # argparse.REMAINDER

_CONSTANTS = {"store_true": True, "store_false": False}
_KNOWN = {"action", "dest", "default", "type", "choices", "required", "help", "metavar", "nargs"}


class Fallback(Exception):
    """A command line for argparse to read."""


class Namespace:
    """What argparse.Namespace is to its parser: the parsed values as attributes."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __eq__(self, other) -> bool:
        return vars(self) == vars(other)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


class Action:
    """One add_argument call: its names and keywords, and what argparse would make of them."""

    def __init__(self, names: tuple[str, ...], kwargs: dict):
        self.names, self.kwargs = names, kwargs
        self.option_strings = [n for n in names if n.startswith("-")]
        action = kwargs.get("action", "store")
        self.action = action
        if self.option_strings:
            longs = [n for n in self.option_strings if n.startswith("--")]
            derived = (longs or self.option_strings)[0].lstrip("-").replace("-", "_")
            self.dest = kwargs.get("dest") or derived
        else:
            self.dest = names[0]
        zero = action in ("store_true", "store_false", "help")
        self.nargs = kwargs.get("nargs", 0 if zero else None)
        self.default = kwargs.get("default", SUPPRESS if action == "help" else not _CONSTANTS[action]
                                  if action in _CONSTANTS else None)
        self.type = kwargs.get("type")
        self.choices = kwargs.get("choices")
        self.help = kwargs.get("help")
        # (A positional is always matched, if only by nothing, when `parse` reads the line.)
        self.required = kwargs.get("required", False) if self.option_strings else self.nargs not in ("?", "*")
        # The forms `parse` reads itself; anything else is argparse's.
        if self.option_strings:
            self.fast = (action in _CONSTANTS and "nargs" not in kwargs) or \
                (action in ("store", "append") and self.nargs is None)
        else:
            self.fast = action == "store" and self.nargs in (None, "?", "+", "*", REMAINDER) and \
                not (self.nargs == "*" and self.choices is not None)
        self.fast = self.fast and set(kwargs) <= _KNOWN

    def convert(self, word: str, check: bool = True):
        if self.type is not None:
            try:
                word = self.type(word)
            except Exception:  # noqa: BLE001 — argparse words the error
                raise Fallback from None
        if check and self.choices is not None and word not in self.choices:
            raise Fallback
        return word

    @property
    def least(self) -> int:
        return 1 if self.nargs in (None, "+") else 0

    def positional_value(self, words: list[str]):
        if self.nargs is None:
            return self.convert(words[0])
        if self.nargs == "?":
            if words:
                return self.convert(words[0])
            value = self.default
            if isinstance(value, str):
                value = self.convert(value, check=False)
            if self.choices is not None and value not in self.choices:
                raise Fallback
            return value
        if self.nargs == REMAINDER:
            return [self.convert(w, check=False) for w in words]
        if not words:  # "*" with nothing
            return self.default if self.default is not None else []
        return [self.convert(w) for w in words]


class Subparsers:
    """One add_subparsers call, with the verbs added to it."""

    option_strings: list[str] = []
    nargs = "A..."  # argparse.PARSER
    required = False
    fast = True
    help = None

    def __init__(self, parser: Parser, kwargs: dict):
        self.parent, self.kwargs = parser, kwargs
        self.dest = kwargs.get("dest", SUPPRESS)
        self.default = None
        self.choices: dict[str, Parser] = {}
        self.added: list[tuple[str, dict, Parser]] = []

    def add_parser(self, name: str, **kwargs) -> Parser:
        parser = Parser(prog=f"{self.parent.prog} {name}", add_help=kwargs.get("add_help", True))
        for alias in (name, *kwargs.get("aliases", ())):
            self.choices[alias] = parser
        self.added.append((name, kwargs, parser))
        return parser


class Parser:
    """Records an argparse parser's declaration; reads the everyday command lines itself."""

    def __init__(self, prog: str = "", add_help: bool = True, **kwargs):
        self.prog, self.kwargs = prog, {"prog": prog, "add_help": add_help, **kwargs}
        self._actions: list = []
        self._option_string_actions: dict[str, Action] = {}
        self._calls: list[tuple[str, tuple, dict]] = []
        if add_help:  # argparse's own -h/--help: made by argparse itself on replay
            self._add(Action(("-h", "--help"), {"action": "help", "default": SUPPRESS}))

    def _add(self, action: Action) -> Action:
        self._actions.append(action)
        for name in action.option_strings:
            self._option_string_actions[name] = action
        return action

    def add_argument(self, *names: str, **kwargs) -> Action:
        self._calls.append(("add_argument", names, kwargs))
        return self._add(Action(names, kwargs))

    def add_subparsers(self, **kwargs) -> Subparsers:
        sub = Subparsers(self, kwargs)
        self._calls.append(("add_subparsers", (), sub))
        self._actions.append(sub)
        return sub

    @property
    def subparsers(self) -> Subparsers | None:
        return next((a for a in self._actions if isinstance(a, Subparsers)), None)

    # -- argparse, the judge ---------------------------------------------------------

    def to_argparse(self, parser_class):
        """The same declaration as an argparse parser of `parser_class`."""
        real = parser_class(**self.kwargs)
        self._replay(real, parser_class)
        return real

    def _replay(self, real, parser_class) -> None:
        import argparse
        # argparse tells SUPPRESS by identity: its own string, not an equal one.
        own = {SUPPRESS: argparse.SUPPRESS, REMAINDER: argparse.REMAINDER}
        for call, names, kwargs in self._calls:
            if call == "add_argument":
                real.add_argument(*names, **{k: own.get(v, v) if isinstance(v, str) else v
                                             for k, v in kwargs.items()})
                continue
            sub = kwargs
            sub_kwargs = dict(sub.kwargs)
            if "parser_class" in sub_kwargs:
                sub_kwargs["parser_class"] = parser_class
            real_sub = real.add_subparsers(**sub_kwargs)
            for name, parser_kwargs, parser in sub.added:
                parser._replay(real_sub.add_parser(name, **parser_kwargs), parser_class)

    # -- the everyday forms ----------------------------------------------------------

    def parse(self, args: list[str]) -> Namespace:
        """argparse's namespace for `args`, or Fallback when argparse must read them."""
        ns = Namespace()
        for action in self._actions:
            if action.dest is not SUPPRESS and action.default is not SUPPRESS:
                setattr(ns, action.dest, action.default)
        seen = set()
        words: list[str] = []
        words_ended = False
        sub = self.subparsers
        i = 0
        while i < len(args):
            word = args[i]
            if word.startswith("-") and word != "-":
                if words and any(a.nargs == REMAINDER for a in self._actions):
                    raise Fallback  # argparse's REMAINDER takes the flags after it too
                words_ended = bool(words)
                name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
                action = self._option_string_actions.get(name)
                if action is None or not action.fast:
                    raise Fallback
                if action.nargs == 0:
                    if eq:
                        raise Fallback
                    value = _CONSTANTS[action.action]
                    i += 1
                else:
                    if not eq:
                        if i + 1 == len(args) or args[i + 1].startswith("-") and args[i + 1] != "-":
                            raise Fallback
                        value = args[i + 1]
                        i += 1
                    i += 1
                    value = action.convert(value)
                if action.action == "append":
                    value = [*(getattr(ns, action.dest, None) or ()), value]
                setattr(ns, action.dest, value)
                seen.add(action)
                continue
            if sub is not None:
                parser = sub.choices.get(word)
                if parser is None or words:
                    raise Fallback
                setattr(ns, sub.dest, word)
                for key, value in vars(parser.parse(args[i + 1:])).items():
                    setattr(ns, key, value)
                seen.add(sub)
                break
            if words_ended:  # positionals on both sides of a flag: argparse's own rules
                raise Fallback
            words.append(word)
            i += 1
        self._place(ns, words, seen)
        for action in self._actions:
            if action in seen:
                continue
            if action.required:
                raise Fallback
            if isinstance(action.default, str) and action.type is not None and action.option_strings:
                setattr(ns, action.dest, action.convert(action.default, check=False))
        return ns

    def _place(self, ns: Namespace, words: list[str], seen: set) -> None:
        """The positional words onto the positional arguments, as argparse's patterns match."""
        positionals = [a for a in self._actions if not a.option_strings and not isinstance(a, Subparsers)]
        if any(not a.fast for a in positionals):
            raise Fallback
        at = 0
        for n, action in enumerate(positionals):
            room = len(words) - at - sum(a.least for a in positionals[n + 1:])
            if room < action.least:
                raise Fallback
            take = 1 if action.nargs is None else min(1, room) if action.nargs == "?" else room
            setattr(ns, action.dest, action.positional_value(words[at:at + take]))
            seen.add(action)
            at += take
        if at != len(words):
            raise Fallback
