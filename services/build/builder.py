"""One build: a parsed Dockerfile run stage by stage, every step through the cache.

The graph: each stage is a task; a stage waits only for the stages it names
(`FROM <stage>`, `COPY --from=<stage>`), so stages that need nothing of each
other run at the same time. Only the stages the target needs are built.

The cache: a step's key is sha256 over the image it starts from, the
instruction with its words expanded, and its inputs: the contents (names,
modes, bytes) of the files a COPY/ADD takes, the build args a RUN sees. Keys
chain through image ids, so a changed file changes its COPY's key and so the
key of every step after it, and nothing before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from google.protobuf import duration_pb2, timestamp_pb2

from berth.image.v1 import image_pb2
from berth.types.v1 import build_pb2, healthcheck_pb2, mount_pb2
from services.build import context as context_mod
from services.build import dockerfile as df
from services.build.store import CacheStore
from services.build.worker import RunOptions, Worker, full_name
from services.common import errors, metrics
from services.common.paths import secure_join

log = structlog.get_logger(__name__)
# Steps that finished, by how: done (ran), cached or failed.
BUILD_STEPS = metrics.meter(__name__).create_counter(
    "berth.build.steps", description="Build steps finished, by state (done, cached, failed)")

DEFAULT_SHELL = ("/bin/sh", "-c")
# Build args docker accepts without an ARG, passed to RUN but kept out of the
# image and of the cache key (they differ from one machine to the next).
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
# Instructions that change only the image config.
METADATA = frozenset({"ENV", "LABEL", "EXPOSE", "VOLUME", "USER", "ENTRYPOINT", "CMD",
                      "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD", "ARG"})
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


@dataclass
class StageState:
    image_id: str
    config: image_pb2.ImageConfig
    args: dict[str, str] = field(default_factory=dict)
    # CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool = False


class Build:
    """`emit` receives BuildEvents as they happen; `run` returns the BuildResult."""

    def __init__(self, worker: Worker, cache: CacheStore, options: build_pb2.BuildOptions,
                 root: str, dockerfile: df.Dockerfile, emit: Callable[[build_pb2.BuildEvent], None],
                 cache_dir: str):
        self.worker = worker
        self.cache = cache
        self.options = options
        self.root = root
        self.file = dockerfile
        self.emit = emit
        self.cache_dir = cache_dir
        self.escape = dockerfile.escape
        self.build_args = dict(options.build_args)
        self.used_args: set[str] = set()
        self.cached_steps = self.run_steps = 0
        self.meta = self._meta_args()
        self.results: dict[int, asyncio.Future] = {}
        self.allowed: set[str] | None = None   # --cache-from: the images hits may come from
        self._number: dict[int, int] = {}
        self._total = 0
        # Removals still going on of what committed steps ran in (containers, endpoints,
        # snapshots): the next step need not wait for them, the end of the build does.
        self.cleanups: set[asyncio.Task] = set()
        # The last instruction of the target, whose commit (when it runs) names the image
        # with the first tag, and the image it named.
        self._final: df.Instruction | None = None
        self._named = ""

    # -- plan ---------------------------------------------------------------------------

    def _meta_args(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for ins in self.file.meta_args:
            for name, default in self._arg_decls(ins, values):
                if name in self.build_args:
                    values[name] = self.build_args[name]
                    self.used_args.add(name)
                elif default is not None:
                    values[name] = default
        return values

    def _arg_decls(self, ins: df.Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out = []
        for word in df._raw_words(ins.args, self.escape):
            name, eq, value = word.partition("=")
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                raise df.fail(ins.line, f"invalid ARG name {name!r}")
            out.append((name, df.expand(value, env, self.escape, ins.line) if eq else None))
        if not out:
            raise df.fail(ins.line, "ARG requires at least one argument")
        return out

    def _target(self) -> df.Stage:
        if not self.options.target:
            return self.file.stages[-1]
        stage = self.file.stage(self.options.target)
        if stage is None or not stage.name and not self.options.target.isdigit():
            raise errors.InvalidArgument(f"failed to reach build target {self.options.target} "
                                         "in Dockerfile: no stage of that name")
        return stage

    def _deps(self, stage: df.Stage) -> set[int]:
        """Indexes of the earlier stages this one names."""
        refs = [df.expand(stage.base, self.meta, self.escape, stage.line)]
        for ins in stage.instructions:
            if ins.keyword in ("COPY", "ADD") and ins.flag("from"):
                refs.append(df.expand(ins.flag("from"), self.meta, self.escape, ins.line))
            for spec in ins.flag_all("mount") if ins.keyword == "RUN" else ():
                for part in spec.split(","):
                    if part.startswith("from="):
                        refs.append(part[5:])
        out = set()
        for ref in refs:
            dep = self.file.stage(ref)
            if dep is not None and dep.index < stage.index:
                out.add(dep.index)
        return out

    def _needed(self, target: df.Stage) -> list[df.Stage]:
        need, todo = set(), [target.index]
        while todo:
            i = todo.pop()
            if i in need:
                continue
            need.add(i)
            todo.extend(self._deps(self.file.stages[i]))
        return [s for s in self.file.stages if s.index in need]

    # -- run ----------------------------------------------------------------------------

    async def run(self) -> build_pb2.BuildResult:
        try:
            return await self._run_stages()
        finally:
            await self._cleaned()

    async def _cleaned(self) -> None:
        """Waits for the steps' cleanups (never cancels them: a build cut short
        still leaves no container behind)."""
        if not self.cleanups:
            return
        done, _ = await asyncio.wait(self.cleanups)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("build_cleanup_failed", error=str(task.exception()))

    async def _run_stages(self) -> build_pb2.BuildResult:
        target = self._target()
        stages = self._needed(target)
        n = 0
        for s in stages:
            self._number[s.index] = n
            n += 1 + len(s.instructions)
        self._total = n
        if self.options.tags and not self.options.labels and target.instructions:
            self._final = target.instructions[-1]
        if self.options.cache_from:
            await self._allow_cache_from()
        loop = asyncio.get_running_loop()
        self.results = {s.index: loop.create_future() for s in stages}
        tasks = [asyncio.create_task(self._stage(s)) for s in stages]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        final: StageState = self.results[target.index].result()
        image_id = final.image_id
        if self.options.labels:
            config = _copy(final.config)
            for k, v in self.options.labels.items():
                config.labels[k] = v
            image_id = await self._step_cached(
                image_id, "LABEL " + json.dumps(dict(self.options.labels), sort_keys=True), "",
                lambda: self.worker.create_image(image_id, config, "LABEL (--label)"))
        unused = sorted(set(self.build_args) - self.used_args - PROXY_ARGS)
        if unused:
            self.emit(build_pb2.BuildEvent(
                warning=f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed"))
        tags = [full_name(t) if i == 0 and self._named == image_id else await self.worker.tag(image_id, t)
                for i, t in enumerate(self.options.tags)]
        return build_pb2.BuildResult(image_id=image_id, tags=tags, cached_steps=self.cached_steps,
                                     run_steps=self.run_steps)

    async def _allow_cache_from(self) -> None:
        """docker's --cache-from: hits only from steps that made these images (or led to them)."""
        parents = self.cache.parents()
        allowed: set[str] = set()
        for ref in self.options.cache_from:
            image = await self.worker.get_image(ref)
            if image is None:
                self.emit(build_pb2.BuildEvent(warning=f"[Warning] cache-from image {ref} not found"))
                continue
            cur = image.id
            while cur and cur not in allowed:
                allowed.add(cur)
                cur = parents.get(cur, "")
        self.allowed = allowed

    async def _stage(self, stage: df.Stage) -> None:
        future = self.results[stage.index]
        try:
            state = await self._from(stage)
            triggers = list(state.config.on_build)
            del state.config.on_build[:]
            for text in triggers:
                trig = df.parse("FROM scratch\n" + text).stages[0].instructions
                for ins in trig:
                    state = await self._instruction(stage, ins, state, number=self._number[stage.index] + 1,
                                                    index=1)
            for i, ins in enumerate(stage.instructions, start=2):
                state = await self._instruction(stage, ins, state, self._number[stage.index] + i, i)
            future.set_result(state)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # marked retrieved: the gather reports it
            raise

    def _step_event(self, stage: df.Stage, number: int, index: int, text: str, line: int,
                    state: int, **kw) -> None:
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        if state != build_pb2.BUILD_STEP_STATE_STARTED:
            BUILD_STEPS.add(1, {"state": build_pb2.BuildStepState.Name(state)
                                .removeprefix("BUILD_STEP_STATE_").lower()})
        self.emit(build_pb2.BuildEvent(step=build_pb2.BuildStep(
            number=number, stage=stage.label, index=index, count=1 + len(stage.instructions),
            instruction=text, state=state, time=now, line=line, total=self._total, **kw)))

    async def _from(self, stage: df.Stage) -> StageState:
        number = self._number[stage.index] + 1
        started = time.monotonic()
        self._step_event(stage, number, 1, stage.original, stage.line, build_pb2.BUILD_STEP_STATE_STARTED)
        base = df.expand(stage.base, self.meta, self.escape, stage.line)
        platform = df.expand(stage.platform, self.meta, self.escape, stage.line) or self.options.platform
        if not base:
            raise df.fail(stage.line, "FROM names no image (an ARG it uses is empty)")
        dep = self.file.stage(base)
        if dep is not None and dep.index < stage.index:
            parent: StageState = await self.results[dep.index]
            state = StageState(parent.image_id, _copy(parent.config))
        elif base.lower() == "scratch":
            image_id = await self._step_cached("", "FROM scratch", "",
                                               lambda: self.worker.create_image("", image_pb2.ImageConfig(), ""),
                                               count=False)
            state = StageState(image_id, image_pb2.ImageConfig())
        else:
            image = None if self.options.pull else await self.worker.get_image(base)
            if image is None:
                image = await self.worker.pull(base, platform, lambda line: self._output(number, line + "\n"),
                                               self.options.registry_auths)
            state = StageState(image.id, _copy(image.config))
        self._step_event(stage, number, 1, stage.original, stage.line, build_pb2.BUILD_STEP_STATE_DONE,
                         image_id=state.image_id, elapsed=_duration(started))
        return state

    def _output(self, number: int, text: str | bytes, stderr: bool = False) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.emit(build_pb2.BuildEvent(output=build_pb2.BuildOutput(number=number, data=data, stderr=stderr)))

    async def _step_cached(self, parent: str, description: str, inputs: str, make,
                           count: bool = True, on_hit=None) -> str:
        """The image of a step: from the cache when it has the key, else made and recorded."""
        key = "sha256:" + hashlib.sha256(json.dumps([parent, description, inputs]).encode()).hexdigest()
        if not self.options.no_cache:
            entry = self.cache.get(key)
            if entry is not None and (self.allowed is None or entry.image_id in self.allowed):
                if await self.worker.get_image(entry.image_id) is not None:
                    self.cache.used(key)
                    if count:
                        self.cached_steps += 1
                    if on_hit:
                        on_hit(entry.image_id)
                    return entry.image_id
                self.cache.delete([key])
        image_id = await make()
        if count:
            self.run_steps += 1
        self.cache.put(key, parent, image_id, description[:200])
        return image_id

    async def _instruction(self, stage: df.Stage, ins: df.Instruction, state: StageState,
                           number: int, index: int) -> StageState:
        started = time.monotonic()
        self._step_event(stage, number, index, ins.original, ins.line, build_pb2.BUILD_STEP_STATE_STARTED)
        hit = []
        try:
            new = await self._dispatch(stage, ins, state, number, lambda image_id: hit.append(image_id))
        except errors.BerthError as exc:
            self._step_event(stage, number, index, ins.original, ins.line, build_pb2.BUILD_STEP_STATE_FAILED,
                             elapsed=_duration(started))
            if isinstance(exc, errors.InvalidArgument) and not exc.message.startswith("Dockerfile"):
                raise type(exc)(f"Dockerfile:{ins.line}: {exc.message}", **exc.metadata) from None
            raise
        self._step_event(stage, number, index, ins.original, ins.line,
                         build_pb2.BUILD_STEP_STATE_CACHED if hit else build_pb2.BUILD_STEP_STATE_DONE,
                         image_id=new.image_id, elapsed=_duration(started))
        return new

    def _name_for(self, ins: df.Instruction) -> str:
        """The first tag, for the commit of the target's last instruction (else "")."""
        return self.options.tags[0] if ins is self._final else ""

    def _named_by(self, name: str, image_id: str) -> str:
        if name:
            self._named = image_id
        return image_id

    def _env(self, state: StageState) -> dict[str, str]:
        """What words of an instruction expand with: ARGs, then ENV over them."""
        env = dict(state.args)
        for item in state.config.env:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    async def _dispatch(self, stage, ins: df.Instruction, state: StageState, number: int,
                        on_hit) -> StageState:
        kw = ins.keyword
        if kw == "FROM":
            raise df.fail(ins.line, "FROM inside ONBUILD is not allowed")
        if kw == "MAINTAINER":
            raise df.fail(ins.line, "MAINTAINER is not supported by berth's builder (it is deprecated): "
                                    "use LABEL maintainer=...")
        if kw in METADATA:
            config, args, cmd_set, description = self._metadata(ins, state)
            new_state = StageState(state.image_id, config, args, cmd_set)
            inputs = ""
            if kw == "ARG":
                inputs = json.dumps({k: v for k, v in args.items() if k not in PROXY_ARGS}, sort_keys=True)
            image_id = await self._step_cached(
                state.image_id, description, inputs,
                lambda: self.worker.create_image(state.image_id, config, description), on_hit=on_hit)
            new_state.image_id = image_id
            return new_state
        if kw == "WORKDIR":
            return await self._workdir(ins, state, on_hit)
        if kw == "RUN":
            return await self._run(ins, state, number, on_hit)
        if kw in ("COPY", "ADD"):
            return await self._copy(ins, state, number, on_hit)
        raise df.fail(ins.line, f"unknown instruction: {kw}")

    # -- config-only steps ----------------------------------------------------------------

    def _metadata(self, ins: df.Instruction, state: StageState):
        config = _copy(state.config)
        args = dict(state.args)
        cmd_set = state.cmd_set
        kw = ins.keyword
        env = self._env(state)
        text = ins.args
        if kw == "ENV":
            pairs = df.key_values(ins, self.escape, env)
            current = [e for e in config.env]
            for k, v in pairs:
                if not k:
                    raise df.fail(ins.line, "ENV names an empty variable")
                current = [e for e in current if e.partition("=")[0] != k] + [f"{k}={v}"]
            del config.env[:]
            config.env.extend(current)
            description = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif kw == "LABEL":
            pairs = df.key_values(ins, self.escape, env)
            for k, v in pairs:
                config.labels[k] = v
            description = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        elif kw == "ARG":
            decls = self._arg_decls(ins, env)
            for name, default in decls:
                if name in self.build_args:
                    value = self.build_args[name]
                    self.used_args.add(name)
                elif default is not None:
                    value = default
                elif name in self.meta:
                    value = self.meta[name]
                else:
                    # Declared without a value: in scope, unset (RUN sees nothing).
                    args.pop(name, None)
                    continue
                args[name] = value
            description = "ARG " + " ".join(n if d is None else f"{n}={d}" for n, d in decls)
        elif kw == "EXPOSE":
            ports = set(config.exposed_ports)
            for word in df.split_words(text, self.escape, env, ins.line):
                ports.update(_ports(word, ins.line))
            del config.exposed_ports[:]
            config.exposed_ports.extend(sorted(ports))
            description = "EXPOSE " + " ".join(sorted(ports))
        elif kw == "VOLUME":
            paths = ins.json_args()
            if paths is None:
                paths = df.split_words(text, self.escape, env, ins.line)
            else:
                paths = [df.expand(p, env, self.escape, ins.line) for p in paths]
            if not paths or any(not p for p in paths):
                raise df.fail(ins.line, "VOLUME specified can not be an empty string")
            vols = set(config.volumes) | set(paths)
            del config.volumes[:]
            config.volumes.extend(sorted(vols))
            description = "VOLUME " + json.dumps(paths)
        elif kw == "USER":
            user = df.expand(text.strip(), env, self.escape, ins.line)
            if not user:
                raise df.fail(ins.line, "USER requires an argument")
            config.user = user
            description = "USER " + user
        elif kw in ("CMD", "ENTRYPOINT"):
            argv = self._command(ins, config)
            target = config.cmd if kw == "CMD" else config.entrypoint
            del target[:]
            target.extend(argv)
            if kw == "CMD":
                cmd_set = True
            elif not cmd_set:
                del config.cmd[:]
            description = f"{kw} {json.dumps(argv)}"
        elif kw == "SHELL":
            argv = ins.json_args()
            if not argv:
                raise df.fail(ins.line, "SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"]")
            del config.shell[:]
            config.shell.extend(argv)
            description = "SHELL " + json.dumps(argv)
        elif kw == "STOPSIGNAL":
            sig = df.expand(text.strip(), env, self.escape, ins.line)
            if not re.fullmatch(r"(SIG)?[A-Z0-9+-]+|\d+", sig):
                raise df.fail(ins.line, f"invalid STOPSIGNAL {sig!r}")
            config.stop_signal = sig
            description = "STOPSIGNAL " + sig
        elif kw == "ONBUILD":
            trigger = text.strip()
            first = trigger.split(None, 1)[0].upper() if trigger else ""
            if first in ("ONBUILD", "FROM", "MAINTAINER"):
                raise df.fail(ins.line, f"{first} isn't allowed as an ONBUILD trigger")
            if first not in df.INSTRUCTIONS:
                raise df.fail(ins.line, f"ONBUILD: unknown instruction: {first or '(none)'}")
            config.on_build.append(trigger)
            description = "ONBUILD " + trigger
        elif kw == "HEALTHCHECK":
            config.healthcheck.CopyFrom(self._healthcheck(ins, config))
            description = "HEALTHCHECK " + text
        else:
            raise df.fail(ins.line, f"unknown instruction: {kw}")
        return config, args, cmd_set, description

    def _command(self, ins: df.Instruction, config: image_pb2.ImageConfig) -> list[str]:
        argv = ins.json_args()
        if argv is not None:
            return argv
        if not ins.args.strip():
            return []
        return [*(config.shell or DEFAULT_SHELL), ins.args]

    def _healthcheck(self, ins: df.Instruction, config) -> healthcheck_pb2.HealthConfig:
        text = ins.args.strip()
        word, _, rest = text.partition(" ")
        if word.upper() == "NONE":
            if rest.strip() or ins.flags:
                raise df.fail(ins.line, "HEALTHCHECK NONE takes no arguments")
            return healthcheck_pb2.HealthConfig(test=["NONE"])
        if word.upper() != "CMD":
            raise df.fail(ins.line, "HEALTHCHECK must be followed by CMD or NONE")
        sub = df.Instruction("CMD", rest.strip(), ins.line, ins.original)
        argv = sub.json_args()
        test = ["CMD", *argv] if argv is not None else ["CMD-SHELL", rest.strip()]
        hc = healthcheck_pb2.HealthConfig(test=test)
        for flag, attr in (("interval", "interval"), ("timeout", "timeout"),
                           ("start-period", "start_period"), ("start-interval", "start_interval")):
            value = ins.flag(flag)
            if value is not None:
                setattr(hc, attr, _parse_duration(value, flag, ins.line))
        if ins.flag("retries") is not None:
            try:
                hc.retries = int(ins.flag("retries"))
            except ValueError:
                raise df.fail(ins.line, f"HEALTHCHECK --retries: not a number: {ins.flag('retries')}") from None
        return hc

    # -- WORKDIR ----------------------------------------------------------------------

    async def _workdir(self, ins, state: StageState, on_hit) -> StageState:
        path = df.expand(ins.args.strip(), self._env(state), self.escape, ins.line)
        if not path:
            raise df.fail(ins.line, "WORKDIR requires exactly one argument")
        config = _copy(state.config)
        config.working_dir = posixpath.normpath(posixpath.join(state.config.working_dir or "/", path))
        description = "WORKDIR " + config.working_dir

        async def make():
            def mkdir(rootfs: str) -> None:
                if not os.path.isdir(secure_join(rootfs, config.working_dir)):
                    _makedirs(rootfs, config.working_dir, 0, 0)
            name = self._name_for(ins)
            return self._named_by(name, await self.worker.with_rootfs(
                state.image_id, mkdir, (config, description, name)))
        image_id = await self._step_cached(state.image_id, description, "", make, on_hit=on_hit)
        return StageState(image_id, config, dict(state.args), state.cmd_set)

    # -- RUN ------------------------------------------------------------------------

    async def _run(self, ins: df.Instruction, state: StageState, number: int, on_hit) -> StageState:
        network = self.options.network_mode or "default"
        mounts: list[mount_pb2.Mount] = []
        for name, value in ins.flags:
            if name == "network":
                if value not in ("default", "none", "host"):
                    raise df.fail(ins.line, f"RUN --network={value}: only default, none and host are known")
                if value != "default":
                    network = value
            elif name == "security":
                raise df.fail(ins.line, f"RUN --security={value} is not supported by berth's builder")
            elif name == "mount":
                mounts.append(self._run_mount(value, ins.line))
        if network in ("default", ""):
            network = "bridge"
        argv = ins.json_args()
        shell = list(state.config.shell or DEFAULT_SHELL)
        if argv is None:
            command = ins.args
            if ins.heredocs:
                only = len(ins.heredocs) == 1 and re.fullmatch(r"<<-?['\"]?\w+['\"]?", command.strip())
                if only:
                    command = ins.heredocs[0].content
                else:
                    # The shell reads the heredocs itself, as written.
                    command = command + "\n" + "".join(f"{h.content}{h.name}\n" for h in ins.heredocs)
            argv = [*shell, command]
            created_by = " ".join(argv)
        else:
            created_by = " ".join(argv)
        env_config = list(state.config.env)
        config_keys = {e.partition("=")[0] for e in env_config}
        arg_env = [f"{k}={v}" for k, v in sorted(state.args.items()) if k not in config_keys]
        proxies = [f"{k}={v}" for k, v in sorted(self.build_args.items())
                   if k in PROXY_ARGS and k not in state.args and k not in config_keys]
        self.used_args.update(k for k in self.build_args if k in PROXY_ARGS)
        key_args = [a for a in arg_env if a.partition("=")[0] not in PROXY_ARGS]
        description = f"RUN {json.dumps(argv)}"
        inputs = json.dumps({"args": key_args, "network": network, "mounts": [
            [m.type, m.target, list(m.options)] for m in mounts]})
        opts = RunOptions(argv=argv, env=env_config + arg_env + proxies, cwd=state.config.working_dir or "/",
                          user=state.config.user, network=network,
                          extra_hosts=list(self.options.extra_hosts), shm_size=self.options.shm_size,
                          mounts=mounts)

        def started(cid: str) -> None:
            # STARTED again, now with the container: the legacy stream's "Running in".
            self.emit(build_pb2.BuildEvent(step=build_pb2.BuildStep(
                number=number, container_id=cid, state=build_pb2.BUILD_STEP_STATE_STARTED,
                total=self._total, line=ins.line, instruction=ins.original)))

        name = self._name_for(ins)

        async def make():
            return self._named_by(name, await self.worker.run(
                state.image_id, opts, state.config, created_by,
                on_output=lambda data, err: self._output(number, data, err), on_container=started,
                cleanups=self.cleanups, name=name))
        image_id = await self._step_cached(state.image_id, description, inputs, make, on_hit=on_hit)
        return StageState(image_id, _copy(state.config), dict(state.args), state.cmd_set)

    def _run_mount(self, spec: str, line: int) -> mount_pb2.Mount:
        fields: dict[str, str] = {}
        for part in spec.split(","):
            k, eq, v = part.partition("=")
            fields[k.strip()] = v.strip() if eq else "true"
        kind = fields.pop("type", "bind")
        target = fields.pop("target", None) or fields.pop("dst", None) or fields.pop("destination", None)
        if kind in ("secret", "ssh"):
            raise df.fail(line, f"RUN --mount=type={kind} is not supported by berth's builder: "
                                "it has no way to receive secrets from the client")
        if not target:
            raise df.fail(line, f"RUN --mount=type={kind} needs target=<path>")
        readonly = fields.pop("readonly", fields.pop("ro", "false")) in ("true", "1", "")
        if kind == "tmpfs":
            size = fields.pop("size", "")
            options = ["nosuid", "nodev"] + ([f"size={size}"] if size else [])
            mount = mount_pb2.Mount(type="tmpfs", source="tmpfs", target=target, options=options)
        elif kind == "cache":
            cache_id = fields.pop("id", target)
            fields.pop("sharing", None)
            d = os.path.join(self.cache_dir, hashlib.sha256(cache_id.encode()).hexdigest()[:32])
            os.makedirs(d, mode=0o755, exist_ok=True)
            mount = mount_pb2.Mount(type="bind", source=d, target=target,
                                    options=["rbind", "ro" if readonly else "rw"])
        elif kind == "bind":
            if "from" in fields:
                raise df.fail(line, "RUN --mount=type=bind,from=... is not supported by berth's builder: "
                                    "bind mounts come from the build context")
            source = context_mod.inside(self.root, fields.pop("source", fields.pop("src", ".")))
            if not os.path.exists(source):
                raise df.fail(line, f"RUN --mount: source {source[len(self.root):] or '/'} is not in the context")
            readonly = fields.pop("rw", fields.pop("readwrite", "false")) not in ("true", "1", "")
            mount = mount_pb2.Mount(type="bind", source=source, target=target,
                                    options=["rbind", "ro" if readonly else "rw"])
        else:
            raise df.fail(line, f"RUN --mount: unknown type {kind!r}")
        if fields:
            raise df.fail(line, f"RUN --mount=type={kind}: unknown option(s) {', '.join(sorted(fields))}")
        return mount

    # -- COPY and ADD --------------------------------------------------------------

    async def _copy(self, ins: df.Instruction, state: StageState, number: int, on_hit) -> StageState:
        kw = ins.keyword
        for name in ("parents", "exclude", "keep-git-dir", "checksum"):
            if ins.flag(name) is not None:
                raise df.fail(ins.line, f"{kw} --{name} is not supported by berth's builder")
        env = self._env(state)
        words = ins.json_args()
        if words is not None:
            words = [df.expand(w, env, self.escape, ins.line) for w in words]
        else:
            words = df.split_words(ins.args, self.escape, env, ins.line)
        # `COPY <<EOF /dest`: the heredoc is the file; unquoted, its $VARs are expanded.
        heredoc_files = {h.name: h.content if h.quoted else _expand_vars(h.content, env)
                         for h in ins.heredocs}
        urls: dict[str, tuple[str, str]] = {}
        if len(words) < 2:
            raise df.fail(ins.line, f"{kw} requires at least two arguments, but got {len(words)}")
        sources, dest = words[:-1], words[-1]
        chown = ins.flag("chown")
        chown = df.expand(chown, env, self.escape, ins.line) if chown else ""
        chmod = ins.flag("chmod")
        mode = None
        if chmod:
            if not re.fullmatch(r"[0-7]{3,4}", chmod):
                raise df.fail(ins.line, f"{kw} --chmod={chmod}: only octal modes are supported")
            mode = int(chmod, 8)
        from_ref = ins.flag("from")
        if from_ref and kw == "ADD":
            raise df.fail(ins.line, "ADD does not take --from: use COPY --from")
        workdir = state.config.working_dir or "/"
        dest_abs = posixpath.join(workdir, dest)
        dir_dest = dest.endswith("/") or dest.endswith("/.") or dest in (".", "..") or len(sources) > 1

        # What the files are and where they come from decide the key.
        src_image = ""
        if from_ref:
            ref = df.expand(from_ref, {**self.meta, **env}, self.escape, ins.line)
            dep = self.file.stage(ref)
            if dep is not None:
                if dep.index >= self._current_index(ins):
                    raise df.fail(ins.line, f"{kw} --from={ref}: a stage can only copy from an earlier one")
                src_image = (await self.results[dep.index]).image_id
            else:
                image = await self.worker.get_image(ref) or await self.worker.pull(
                    ref, self.options.platform, lambda line: self._output(number, line + "\n"),
                    self.options.registry_auths)
                src_image = image.id
            inputs = json.dumps(["image", src_image, sources])
            plan = None
        else:
            plan = []
            for src in sources:
                here = re.fullmatch(r"<<-?['\"]?(\w+)['\"]?", src)
                if here and here.group(1) in heredoc_files:
                    plan.append(("heredoc", here.group(1)))
                elif kw == "ADD" and re.match(r"^https?://", src):
                    plan.append(("url", src))
                elif kw == "ADD" and re.match(r"^git@|\.git(#.*)?$", src):
                    raise df.fail(ins.line, f"ADD of a git repository ({src}) is not supported by berth's builder")
                else:
                    matched = context_mod.glob(self.root, src)
                    if not matched:
                        raise df.fail(ins.line, f"{kw} failed: file not found in build context or "
                                                f"excluded by .dockerignore: stat {src}: file does not exist")
                    plan.extend(("path", m) for m in matched)
            if len(plan) > 1:
                dir_dest = True
            for kind, src in plan:
                if kind == "url":
                    urls[src] = await asyncio.to_thread(self._download, src, ins.line)
            digests = []
            for kind, src in plan:
                if kind == "path":
                    digests.append(await asyncio.to_thread(context_mod.digest_paths, self.root, [src]))
                elif kind == "heredoc":
                    digests.append(_sha256(heredoc_files[src].encode()))
                else:
                    with open(urls[src][0], "rb") as f:
                        digests.append(_sha256(f.read()))
            inputs = json.dumps(["context", [[p[1], d] for p, d in zip(plan, digests)]])
        description = f"{kw} " + " ".join(f"--{k}={v}" for k, v in ins.flags) + \
            f" {json.dumps(sources)} {dest_abs}"
        key_inputs = json.dumps([inputs, chown, chmod, dir_dest, dest_abs])

        async def make():
            async def from_stage(rootfs: str) -> None:
                uid, gid = _resolve_chown(rootfs, chown, ins.line) if chown else (0, 0)

                def from_image(src_root: str) -> None:
                    items = []
                    for src in sources:
                        matched = context_mod.glob(src_root, src)
                        if not matched:
                            raise df.fail(ins.line, f"COPY --from={from_ref}: {src}: no such file or directory")
                        items.extend(("path", m) for m in matched)
                    _apply(src_root, items, rootfs, dest_abs, dir_dest or len(items) > 1, uid, gid, mode,
                           False, {}, {})
                await self.worker.with_rootfs(src_image, from_image, None)

            def from_context(rootfs: str) -> None:
                uid, gid = _resolve_chown(rootfs, chown, ins.line) if chown else (0, 0)
                _apply(self.root, plan, rootfs, dest_abs, dir_dest, uid, gid, mode, kw == "ADD",
                       heredoc_files, urls)
            fill = from_stage if from_ref else from_context
            name = self._name_for(ins)
            return self._named_by(name, await self.worker.with_rootfs(
                state.image_id, fill, (state.config, description, name)))
        try:
            image_id = await self._step_cached(state.image_id, description, key_inputs, make, on_hit=on_hit)
        finally:
            for path, _ in urls.values():
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        return StageState(image_id, _copy(state.config), dict(state.args), state.cmd_set)

    def _current_index(self, ins: df.Instruction) -> int:
        for s in self.file.stages:
            if ins in s.instructions:
                return s.index
        return len(self.file.stages)

    def _download(self, url: str, line: int) -> tuple[str, str]:
        """(local file, name) of an ADD URL, fetched into a directory of its own."""
        d = tempfile.mkdtemp(dir=self.cache_dir, prefix=".download-")
        name = posixpath.basename(urllib.parse.urlparse(url).path) or "download"
        path = os.path.join(d, name)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as f:
                shutil.copyfileobj(resp, f)
        except (OSError, ValueError) as exc:
            shutil.rmtree(d, ignore_errors=True)
            raise df.fail(line, f"ADD {url}: download failed: {exc}") from None
        os.chmod(path, 0o600)
        return path, name


