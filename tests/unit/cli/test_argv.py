"""berth_cli.argv reads the everyday command lines as argparse does, and hands it the rest.

Every flag and positional of every verb is tried alone, in its `--flag=value` form,
before and after the positionals, and in random mixes; whenever argv.Parser answers,
argparse (built from the same declaration) must give the same namespace, and whatever
argparse refuses argv.Parser must leave to it.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from berth_cli import argv as arguments
from berth_cli import cli

TOP = cli.build_parser()
JUDGE = cli.to_argparse(TOP)


def _judge(args: list[str]):
    try:
        return vars(JUDGE.parse_args(args))
    except cli.UsageError:
        return None


def _fast(args: list[str]):
    try:
        return vars(TOP.parse(args))
    except arguments.Fallback:
        return None


def _verbs(parser: arguments.Parser, path: tuple[str, ...] = ()):
    sub = parser.subparsers
    if sub is None:
        yield path, parser
        return
    yield path, parser
    for name, p in sub.choices.items():
        yield from _verbs(p, (*path, name))


VERBS = [(path, p) for path, p in _verbs(TOP) if path]


def _value(action) -> str:
    if action.choices:
        return list(action.choices)[0]
    return "7" if action.type is int else "val"


def _positionals(parser: arguments.Parser, more: bool) -> list[str]:
    words = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, arguments.Subparsers):
            continue
        if action.nargs is None:
            words.append(_value(action))
        elif action.nargs == "?" and more:
            words.append(_value(action))
        elif action.nargs in ("+", "*") or (action.nargs == arguments.REMAINDER and more):
            words += [_value(action)] * (2 if more or action.nargs == "+" else 0)
    return words


def _flag_forms(action) -> list[list[str]]:
    if action.nargs == 0:
        return [[name] for name in action.option_strings]
    value = _value(action)
    forms = [[name, value] for name in action.option_strings]
    forms += [[f"{name}={value}"] for name in action.option_strings if name.startswith("--")]
    return forms


def _lines():
    for path, parser in VERBS:
        if parser.subparsers is not None:
            yield [*path]
            continue
        for more in (False, True):
            words = _positionals(parser, more)
            yield [*path, *words]
            for action in parser._actions:
                if not action.option_strings or action.action == "help":
                    continue
                for form in _flag_forms(action):
                    yield [*path, *form, *words]
                    yield [*path, *words, *form]


def _mixes(count: int = 400):
    rng = random.Random(14)
    leaves = [(path, p) for path, p in VERBS if p.subparsers is None]
    for _ in range(count):
        path, parser = rng.choice(leaves)
        flags = [a for a in parser._actions if a.option_strings and a.action != "help"]
        chosen = [w for a in rng.sample(flags, min(len(flags), rng.randint(1, 4)))
                  for w in rng.choice(_flag_forms(a))]
        words = _positionals(parser, rng.random() < 0.5)
        cut = rng.randint(0, len(chosen))
        yield [*rng.choice(([], ["-H", "unix:///x.sock"])), *path, *chosen[:cut], *words, *chosen[cut:]]


@pytest.mark.parametrize("group", ["each flag", "mixes"])
def test_fast_reading_agrees_with_argparse(group):
    lines = list(_lines()) if group == "each flag" else list(_mixes())
    answered = 0
    for args in lines:
        fast = _fast(args)
        if fast is None:
            continue
        answered += 1
        assert fast == _judge(args), args
    assert answered > len(lines) // 2, "the fast reader left most lines to argparse"


@pytest.mark.parametrize("args", [
    ["ps", "-a", "--bogus"], ["ps", "--all=yes"], ["stop", "-t", "soon", "web"], ["rm"],
    ["inspect", "--type", "volume", "x"], ["logs", "a", "b"], ["tag", "a"], ["ps", "--no-tr"],
    ["rm", "a", "-f", "b"], ["kill", "-s"], ["completion", "tcsh"], ["ps", "--help"], ["stop", "-t", "-1", "w"],
    ["volume", "ls", "-qf", "x"], ["run", "--add-host", "a:1.2.3.4", "busybox"], ["--", "ps"],
])
def test_what_argparse_must_read_is_left_to_it(args):
    with pytest.raises(arguments.Fallback):
        TOP.parse(args)


def test_the_everyday_verbs_import_no_argparse():
    code = ("import sys\nfrom berth_cli import cli\n"
            "for line in (['ps', '-a'], ['images'], ['inspect', '-f', '{{.Id}}', 'web'], ['start', 'web'],\n"
            "             ['stop', '-t', '5', 'web'], ['rm', '-f', 'web'], ['logs', '--tail=5', 'web'],\n"
            "             ['run', '--rm', '-e', 'A=1', '--network', 'none', 'busybox', 'true'],\n"
            "             ['create', '--name', 'web', '-p', '8080:80', 'busybox', 'sh', '-c', 'x']):\n"
            "    cli.parse(line)\n"
            "print(sorted(m for m in ('argparse', 're', 'gettext', 'enum') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
