"""The local pipeline behind `aiyield up` (docs/INTERFACE.md §5): everything in one process tree on one machine.

`local_pipeline` starts, in this order: a directory for logs (DIR/logs with a data directory, else a temporary one), the embedded broker and Redis-compatible
server (each only when `AIYIELD_KAFKA` / `AIYIELD_REDIS` is not set), the topics, the state file, then the worker(s),
the exporter and the gateway as child processes of this one, and waits until the exporter and the gateway answer over
HTTP. Leaving the context stops everything in reverse order and removes the state file, also on Ctrl-C.

The state file (`up.json`) is owned here, both sides of it: `up` writes the addresses of its services there, and
`resolve_services` lets `send`, `report` and standalone services started in another terminal find them without
configuration. Its location is `$XDG_STATE_HOME/aiyield/up.json` (default `~/.local/state/...`), or
`AIYIELD_STATE_FILE`; the directory also holds the Claude Code hook's session files.

Presentation (what is printed, the progress line) stays in the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping

from aiyield.embedded import Child, embedded_services, http_ready, spawn, wait_until
from aiyield.settings import Settings

#: How long a freshly spawned exporter or gateway may take to answer before `up` gives up.
START_TIMEOUT = 60.0
#: How often `LocalPipeline.wait` looks at its children.
POLL_SECONDS = 0.5


# -- the state file ----------------------------------------------------------------------------------------------


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """aiyield's per-user state directory: where `up.json` lives (and the Claude Code hook's sessions, beside it)."""
    return state_file(env).parent


def state_file(env: Mapping[str, str] | None = None) -> Path:
    """Where `aiyield up` records the addresses of its services: `AIYIELD_STATE_FILE`, else the XDG state dir."""
    env = os.environ if env is None else env
    if env.get("AIYIELD_STATE_FILE"):
        return Path(env["AIYIELD_STATE_FILE"])
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "aiyield" / "up.json"


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where `aiyield up` keeps its embedded broker's and Redis's data by default: the state directory."""
    return state_dir(env)


class DataDirInUse(RuntimeError):
    """Another `aiyield up` runs on the same data directory."""


def lock_data(data: Path) -> int:
    """Hold DIR/lock for this process's life (released by the kernel even on SIGKILL): one `up` per directory."""
    import fcntl

    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"another aiyield up is using {data}") from None
    return fd