# -- file work (in threads) --------------------------------------------------------------

def _apply(src_root: str, plan, rootfs: str, dest: str, dir_dest: bool, uid: int, gid: int,
           mode: int | None, add: bool, heredocs: dict[str, str], urls: dict) -> None:
    if dir_dest:
        _makedirs(rootfs, dest, 0, 0)
    for kind, src in plan:
        if kind == "heredoc":
            target = posixpath.join(dest, src) if dir_dest else dest
            _write_file(rootfs, target, heredocs[src].encode(), uid, gid, mode if mode is not None else 0o644)
            continue
        if kind == "url":
            path, name = urls[src]
            target = posixpath.join(dest, name) if dir_dest else dest
            with open(path, "rb") as f:
                _write_file(rootfs, target, f.read(), uid, gid, mode if mode is not None else 0o600)
            continue
        source = context_mod.inside(src_root, src) if src != "." else src_root
        st = os.stat(source) if os.path.exists(source) else os.lstat(source)
        if stat.S_ISDIR(st.st_mode):
            _makedirs(rootfs, dest, 0, 0)
            _copy_tree(source, rootfs, dest, uid, gid, mode)
        elif add and stat.S_ISREG(st.st_mode) and _is_archive(source):
            _makedirs(rootfs, dest if dir_dest or dest.endswith("/") else dest, 0, 0)
            _extract(source, rootfs, dest)
        else:
            target = posixpath.join(dest, posixpath.basename(src)) if dir_dest or \
                os.path.isdir(secure_join(rootfs, dest)) else dest
            _copy_entry(source, rootfs, target, uid, gid, mode)


