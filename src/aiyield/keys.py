"""The Redis key layout: every key aiyield reads or writes is built here, and nowhere else.

Writers (the worker's store, the gateway's OTLP state) and readers (the exporter, `aiyield report`, tests, benches)
import these builders, so a key renamed here is renamed everywhere; a key spelled by hand elsewhere would silently
read zero.

Layout (prefix `ay:`):
  off:{consumer}:{topic}:{partition}   next Kafka offset to apply (written with the batch's effects)
  dd:{epoch}:{shard}                   dedup markers: set of 64-bit digests of event ids (intset: 8 bytes each),
                                       one per shard of the id space per epoch (half the horizon); expires whole
  dd:{epoch}                           flag: the epoch holds markers (lookups skip epochs without it)
  w:{window}:{bucket}                  hash: series -> integer amount (EXPIREAT when the bucket leaves its window)
  dev:{window}:{bucket}:{team}         HyperLogLog of pseudonymised developers
  teams                                set of every team seen (the cardinality guard's admitted teams)
  names:{label}                        set of the tools / models admitted by the cardinality guard
  events_total                         hash: type<SEP>outcome -> count
  totals                               hash: series -> the processing-time counters (`core.counters`), fixed point
  totals:net                           hash: series -> signed net sum of the crediting join's series (their peak is
                                       the counter in `totals`)
  last_ts                              sorted set: type -> newest event time (ZADD GT keeps the max)
  otlp2:{digest}                       cumulative OTLP series state of the gateway (v2: start and time stored as
                                       20-digit strings; the v1 `otlp:` keys expire on their own)
  j:t:{epoch}:{shard}                  join: hash of tasks, one field per (team, task_id) digest
  j:s:{digest}                         join: a large task's commits (hash, field `repo NUL sha`), beyond 64
  j:c:{epoch}:{repo digest}            join: hash of a repo's commits, one field per full SHA (packed bytes)
  j:x:{epoch}:{repo digest}            join: the repo's pushed full SHAs (sorted set, one score: lexical), by the
                                       epoch of their first push: abbreviated SHAs resolve through it
  j:a:{repo digest}                    join: hash of abbreviation -> deployments naming it (msgpack list)
  j:d:{digest}                         join: one deployment (repo, deploy_id)
  j:b:{digest}                         join: head-only deployments anchored on a branch (repo, branch)
  j:k:{digest}                         join: one team's credit aggregate on one deployment (team, repo, deploy_id)
  j:p:{digest}                         join: sorted set of commits pushed to a branch, by push time
  bill:d:{provider}                    billed spend (`aiyield reconcile`): hash of UTC day start -> integer amount
                                       (spend's fixed point); HSET overwrites a day, so a re-run never adds
  bill:synced                          hash: provider -> time of its last successful reconcile
Kept by `aiyield rebuild` (not derived from Kafka): `otlp2:` and `bill:`.
"""

from __future__ import annotations

import hashlib

PREFIX = "ay:"


def digest(text: str, size: int = 12) -> str:
    """A fixed-length stand-in for an unbounded name (ids, repos, series) inside a key."""
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def offset(consumer: str, topic: str, partition: int) -> str:
    return f"{PREFIX}off:{consumer}:{topic}:{partition}"


#: Contract: a repeated id has no further effect for at least 7 days. One day of slack.
DEDUP_SECONDS = 8 * 86400
#: Markers written during one epoch share their sets and expire with them, a horizon after the epoch ends: a marker
#: lives between 8 and 12 days, and a lookup reads the 3 epochs that can hold live markers (4 with the next one, for
#: a worker whose clock runs ahead; epochs without markers are skipped).
DEDUP_EPOCH = DEDUP_SECONDS // 2
#: The id space is split into this many sets per epoch. Each set must stay an intset (8 bytes per marker): at most
#: `DEDUP_SET_ENTRIES` members, the server's `set-max-intset-entries` (default 512, which `store.RedisStore` raises
#: when allowed). Capacity at full compactness: DEDUP_SHARDS * DEDUP_SET_ENTRIES markers per epoch, ~134 million
#: per day; beyond, sets become hash tables (still exact, ~5x the memory). An insert into a full intset moves ~128
#: KiB (a few microseconds of Redis), paid only at that volume. Changing the shard count re-homes every marker:
#: never change it on a running system.
DEDUP_SHARDS = 16384
DEDUP_SET_ENTRIES = 32768

