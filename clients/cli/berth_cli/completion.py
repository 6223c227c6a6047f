"""Shell completion scripts for bash, zsh and fish, generated from the parser itself, so
they offer exactly the verbs and flags `berth` accepts."""

from __future__ import annotations

import argparse


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({opt for a in parser._actions if a.help is not argparse.SUPPRESS
                   for opt in a.option_strings})


def _tree(parser) -> dict[str, tuple[list[str], list[str]]]:
    """'' for the top level, 'verb' and 'verb sub' below: (flags, subcommands)."""
    tree = {"": (_flags(parser), sorted(_subparsers(parser)))}
    for verb, p in _subparsers(parser).items():
        tree[verb] = (_flags(p), sorted(_subparsers(p)))
        for sub, q in _subparsers(p).items():
            tree[f"{verb} {sub}"] = (_flags(q), [])
    return tree


def script(shell: str, parser) -> str:
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](_tree(parser))


def _bash(tree) -> str:
    cases = "\n".join(f'        "{key}") words="{" ".join(subs + flags)}" ;;'
                      for key, (flags, subs) in tree.items())
    return f"""# bash completion for berth: source it, or put it in /etc/bash_completion.d/berth
_berth() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} path="" w i
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        [[ $w == -* ]] && continue
        if [[ -z $path ]]; then path=$w; elif [[ $path != *" "* ]]; then path="$path $w"; fi
    done
    local words
    case "$path" in
{cases}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _berth berth
"""


def _zsh(tree) -> str:
    return "#compdef berth\n# zsh completion for berth: put it on $fpath as _berth\n" + \
        "autoload -U +X bashcompinit && bashcompinit\n" + _bash(tree)


def _fish(tree) -> str:
    verbs = tree[""][1]
    lines = ["# fish completion for berth: put it in ~/.config/fish/completions/berth.fish",
             f"complete -c berth -f -n '__fish_use_subcommand' -a '{' '.join(verbs)}'"]
    for key, (flags, subs) in tree.items():
        if not key:
            cond = "__fish_use_subcommand"
        elif " " in key:
            verb, sub = key.split(" ")
            cond = f"__fish_seen_subcommand_from {verb}; and __fish_seen_subcommand_from {sub}"
        else:
            cond = f"__fish_seen_subcommand_from {key}"
            if subs:
                lines.append(f"complete -c berth -f -n '{cond}' -a '{' '.join(subs)}'")
        for flag in flags:
            opt = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            lines.append(f"complete -c berth -n '{cond}' {opt}")
    return "\n".join(lines) + "\n"