def _is_archive(path: str) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _extract(archive: str, rootfs: str, dest: str) -> None:
    target = secure_join(rootfs, dest)

    def keep(member: tarfile.TarInfo, path: str):
        return tarfile.tar_filter(member, path).replace(mode=member.mode, uid=member.uid, gid=member.gid,
                                                        deep=False)
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(target, filter=keep)


def _makedirs(rootfs: str, path: str, uid: int, gid: int) -> None:
    """mkdir -p of `path` inside rootfs (symlinks resolved inside), new dirs 0755."""
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    cur = "/"
    for part in parts:
        cur = posixpath.join(cur, part)
        host = secure_join(rootfs, cur)
        if not os.path.isdir(host):
            if os.path.lexists(host):
                os.unlink(host)
            os.mkdir(host, 0o755)
            os.chown(host, uid, gid)


def _write_file(rootfs: str, target: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    _makedirs(rootfs, posixpath.dirname(target), 0, 0)
    host = secure_join(rootfs, target)
    if os.path.isdir(host) and not os.path.islink(host):
        raise errors.InvalidArgument(f"cannot copy to {target}: it is a directory")
    if os.path.lexists(host):
        os.unlink(host)
    with open(host, "wb") as f:
        f.write(data)
    os.chown(host, uid, gid)
    os.chmod(host, mode)


def _copy_entry(source: str, rootfs: str, target: str, uid: int, gid: int, mode: int | None,
                follow: bool = True) -> None:
    """One file, link or directory (itself only) from the host path `source` to `target`."""
    _makedirs(rootfs, posixpath.dirname(target), 0, 0)
    parent = secure_join(rootfs, posixpath.dirname(target) or "/")
    host = os.path.join(parent, posixpath.basename(target))
    st = os.stat(source) if follow else os.lstat(source)
    if os.path.lexists(host) and not (stat.S_ISDIR(st.st_mode) and os.path.isdir(host)
                                     and not os.path.islink(host)):
        if os.path.isdir(host) and not os.path.islink(host):
            shutil.rmtree(host)
        else:
            os.unlink(host)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), host)
        os.lchown(host, uid, gid)
        return
    if stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(host):
            os.mkdir(host)
        os.chown(host, uid, gid)
        os.chmod(host, mode if mode is not None else stat.S_IMODE(st.st_mode))
        return
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(source, host, follow_symlinks=True)
        os.chown(host, uid, gid)
        os.chmod(host, mode if mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    # Sockets, fifos and devices have no place in an image built from a context.


def _copy_tree(source: str, rootfs: str, dest: str, uid: int, gid: int, mode: int | None) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        rel = os.path.relpath(dirpath, source)
        base = dest if rel == "." else posixpath.join(dest, rel)
        for name in sorted(dirnames + filenames):
            _copy_entry(os.path.join(dirpath, name), rootfs, posixpath.join(base, name), uid, gid, mode,
                        follow=False)
        # Symlinked directories are copied as links, never walked into.
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]