def write_state(path: Path, kafka: str, redis: str, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only: a Redis URL may carry an ACL password (rediss://user:pass@host).
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(json.dumps({"kafka": kafka, "redis": redis, "pid": pid}))


def read_state(path: Path) -> dict[str, str]:
    """The services a running `up` recorded; empty when none is running (no file, or an unreadable one)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: found[k] for k in ("kafka", "redis") if isinstance(found.get(k), str) and found[k]}


def resolve_services(settings: Settings, path: Path | None = None) -> Settings:
    """Fill in Kafka/Redis from a running `aiyield up` when they are not configured; configured values win."""
    if settings.kafka and settings.redis:
        return settings
    found = read_state(state_file() if path is None else path)
    return replace(settings, kafka=settings.kafka or found.get("kafka"), redis=settings.redis or found.get("redis"))


# -- the services ------------------------------------------------------------------------------------------------


def service_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the child services: the caller's, plus the addresses and ports `up` settled on."""
    return {
        **base,
        "AIYIELD_KAFKA": settings.kafka or "",
        "AIYIELD_REDIS": settings.redis or "",
        "AIYIELD_GATEWAY_PORT": str(settings.gateway_port),
        "AIYIELD_OTLP_GRPC_PORT": str(settings.otlp_grpc_port),
        "AIYIELD_METRICS_PORT": str(settings.metrics_port),
        **({"AIYIELD_PRICES": settings.prices} if settings.prices else {}),
    }


def service_commands(workers: int, python: str = sys.executable) -> list[tuple[str, list[str]]]:
    """(name, argv) of each child service: the workers, then the exporter, then the gateway."""
    me = [python, "-m", "aiyield"]
    return [
        *((f"worker-{i}", [*me, "worker"]) for i in range(workers)),
        ("exporter", [*me, "exporter"]),
        ("gateway", [*me, "gateway"]),
    ]


def metrics_url(settings: Settings) -> str:
    return f"http://localhost:{settings.metrics_port}/metrics"


def page_url(settings: Settings) -> str:
    """The exporter's live page (aiyield.page)."""
    return f"http://localhost:{settings.metrics_port}/"


def gateway_url(settings: Settings) -> str:
    return f"http://localhost:{settings.gateway_port}"


def otlp_grpc_address(settings: Settings) -> str:
    """Where an OpenTelemetry SDK or Collector with the `grpc` protocol sends (its endpoint setting)."""
    return f"http://localhost:{settings.otlp_grpc_port}"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class ServiceExited(RuntimeError):
    """A child service of `up` stopped on its own; the pipeline is incomplete."""

    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited ({child.proc.returncode})")
        self.child = child


@dataclass
class LocalPipeline:
    """A running local pipeline: its settings (with the embedded addresses filled in), log directory and children."""

    settings: Settings
    workdir: Path
    children: list[Child]

    @property
    def metrics_url(self) -> str:
        return metrics_url(self.settings)

    @property
    def page_url(self) -> str:
        return page_url(self.settings)

    @property
    def gateway_url(self) -> str:
        return gateway_url(self.settings)

    @property
    def otlp_grpc_address(self) -> str:
        return otlp_grpc_address(self.settings)

    def check(self) -> None:
        """Raise ServiceExited when a child has stopped."""
        for child in self.children:
            if child.proc.poll() is not None:
                raise ServiceExited(child)

    def wait(self, duration: float | None) -> None:
        """Watch the children for `duration` seconds (None: until interrupted)."""
        started = time.monotonic()
        while duration is None or time.monotonic() - started < duration:
            self.check()
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def local_pipeline(
    settings: Settings, workers: int = 1, announce: Callable[[str], None] = lambda _message: None,
    data: Path | None = None,
) -> Iterator[LocalPipeline]:
    """Start the whole pipeline; yield it once the exporter and gateway answer; stop it all on exit.

    `announce` is told about slow steps before they start (the embedded services take a few seconds). `data`: where
    the embedded services keep their data, and the logs (None: in memory, gone when they stop; logs in a temporary
    directory).
    """
    from aiyield.kafka import ensure_topics

    with contextlib.ExitStack() as stack:
        if data is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiyield-up-")))
        else:  # beside the data: kept for a look after a crash, replaced by the next run's
            stack.callback(os.close, lock_data(data))
            workdir = data / "logs"
            workdir.mkdir(exist_ok=True)
        if not (settings.kafka and settings.redis):
            announce("starting embedded Kafka-compatible broker and Redis-compatible server"
                     + (f" (data in {data})…" if data is not None else "…"))
        services = stack.enter_context(
            embedded_services(workdir, want_kafka=not settings.kafka, want_redis=not settings.redis, data=data)
        )
        settings = settings.with_overrides(kafka=settings.kafka or services.kafka, redis=settings.redis or services.redis)
        ensure_topics(settings.kafka_client_config(), settings.topics, settings.partitions)
        path = state_file()
        write_state(path, settings.kafka, settings.redis, os.getpid())
        stack.callback(lambda: path.unlink(missing_ok=True))

        env = service_env(settings, os.environ)
        children = []
        for name, argv in service_commands(workers):
            child = spawn(name, argv, workdir, env)
            stack.callback(child.stop)
            children.append(child)
        running = LocalPipeline(settings, workdir, children)
        exporter, gateway = children[-2], children[-1]
        wait_until(exporter, lambda: http_ready(running.metrics_url), timeout=START_TIMEOUT)
        wait_until(gateway, lambda: http_ready(running.gateway_url + "/healthz"), timeout=START_TIMEOUT)
        yield running