#: "shard:member": a 64-bit signed digest of the id (the set member, in decimal, as Redis stores intset members)
#: and 14 more bits choosing its set. A false duplicate needs two ids of one namespace with equal 78-bit digests
#: within a horizon: ~N^2 / 2^79 for N live ids (N = 400 million: about 1 in 4 million per horizon).
Marker = str

#: Every dedup key (for scans by benches and tests).
SEEN_PATTERN = f"{PREFIX}dd:*"

assert DEDUP_SHARDS & (DEDUP_SHARDS - 1) == 0 and DEDUP_SHARDS <= 1 << 16


def seen(namespace: str, event_id: str) -> Marker:
    """The dedup marker of an id in a namespace (`event`, `task`, `dlq`)."""
    d = hashlib.blake2b(f"{namespace}\0{event_id}".encode(), digest_size=10).digest()
    return f"{(d[8] << 8 | d[9]) & (DEDUP_SHARDS - 1)}:{int.from_bytes(d[:8], 'big', signed=True)}"


def seen_epoch(ts: float) -> int:
    return int(ts // DEDUP_EPOCH)


def seen_epochs(now: float) -> range:
    """Epochs a lookup at `now` reads: every one whose markers may be younger than the horizon, and the next."""
    return range(seen_epoch(now - DEDUP_SECONDS), seen_epoch(now) + 2)


def seen_flag(epoch: int) -> str:
    return f"{PREFIX}dd:{epoch}"


def seen_prefix(epoch: int) -> str:
    """A marker set's key without its shard: `seen_prefix(epoch) + str(shard)` (the store's script appends it)."""
    return f"{PREFIX}dd:{epoch}:"


def seen_expiry(epoch: int) -> int:
    """A marker written in `epoch` is found for at least DEDUP_SECONDS, then its whole set expires."""
    return (epoch + 1) * DEDUP_EPOCH + DEDUP_SECONDS


def window(name: str, bucket: int) -> str:
    return f"{PREFIX}w:{name}:{bucket}"


#: A token (the server's time) set by the first write to a store without one: a reader that kept buckets by version
#: (`readout.BucketCache`) sees it change when Redis lost its data or was rebuilt, since a bucket written again from
#: scratch can come back to a version number the reader already holds, with other amounts.
INCARNATION = f"{PREFIX}incarnation"

#: A field of every window bucket, bumped by each write to it (never a series: series start with a measure name), so
#: that a reader can keep buckets it has read and re-read only those that changed.
WINDOW_VERSION = "\x00v"


def window_of(key: str) -> str | None:
    """The window name of a `window` key (None for any other key)."""
    head, _, rest = key.partition(f"{PREFIX}w:")
    return rest.split(":", 1)[0] if not head and rest else None


def developers(name: str, bucket: int, team: str) -> str:
    """A team's distinct developers in one bucket (HyperLogLog). The readout's `_DEVELOPERS` script builds the same
    names from `developers_prefix`, the bucket start and the team."""
    return f"{developers_prefix(name)}{bucket}:{team}"


def developers_prefix(name: str) -> str:
    return f"{PREFIX}dev:{name}:"


TEAMS = f"{PREFIX}teams"


def names(label: str) -> str:
    """The names admitted by the cardinality guard for a label (`team`, `tool`, `model`); teams are `TEAMS`."""
    return TEAMS if label == "team" else f"{PREFIX}names:{label}"
EVENTS_TOTAL = f"{PREFIX}events_total"
#: The `aiyield_*_total` counters (contract v3 §3) and the net sums behind the peaked ones (see `core.counters`).
TOTALS = f"{PREFIX}totals"
TOTALS_NET = f"{PREFIX}totals:net"
LAST_TS = f"{PREFIX}last_ts"


def otlp_series(series_key: str) -> str:
    return f"{PREFIX}otlp2:{digest(series_key, 16)}"


# Join state (see aiyield.core.crediting): one key per entity, each expiring a horizon past its newest event time.


#: Tasks are spread over this many hashes (per epoch), so that two workers rarely WATCH the same one at once.
TASK_SHARDS = 16


def join_task(team: str, task_id: str, epoch: int) -> tuple[str, bytes]:
    """(hash, field) of one task in one epoch (see `aiyield.batch`): the field is 8 bytes of digest of its identity.

    A field instead of a key of its own, in a hash that expires as a whole, saves ~60 bytes per pending task.
    Collisions need ~2^32 live tasks.
    """
    tid = hashlib.blake2b(f"{team}\0{task_id}".encode(), digest_size=8).digest()
    return f"{PREFIX}j:t:{epoch}:{tid[0] % TASK_SHARDS}", tid


def join_commits(repo: str, epoch: int) -> str:
    """Hash of a repo's commits in one epoch: field = the full SHA packed (`commit_field`), value = its state."""
    return f"{PREFIX}j:c:{epoch}:{digest(repo, 8)}"


def commit_field(sha: str) -> bytes:
    """A full SHA as a hash field: its 20 (or 32) bytes, half its text."""
    return bytes.fromhex(sha)


def join_task_commits(team: str, task_id: str) -> str:
    """A large task's set of commits (a hash: field `repo NUL sha`, value 1)."""
    return f"{PREFIX}j:s:{digest(team + chr(0) + task_id)}"


def join_shas(repo: str, epoch: int) -> str:
    """The repo's full SHAs first pushed in one epoch: a sorted set with one score, read by lexical range."""
    return f"{PREFIX}j:x:{epoch}:{digest(repo, 8)}"


def join_abbreviations(repo: str) -> str:
    """Hash: abbreviated SHA -> the deployments of the repo naming it (msgpack list of deploy ids)."""
    return f"{PREFIX}j:a:{digest(repo, 8)}"


def join_credit(team: str, repo: str, deploy_id: str) -> str:
    return f"{PREFIX}j:k:{digest(team + chr(0) + repo + chr(0) + deploy_id)}"


def join_deployment(repo: str, deploy_id: str) -> str:
    return f"{PREFIX}j:d:{digest(repo + chr(0) + deploy_id)}"


def join_branch(repo: str, branch: str) -> str:
    """The head-only deployments anchored on a branch."""
    return f"{PREFIX}j:b:{digest(repo + chr(0) + branch)}"


def join_pushes(repo: str, branch: str) -> str:
    """Sorted set of `sha@ts` pushed to a branch, scored by push time."""
    return f"{PREFIX}j:p:{digest(repo + chr(0) + branch)}"


# Billed spend (aiyield.reconcile writes, aiyield.readout reads).

BILLED_PREFIX = f"{PREFIX}bill:"
BILLED_SYNCED = f"{BILLED_PREFIX}synced"


def billed_days(provider: str) -> str:
    """Hash of one provider's billed days: field = UTC day start (epoch seconds), value = integer amount."""
    return f"{BILLED_PREFIX}d:{provider}"


# Pull connectors (aiyield.pulling): how far each vendor's streams have been pulled.


def pull_cursor(vendor: str) -> str:
    """Hash of one vendor's cursors: field = stream (`usage`, `commits`, ...), value = epoch seconds pulled through."""
    return f"{PREFIX}pull:{vendor}"
