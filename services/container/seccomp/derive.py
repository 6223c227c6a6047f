"""Writes default.json (the default seccomp profile) from moby's default profile.

Run by hand when moby's profile changes, never at build or run time:

    python -m services.container.seccomp.derive <moby/profiles checkout>/seccomp/default.json <commit>

It keeps moby's rules as they are (the profile is data: what a container may call is
the point of matching docker, so berth changes no rule), checks that every rule has
only the keys the loader in this package understands, and writes them with a
"comment" header naming the origin, the commit and the license, one rule per line so
that a later update shows as a readable diff.
"""

from __future__ import annotations

import json
import os
import sys

_RULE_KEYS = {"names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes"}
_FILTER_KEYS = {"arches", "caps", "minKernel"}
_PROFILE_KEYS = {"defaultAction", "defaultErrnoRet", "archMap", "syscalls"}

OUT = os.path.join(os.path.dirname(__file__), "default.json")


def header(commit: str) -> list[str]:
    return [
        "berth's default seccomp profile: docker's default profile, unchanged.",
        "Origin: github.com/moby/profiles, seccomp/default.json at commit " + commit + ".",
        "Copyright the Moby project authors; licensed under the Apache License 2.0",
        "(https://www.apache.org/licenses/LICENSE-2.0), under which it is reproduced here.",
        "Changes: this comment added, rules re-laid out one per line (by derive.py beside it).",
        "Format: docker's profile format; services/container/seccomp turns it into the OCI",
        "linux.seccomp runc applies, as dockerd does (see README.md beside it).",
    ]


def check(profile: dict) -> None:
    extra = set(profile) - _PROFILE_KEYS
    if extra:
        raise SystemExit(f"profile has keys the loader does not know: {sorted(extra)}")
    for rule in profile["syscalls"]:
        if set(rule) - _RULE_KEYS:
            raise SystemExit(f"rule {rule.get('names')} has unknown keys {sorted(set(rule) - _RULE_KEYS)}")
        for key in ("includes", "excludes"):
            if set(rule.get(key) or {}) - _FILTER_KEYS:
                raise SystemExit(f"rule {rule.get('names')} has unknown {key} {sorted(rule[key])}")


def render(profile: dict, commit: str) -> str:
    head = {"comment": header(commit), "defaultAction": profile["defaultAction"],
            "defaultErrnoRet": profile.get("defaultErrnoRet"), "archMap": profile["archMap"]}
    lines = [json.dumps(head, indent=1)[:-2] + ",", ' "syscalls": [']
    rules = [" " + json.dumps(rule, separators=(", ", ": ")) for rule in profile["syscalls"]]
    lines.append(",\n".join(rules))
    lines += [" ]", "}", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        profile = json.load(f)
    check(profile)
    text = render(profile, argv[1])
    if json.loads(text)["syscalls"] != profile["syscalls"]:
        raise SystemExit("rendering changed the rules")
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