def _resolve_chown(rootfs: str, spec: str, line: int) -> tuple[int, int]:
    user, _, group = spec.partition(":")

    def lookup(name: str, file: str) -> int:
        if name.isdigit():
            return int(name)
        try:
            with open(secure_join(rootfs, file)) as f:
                for entry in f:
                    fields = entry.strip().split(":")
                    if len(fields) > 2 and fields[0] == name:
                        return int(fields[2])
        except OSError:
            pass
        raise df.fail(line, f"--chown={spec}: unable to find {'user' if file == '/etc/passwd' else 'group'} "
                            f"{name} in the image")
    uid = lookup(user, "/etc/passwd")
    if group:
        return uid, lookup(group, "/etc/group")
    if user.isdigit():
        return uid, uid
    # A name alone: its primary group.
    try:
        with open(secure_join(rootfs, "/etc/passwd")) as f:
            for entry in f:
                fields = entry.strip().split(":")
                if len(fields) > 3 and fields[0] == user:
                    return uid, int(fields[3])
    except OSError:
        pass
    return uid, uid


# -- small values ------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_VAR = re.compile(r"\$(?:\{([a-zA-Z_][a-zA-Z0-9_]*)\}|([a-zA-Z_][a-zA-Z0-9_]*))")


def _expand_vars(text: str, env: dict[str, str]) -> str:
    """$VAR and ${VAR} in a heredoc body; nothing else of a shell's syntax."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _copy(config: image_pb2.ImageConfig) -> image_pb2.ImageConfig:
    out = image_pb2.ImageConfig()
    out.CopyFrom(config)
    return out


def _duration(started: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int((time.monotonic() - started) * 1e9))
    return d


def _parse_duration(text: str, flag: str, line: int) -> int:
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise df.fail(line, f"HEALTHCHECK --{flag}={text}: not a duration (e.g. 30s, 1m30s)")
    return int(total)


def _ports(word: str, line: int) -> list[str]:
    port, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise df.fail(line, f"EXPOSE {word}: invalid protocol {proto}")
    start, _, end = port.partition("-")
    if not start.isdigit() or (end and not end.isdigit()):
        raise df.fail(line, f"EXPOSE {word}: invalid port")
    lo, hi = int(start), int(end or start)
    if not 0 < lo <= hi <= 65535:
        raise df.fail(line, f"EXPOSE {word}: invalid port range")
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]
