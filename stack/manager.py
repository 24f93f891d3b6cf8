"""Start, stop and inspect the local stack's processes, tracked by pid files under K2_HOME."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Literal

from .exceptions import StackError
from .ports import HOST, PORT_ROLES, PORTS_FILE, Ports, port_flag
from .resolve import (
    Component,
    GoTool,
    ResolveError,
    build_go_tool,
    is_built,
    is_resolved,
    load_components,
    load_go_tools,
    resolve,
)
from .services import (
    SERVICES,
    Context,
    Service,
    find_go,
    find_java,
    find_maven,
    service,
)

Progress = Callable[[str], None]
STATE_DIRS = (
    "logs",
    "run",
    "data",
    "kafka",
    "connect",
    "registry",
    "maintainer",
    "metrics",
    "alerts",
    "supervisor",
    "tmp",
)
LOCK_FILE = "stack.lock"  # under run/: held by `up` and by the supervisor's restarts
WAREHOUSE_FILE = "warehouse.json"  # where the catalog's warehouse is, as the last `up` that started it said
# States that need nothing done: a service skipped by `up` (its Go program could not be had) is not a failure.
OK_STATES = ("running", "skipped")
# What the other ports of a service are, in messages.


@dataclass(frozen=True)
class ServiceState:
    service: str
    url: str
    state: str  # running | unhealthy | stopped | crashed | skipped (by `up`: its Go program is missing)
    pid: int | None
    log: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        """Running, or skipped on purpose: what `up` and `status` should not fail for."""
        return self.state in OK_STATES


# What `up` does with a service: keep (already running), skip (cannot start; said, and the rest starts),
# fail (`up` refuses before changing anything), start (after downloading its jars or building its program).
StepKind = Literal["keep", "skip", "fail", "start"]
PLAN_COLUMNS = ("service", "url", "state", "action")


@dataclass(frozen=True)
class Step(Mapping[str, object]):
    """What `up` does with one service, decided before it does anything: `Stack.plan` returns the
    steps, the dry run prints them, `up` carries them out."""

    service: Service
    url: str
    state: str  # as `status` shows it before `up`
    kind: StepKind
    reason: str = ""  # skip and fail: why
    taken_port: str | None = None  # fail: the field of Ports another process listens on
    download: str | None = None  # start: the component to download from Maven Central first
    build: GoTool | None = None  # start: the Go program to build first

    @property
    def action(self) -> str:
        """The step in the dry run's words."""
        if self.kind == "keep":
            return "left alone (already running)"
        if self.kind in ("skip", "fail"):
            return f"would {self.kind}: {self.reason}"
        if self.download:
            return f"would download {self.download} from Maven Central, then start"
        if self.build:
            return f"would build {self.build.name} {self.build.version} with `go install`, then start"
        return "would start"

    def row(self) -> dict[str, object]:
        return {"service": self.service.name, "url": self.url, "state": self.state, "action": self.action}

    # A step reads as its row, so whoever prints a plan (`k2 stack up --dry-run`, `k2 run --dry-run`)
    # prints the steps `up` carries out.
    def __getitem__(self, key: str) -> object:
        return self.row()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(PLAN_COLUMNS)

    def __len__(self) -> int:
        return len(PLAN_COLUMNS)


def missing_program(find: Callable[[], str], checked: dict[Callable[[], str], str | None]) -> str | None:
    """Why a program the stack needs cannot be used (``find``'s error: not on PATH, too old), else None;
    looked up once per plan (``checked``)."""
    if find not in checked:
        try:
            find()
            checked[find] = None
        except StackError as exc:
            checked[find] = str(exc)
    return checked[find]


def go_skip_reason(tool: GoTool, cache: Path, go: str | None) -> str | None:
    """Why a service run by a Go program cannot start now, with how to get it; None when it can (built
    already, or Go is on PATH to build it)."""
    if is_built(cache, tool):
        return None
    if go is None:
        return f"Go not found; install Go {tool.go}+ (https://go.dev/dl), then `k2 stack up` again"
    return None


def cannot_start(name: str, reason: str) -> str:
    """Why `up` refuses a service it was asked for by name and cannot start."""
    return f"{name} cannot start: {reason}"


