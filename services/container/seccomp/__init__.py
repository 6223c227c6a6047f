"""Seccomp profiles in docker's format, turned into the OCI `linux.seccomp` runc applies.

A docker profile is an allow-list with conditions on each rule: `includes` and `excludes`
by architecture ("amd64", "x32", ...), by capability (a rule applies only when the
container's bounding set holds, or lacks, a capability: CAP_SYS_ADMIN lifts the clone
flag filter) and by kernel version. dockerd resolves those conditions for the container
at hand and gives the runtime a plain OCI filter; so does `oci_seccomp` here, with the
same rules, so a profile written for docker means the same thing under berth:

    profile = load(text)                       # or default_profile()
    oci = oci_seccomp(profile, capabilities)   # -> config.json's linux.seccomp

default.json is docker's own default profile (README.md beside it says where it is from
and under which license); `archMap` picks the native architecture and its companions,
so an x86_64 host filters x86_64, i386 and x32 syscalls alike (a process cannot dodge
the filter by switching to the 32-bit ABI: other architectures are killed by the
kernel's arch check, as with docker).
"""

from __future__ import annotations

import functools
import json
import os
import platform

from services.common import errors

DEFAULT_PROFILE = os.path.join(os.path.dirname(__file__), "default.json")

# uname's machine -> docker's (Go's) architecture name, which profiles' arches use.
_NATIVE = {"x86_64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm",
           "armv8l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
           "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64"}
# docker's architecture name -> libseccomp's.
_SCMP = {"x86": "SCMP_ARCH_X86", "amd64": "SCMP_ARCH_X86_64", "arm": "SCMP_ARCH_ARM",
         "arm64": "SCMP_ARCH_AARCH64", "loong64": "SCMP_ARCH_LOONGARCH64", "mips64": "SCMP_ARCH_MIPS64",
         "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel64": "SCMP_ARCH_MIPSEL64",
         "mips3l64n32": "SCMP_ARCH_MIPSEL64N32", "mipsle": "SCMP_ARCH_MIPSEL", "ppc": "SCMP_ARCH_PPC",
         "ppc64": "SCMP_ARCH_PPC64", "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64",
         "s390": "SCMP_ARCH_S390", "s390x": "SCMP_ARCH_S390X"}
# What runc 1.1 accepts (`runc features`); anything else would fail at runtime create.
ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
           "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP")
OPERATORS = ("SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
             "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE")


@functools.cache
def default_profile() -> dict:
    with open(DEFAULT_PROFILE) as f:
        return load(f.read())


def load(text: str) -> dict:
    """A profile's JSON, checked for what would make it mean something other than it says."""
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise errors.InvalidArgument(f"Decoding seccomp profile failed: {exc}") from None
    if not isinstance(profile, dict):
        raise errors.InvalidArgument("Decoding seccomp profile failed: the profile must be a JSON object")
    if profile.get("architectures") and profile.get("archMap"):
        raise errors.InvalidArgument("both 'architectures' and 'archMap' are specified in the seccomp "
                                     "profile, use either 'architectures' or 'archMap'")
    default = profile.get("defaultAction") or ""
    if default and default not in ACTIONS:
        raise errors.InvalidArgument(f"seccomp profile: unknown defaultAction {default!r}")
    for rule in profile.get("syscalls") or ():
        if not isinstance(rule, dict):
            raise errors.InvalidArgument("seccomp profile: each of 'syscalls' must be an object")
        if rule.get("name") and rule.get("names"):
            raise errors.InvalidArgument("both 'name' and 'names' are specified in the seccomp profile, "
                                         "use either 'name' or 'names'")
        if rule.get("action") not in ACTIONS:
            raise errors.InvalidArgument(
                f"seccomp profile: unknown action {rule.get('action')!r} for {_names(rule)}")
        for arg in rule.get("args") or ():
            if arg.get("op") not in OPERATORS:
                raise errors.InvalidArgument(
                    f"seccomp profile: unknown operator {arg.get('op')!r} for {_names(rule)}")
    return profile


def oci_seccomp(profile: dict, capabilities: list[str], machine: str | None = None,
                kernel: tuple[int, ...] | None = None) -> dict | None:
    """The OCI filter `profile` gives a process with bounding set `capabilities`, on this
    machine and kernel (or those given); None when the profile filters nothing."""
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    arch = _NATIVE.get(machine or platform.machine(), machine or platform.machine())
    kernel = kernel or _kernel_version()
    out: dict = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    architectures = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == _SCMP.get(arch):
            architectures = [entry["architecture"], *(entry.get("subArchitectures") or ())]
            break
    if architectures:
        out["architectures"] = architectures
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    caps = set(capabilities)
    syscalls = []
    for rule in profile.get("syscalls") or ():
        if _applies(rule, arch, caps, kernel):
            call = {"names": _names(rule), "action": rule["action"]}
            if rule.get("errnoRet") is not None:
                call["errnoRet"] = rule["errnoRet"]
            if rule.get("args"):
                call["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                                for a in rule["args"]]
            syscalls.append(call)
    out["syscalls"] = syscalls
    return out


def _names(rule: dict) -> list[str]:
    return [rule["name"]] if rule.get("name") else list(rule.get("names") or ())


def _applies(rule: dict, arch: str, caps: set[str], kernel: tuple[int, ...]) -> bool:
    """docker's conditions: any matching exclude drops the rule; every include must hold."""
    ex = rule.get("excludes") or {}
    if arch in (ex.get("arches") or ()):
        return False
    if any(c in caps for c in ex.get("caps") or ()):
        return False
    if ex.get("minKernel") and kernel >= _parse_kernel(ex["minKernel"]):
        return False
    inc = rule.get("includes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"]):
        return False
    return True


def _parse_kernel(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("-")[0].split(".")[:2])
    except ValueError:
        raise errors.InvalidArgument(f"seccomp profile: invalid minKernel {text!r}") from None


@functools.cache
def _kernel_version() -> tuple[int, ...]:
    release = platform.release().split("-")[0]
    return tuple(int(p) for p in release.split(".")[:2] if p.isdigit())
