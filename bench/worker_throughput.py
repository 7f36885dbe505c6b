"""Worker throughput on the embedded broker and Redis: pre-load N token events, start one worker, time the drain.

    .venv/bin/python bench/worker_throughput.py --events 200000 [--per-message 100] [--batch-messages 100]

Prints events/s from the first accepted event to the last, plus the worker's peak RSS. Results go to
docs/PERFORMANCE.md by hand, with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from aiyield.core.events import envelope
from aiyield import keys
from aiyield.core.windows import SEP
from aiyield.embedded import embedded_services
from aiyield.kafka import Publisher, ensure_topics
from aiyield.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--batch-messages", type=int, default=100)
    ap.add_argument("--teams", type=int, default=20)
    args = ap.parse_args()

    with embedded_services() as svc:
        env = {**os.environ, "AIYIELD_KAFKA": svc.kafka, "AIYIELD_REDIS": svc.redis,
               "AIYIELD_BATCH_MESSAGES": str(args.batch_messages), "AIYIELD_PSEUDONYM_KEY": "bench"}
        settings = Settings.from_env(env)
        ensure_topics(settings.kafka, settings.topics, settings.partitions)
        now = time.time()
        models = ["claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "amazon.nova-pro"]
        events = [
            {"type": "token", "id": f"b{i}", "ts": now - (i % 60), "team": f"team-{i % args.teams}",
             "tool": "claude-code", "model": models[i % 4], "developer": f"dev-{i % 500}",
             "input_tokens": 1000 + i % 100, "output_tokens": 200, "cache_read_tokens": 50}
            for i in range(args.events)
        ]
        publisher = Publisher(settings.kafka)
        t = time.perf_counter()
        values = [envelope(events[i : i + args.per_message]) for i in range(0, len(events), args.per_message)]
        publisher.publish(settings.events_topic, values)
        publisher.close()
        print(f"loaded {len(events):,} events in {len(values):,} messages in {time.perf_counter() - t:.1f}s", file=sys.stderr)

        client = redis.Redis.from_url(settings.redis)
        log = open(Path(tempfile.gettempdir()) / "aiyield-bench-worker.log", "wb")
        worker = subprocess.Popen([sys.executable, "-m", "aiyield", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        peak_rss = 0
        first = None
        try:
            while True:
                done = int(client.hget(keys.EVENTS_TOTAL, f"token{SEP}accepted") or 0)
                if done and first is None:
                    first, first_count = time.perf_counter(), done
                try:
                    rss = int(Path(f"/proc/{worker.pid}/status").read_text().split("VmRSS:")[1].split()[0])
                    peak_rss = max(peak_rss, rss)
                except (OSError, IndexError):
                    pass
                if done >= len(events):
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited with {worker.returncode}")
                pass
                time.sleep(0.05)
            elapsed = time.perf_counter() - first
            print(file=sys.stderr)
            print(f"events={len(events)} per_message={args.per_message} batch_messages={args.batch_messages} "
                  f"seconds={elapsed:.2f} events_per_s={(len(events) - first_count) / elapsed:,.0f} "
                  f"peak_rss_mb={peak_rss / 1024:.0f}")
        finally:
            worker.terminate()
            worker.wait()


if __name__ == "__main__":
    main()