def skip_line(names: Iterable[str], reason: str) -> str:
    """The one line `up` prints for the services it leaves out."""
    return f"{', '.join(names)}: skipped ({reason})"


def _notice(message: str) -> None:
    """A line on stderr that stays, whatever the progress line does (cleared first on a terminal)."""
    prefix = "\r\033[K" if sys.stderr.isatty() else ""
    sys.stderr.write(f"{prefix}{message}\n")
    sys.stderr.flush()


def default_cache(env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("K2_CACHE_DIR"):
        return Path(env["K2_CACHE_DIR"]).resolve()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "k2"


def recorded_warehouse(home: Path) -> tuple[str | None, str | None]:
    """(warehouse URI, S3 endpoint) the catalog was last started with in ``home``; (None, None): on disk."""
    try:
        data = json.loads((home / WAREHOUSE_FILE).read_text())
    except (OSError, ValueError):
        return None, None
    return data.get("warehouse_uri"), data.get("s3_endpoint")


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR ignores sockets in TIME_WAIT, as the JVMs do: only a live listener counts.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# /proc/net/tcp socket states, in messages about what holds a port.
TCP_STATES = {
    "01": "ESTABLISHED",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def port_holder(port: int) -> str:
    """What holds a loopback TCP port, read from /proc: "pid N (name), listen", or the state of a socket
    no process owns any more; "" when nothing is found (or /proc is missing)."""
    sockets: dict[str, str] = {}  # inode -> state
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "06":
                sockets[fields[9]] = TCP_STATES.get(fields[3], fields[3])
    if not sockets:
        return ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                inode = target[8:-1] if target.startswith("socket:[") else ""
                if inode in sockets:
                    name = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({name}), {sockets[inode].lower().replace('_', ' ')}"
        except OSError:
            continue
    states = sorted(set(sockets.values()))
    return f"a {'/'.join(states)} socket of a process that has exited"


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks, to tell our pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


def _alive(pid: int, ticks: int | None) -> bool:
    if Path("/proc").is_dir():
        current = _start_ticks(pid)
        return current is not None and (ticks is None or current == ticks)
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def last_error_line(log: Path, limit: int = 200) -> str:
    """The last line of a log that looks like the cause of a failure, shortened to one line."""
    try:
        with log.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    markers = ("ERROR", "FATAL", "Exception", "Error:", "Caused by")
    for line in reversed(lines):
        if any(m in line for m in markers):
            return line.strip()[:limit]
    return ""


class Stack:
    """The local stack rooted at one state directory."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock_depth = 0
        self._lock_handle: IO[str] | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def log_path(self, svc: Service) -> Path:
        return self.ctx.logs / f"{svc.name}.log"

    def _pid_file(self, svc: Service) -> Path:
        return self.ctx.run / f"{svc.name}.json"

    def _skip_file(self, svc: Service) -> Path:
        """Written by `up` when it left the service out, holding why; removed when it starts or on `down`."""
        return self.ctx.run / f"{svc.name}.skipped"

    def skipped(self, svc: Service) -> str | None:
        try:
            return self._skip_file(svc).read_text().strip() or "skipped"
        except OSError:
            return None

    def _record(self, svc: Service) -> dict[str, int] | None:
        try:
            data = json.loads(self._pid_file(svc).read_text())
            return {"pid": int(data["pid"]), "ticks": int(data["ticks"]) if data.get("ticks") else 0}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def pid(self, svc: Service) -> int | None:
        """The pid of the service if this stack started it and it still runs."""
        record = self._record(svc)
        if record and _alive(record["pid"], record["ticks"] or None):
            return record["pid"]
        return None

    def process_state(self, svc: Service) -> tuple[str, int | None]:
        """The process alone, without a health check: (alive | crashed | skipped | stopped, pid)."""
        pid = self.pid(svc)
        if pid is not None:
            return "alive", pid
        if self._record(svc):
            return "crashed", None  # started by `up`, not stopped by `down`, and gone
        return ("skipped" if self.skipped(svc) else "stopped"), None

    def state(self, svc: Service) -> ServiceState:
        state, pid = self.process_state(svc)
        if state == "alive":
            state = "running" if svc.health(self.ctx) else "unhealthy"
        return ServiceState(svc.name, svc.url(self.ctx), state, pid, str(self.log_path(svc)))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state directory's lock: `up` and the supervisor's restarts never start one service
        twice. Re-entrant within this object (the supervisor's restart calls `up` while holding it)."""
        if self._lock_depth == 0:
            self.ctx.run.mkdir(parents=True, exist_ok=True)
            self._lock_handle = (self.ctx.run / LOCK_FILE).open("a")
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX)  # released by the kernel too if this process dies
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_handle is not None:
                self._lock_handle.close()
                self._lock_handle = None

    def kill(self, svc: Service, pid: int, wait: float = 30.0) -> None:
        """SIGKILL the service's process group (a hung or stopped JVM never handles SIGTERM) and wait until
        it is gone and its ports are free; its pid record stays, so it reads as crashed until started."""
        record = self._record(svc)
        ticks = (record["ticks"] or None) if record and record["pid"] == pid else None
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _alive(pid, ticks) and time.monotonic() < deadline:
            time.sleep(0.1)
        _reap(pid)
        if _alive(pid, ticks):
            raise StackError(f"{svc.name} (pid {pid}) did not exit within {wait:.0f}s of SIGKILL")
        outcome = self._ports_freed(svc, time.monotonic() + wait, "killed")
        if outcome != "killed":
            raise StackError(f"{svc.name}: {outcome}")

    def states(self) -> list[ServiceState]:
        return [self.state(svc) for svc in SERVICES]

    # -- up ----------------------------------------------------------------------------------
    def ensure_artifacts(self, progress: Progress) -> None:
        components = load_components()
        missing = [c for c in components.values() if not is_resolved(self.ctx.cache, c)]
        if not missing:
            return
        maven = find_maven()
        for index, component in enumerate(missing, 1):
            count = 0
            started = time.monotonic()

            def tick(url: str, component_name: str = component.name) -> None:
                nonlocal count
                count += 1
                progress(f"Downloading {component_name}: {count} files ({url.rsplit('/', 1)[-1]})")

            progress(f"Resolving {component.name} ({index}/{len(missing)}) from Maven Central")
            try:
                resolve(component, self.ctx.cache, maven=maven, on_download=tick)
            except ResolveError as exc:
                raise StackError(str(exc)) from exc
            progress(f"Resolved {component.name}: {count} files in {time.monotonic() - started:.0f}s\n")

    def go_skips(self, services: Iterable[Service], go: str | None) -> dict[str, str]:
        """The services that cannot start for want of their Go program (Go not on PATH and not built
        yet), and those that depend on one of them, each with the reason."""
        tools = load_go_tools()
        skips: dict[str, str] = {}
        for svc in services:
            reason = go_skip_reason(tools[svc.tool], self.ctx.cache, go) if svc.tool else None
            reason = reason or next((skips[dep] for dep in svc.depends_on if dep in skips), None)
            if reason:
                skips[svc.name] = reason
        return skips

    def ensure_go_tools(self, services: Iterable[Service], go: str, progress: Progress) -> dict[str, str]:
        """Build the Go programs of ``services`` not built yet; the services whose build failed (and
        those depending on them), each with the reason."""
        tools = load_go_tools()
        failed: dict[str, str] = {}
        for svc in services:
            dep_failed = next((failed[dep] for dep in svc.depends_on if dep in failed), None)
            if dep_failed:
                failed[svc.name] = dep_failed
                continue
            if not svc.tool or is_built(self.ctx.cache, tools[svc.tool]):
                continue
            tool = tools[svc.tool]
            modules = packages = 0
            started = time.monotonic()

            def tick(line: str, name: str = tool.name) -> None:
                nonlocal modules, packages
                if line.startswith("go: downloading "):
                    modules += 1
                    what = line.removeprefix("go: downloading ")
                    progress(f"Building {name}: downloading modules, {modules} ({what})")
                elif not line.startswith("go:") and " " not in line:
                    packages += 1
                    progress(f"Building {name}: compiled {packages} packages ({line})")

            progress(f"Building {tool.name} {tool.version} with `go install` (once; later starts reuse it)")
            try:
                build_go_tool(tool, self.ctx.cache, go=go, on_progress=tick)
            except ResolveError as exc:
                failed[svc.name] = f"{exc}; then `k2 stack up` again"
                continue
            progress(
                f"Built {tool.name} {tool.version}: {modules} modules downloaded, {packages} packages compiled "
                f"in {time.monotonic() - started:.0f}s\n"
            )
        return failed

    def up(self, timeout: float, progress: Progress, only: Iterable[str] = ()) -> list[ServiceState]:
        """Start every service (or those in ``only`` and what they depend on) that is not already running,
        and wait until all of them are healthy: carry out ``plan``, made under the state directory's lock,
        which is held meanwhile."""
        java = find_java()
        warehouse_uri, s3_endpoint = self._warehouse()  # both refuse before anything is written
        if self._lock_depth == 0 and self._locked_elsewhere():
            progress("Waiting for the supervisor's restart to finish")
        with self.lock():
            return self._up(java, warehouse_uri, s3_endpoint, timeout, progress, only)

    def _locked_elsewhere(self) -> bool:
        if not (self.ctx.run / LOCK_FILE).exists():
            return False
        try:
            with (self.ctx.run / LOCK_FILE).open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def _up(
        self,
        java: str,
        warehouse_uri: str | None,
        s3_endpoint: str | None,
        timeout: float,
        progress: Progress,
        only: Iterable[str],
    ) -> list[ServiceState]:
        ctx = replace(self.ctx, java=java, warehouse_uri=warehouse_uri, s3_endpoint=s3_endpoint)
        self.ctx = ctx
        for sub in ("logs", "run", "data", "tmp"):
            (ctx.home / sub).mkdir(parents=True, exist_ok=True)

        named = set(only)
        steps = self.plan(named)
        refused = next((step for step in steps if step.kind == "fail"), None)
        if refused is not None:
            raise StackError(self._refusal(refused))
        for step in steps:
            if step.kind != "keep":  # not running: what an earlier `up` recorded of it is stale
                self._pid_file(step.service).unlink(missing_ok=True)
                self._skip_file(step.service).unlink(missing_ok=True)
        skips = {step.service.name: step.reason for step in steps if step.kind == "skip"}
        pending = [step.service for step in steps if step.kind == "start"]

        # The plan checked the ports before any download, so a conflict fails in a second, not after minutes.
        self.ensure_artifacts(progress)
        go = find_go()
        if go is not None and any(step.build for step in steps):
            failed = self.ensure_go_tools(pending, go, progress)
            for name in named & set(failed):
                raise StackError(cannot_start(name, failed[name]))
            skips |= failed
            pending = [svc for svc in pending if svc.name not in failed]
        self._record_skips(skips)
        (ctx.home / PORTS_FILE).write_text(json.dumps(ctx.ports.as_dict(), indent=2) + "\n")
        if any(svc.name == "catalog" for svc in pending):
            record = {"warehouse_uri": ctx.warehouse_uri, "s3_endpoint": ctx.s3_endpoint}
            (ctx.home / WAREHOUSE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        components = load_components()
        deadline = time.monotonic() + timeout
        healthy = {step.service.name for step in steps if step.state == "running"}  # as the plan saw them
        while True:
            for svc in list(pending):
                if all(dep in healthy for dep in svc.depends_on):
                    self._spawn(svc, components[svc.component] if svc.component else None)
                    pending.remove(svc)
            waiting = []
            for step in steps:
                svc = step.service
                if svc.name in healthy or svc in pending or svc.name in skips:
                    continue
                pid = self.pid(svc)
                if pid is None:
                    log = self.log_path(svc)
                    cause = last_error_line(log)
                    raise StackError(f"{svc.name} exited during start-up{': ' + cause if cause else ''} (see {log})")
                if svc.health(ctx):
                    healthy.add(svc.name)
                else:
                    waiting.append(svc.name)
            if not waiting and not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = waiting or [s.name for s in pending]
                logs = ", ".join(str(self.log_path(service(n))) for n in names)
                raise StackError(
                    f"{', '.join(names)} not healthy within {timeout:.0f}s; raise --timeout or read {logs}"
                )
            progress(f"Waiting for {', '.join(waiting or [s.name for s in pending])} ({remaining:.0f}s left)")
            time.sleep(0.5)
        progress("")
        return self.states()

    def _record_skips(self, skips: Mapping[str, str]) -> None:
        if not skips:
            return
        for name, reason in skips.items():
            self._skip_file(service(name)).write_text(reason + "\n")
        by_reason: dict[str, list[str]] = {}
        for name, reason in skips.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            _notice(skip_line(names, reason))

    def plan(self, only: Iterable[str] = ()) -> list[Step]:
        """What ``up`` will do with every service (or those in ``only`` and what they depend on), in start
        order, decided without changing anything: the dry run prints it, ``up`` carries it out."""
        named = set(only)
        unresolved = {c.name for c in load_components().values() if not is_resolved(self.ctx.cache, c)}
        tools = load_go_tools()
        selected = self.selected(named)
        # Services run by a Go program are left out when Go is missing: the rest of the stack still starts.
        skips = self.go_skips([svc for svc in selected if self.pid(svc) is None], find_go())
        steps: list[Step] = []
        checked: dict[Callable[[], str], str | None] = {}
        for svc in selected:
            state = self.state(svc)
            seen = (svc, state.url, state.state)
            if state.pid is not None:
                steps.append(Step(*seen, "keep"))
            elif svc.name in skips and svc.name in named:
                steps.append(Step(*seen, "fail", cannot_start(svc.name, skips[svc.name])))
            elif svc.name in skips:
                steps.append(Step(*seen, "skip", skips[svc.name]))
            elif taken := next((name for name in svc.port_names() if port_in_use(self._port(name))), None):
                reason = f"port {self._port(taken)} is in use by another process"
                steps.append(Step(*seen, "fail", reason, taken_port=taken))
            else:
                download = svc.component if svc.component in unresolved else None
                tool = tools[svc.tool] if svc.tool else None
                build = tool if tool and not is_built(self.ctx.cache, tool) else None
                # A JVM needs Java 17+, a download needs Maven: what `up` would refuse, the plan says.
                missing = (svc.component and missing_program(find_java, checked)) or (
                    download and missing_program(find_maven, checked)
                )
                if missing:
                    steps.append(Step(*seen, "fail", missing))
                else:
                    steps.append(Step(*seen, "start", download=download, build=build))
        return steps

    def _refusal(self, step: Step) -> str:
        """The error `up` raises for a step that fails: a taken port says what holds it and how to move."""
        name = step.taken_port
        if name is None:
            return step.reason
        port = self._port(name)
        holder = port_holder(port) or "another process"
        return (
            f"port {port} for {PORT_ROLES.get(name, name)} is already in use by {holder}; stop it, or "
            f"pick another port with {port_flag(name)} or {Ports.ENV[name]}"
        )

    def _port(self, name: str) -> int:
        port: int = getattr(self.ctx.ports, name)
        return port

    def selected(self, only: Iterable[str] = ()) -> list[Service]:
        """The services named in ``only`` with everything they depend on, in start order (all if none)."""
        names = set(only)
        if not names:
            return list(SERVICES)
        for svc in reversed(SERVICES):  # dependencies come earlier in SERVICES
            if svc.name in names:
                names.update(svc.depends_on)
        return [svc for svc in SERVICES if svc.name in names]

    def _warehouse(self) -> tuple[str | None, str | None]:
        """The catalog's warehouse: as given (--warehouse/--s3-endpoint), else as this state directory
        recorded when the catalog last started (so a plain `up` never moves an S3 catalog back to disk).
        A running catalog cannot be switched to another warehouse."""
        recorded_uri, recorded_endpoint = recorded_warehouse(self.ctx.home)
        warehouse_uri = self.ctx.warehouse_uri or recorded_uri
        s3_endpoint = self.ctx.s3_endpoint or (recorded_endpoint if warehouse_uri == recorded_uri else None)
        if warehouse_uri and not warehouse_uri.startswith("s3://"):
            raise StackError(f"--warehouse {warehouse_uri!r} is not s3://bucket/prefix (leave it out for local disk)")
        if warehouse_uri and not s3_endpoint:
            raise StackError("an s3:// warehouse needs --s3-endpoint (or K2_S3_ENDPOINT), e.g. http://127.0.0.1:9000")
        if not warehouse_uri:
            s3_endpoint = None
        running = self.pid(service("catalog")) is not None
        if running and (warehouse_uri, s3_endpoint) != (recorded_uri, recorded_endpoint):
            where = recorded_uri or str(self.ctx.warehouse)
            raise StackError(
                f"the catalog already runs with warehouse {where}; stop it with `k2 stack down` before starting it "
                f"on {warehouse_uri or 'local disk'}"
            )
        return warehouse_uri, s3_endpoint

    def _spawn(self, svc: Service, component: Component | None) -> None:
        launch = svc.prepare(self.ctx, component)
        log = self.log_path(svc)
        with log.open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"\n=== k2 stack up: starting {svc.name} at {stamp}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                launch.command,
                cwd=launch.workdir,
                env={**os.environ, **launch.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `down` signals it and its children only
            )
        record = {"pid": proc.pid, "ticks": _start_ticks(proc.pid), "cmd": launch.command}
        self._pid_file(svc).write_text(json.dumps(record) + "\n")

    # -- down --------------------------------------------------------------------------------
    def down(self, timeout: float, progress: Progress, dry_run: bool = False) -> list[tuple[str, str]]:
        """Stop the processes this stack started: SIGTERM first, SIGKILL after ``timeout``."""
        results: list[tuple[str, str]] = []
        for svc in reversed(SERVICES):
            pid = self.pid(svc)
            if dry_run:
                results.append((svc.name, f"would stop pid {pid}" if pid is not None else "not running"))
                continue
            if pid is None:
                had_record = self._pid_file(svc).exists()
                self._pid_file(svc).unlink(missing_ok=True)
                self._skip_file(svc).unlink(missing_ok=True)
                results.append((svc.name, "was not running" if not had_record else "had already exited"))
                continue
            progress(f"Stopping {svc.name} (pid {pid})")
            results.append((svc.name, self._stop(svc, pid, timeout)))
            self._pid_file(svc).unlink(missing_ok=True)
        progress("")
        return results

    def _stop(self, svc: Service, pid: int, timeout: float) -> str:
        record = self._record(svc)
        ticks = record["ticks"] if record else None
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "stopped"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid, ticks or None):
                _reap(pid)
                return self._ports_freed(svc, deadline, "stopped")
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
        return self._ports_freed(svc, time.monotonic() + 5, f"killed (no clean exit within {timeout:.0f}s)")

    def _ports_freed(self, svc: Service, deadline: float, result: str) -> str:
        """Wait until none of the service's ports is bound, so that an `up` right after `down` finds them
        free; say which port is still held, and by what, if one outlives the deadline."""
        ports = [self._port(name) for name in svc.port_names()]
        while busy := [port for port in ports if port_in_use(port)]:
            if time.monotonic() >= deadline:
                return f"{result}; port {busy[0]} still held by {port_holder(busy[0]) or 'an unknown process'}"
            time.sleep(0.2)
        return result

    # -- reset -------------------------------------------------------------------------------
    def reset(self, include_cache: bool, dry_run: bool = False) -> list[Path]:
        """Delete the stack's state (and the artifact cache if asked); call ``down`` first. Returns what
        was deleted, or with ``dry_run`` what would be."""
        paths = [self.ctx.home / name for name in (*STATE_DIRS, PORTS_FILE, WAREHOUSE_FILE)]
        removed = [path for path in paths + ([self.ctx.cache] if include_cache else []) if path.exists()]
        if dry_run:
            return removed
        for path in removed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        try:
            self.ctx.home.rmdir()  # only if nothing else lives there
        except OSError:
            pass
        return removed

    # -- logs --------------------------------------------------------------------------------
    def log_files(self, names: Iterable[str]) -> list[tuple[str, Path]]:
        return [(name, self.log_path(service(name))) for name in names]


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (when `up` and `down` run in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
