"""Redis clients: the one place a client is built from `AIYIELD_REDIS` (contract v3 §5), sync or asyncio.

URL forms:
  redis://[user:pass@]host:port[/db], rediss://... (TLS, CA from AIYIELD_REDIS_CA_FILE), unix:///path.sock
  redis+sentinel://[user:pass@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]
      redis-py's `Sentinel(...).master_for(MASTER)`: every connection asks the sentinels where the master is, and a
      connection that finds a demoted master (READONLY) or none at all is dropped and asks again, so a client
      follows a failover by itself. The URL's user and password authenticate to the master (and replicas) only;
      the sentinels are asked without credentials (a sentinel with `requirepass` set is not supported: sending a
      password to one without it fails the connection).
  redis+cluster://HOST:PORT[,HOST:PORT...]
      parsed and validated, then refused at start: one worker batch is one transaction over keys in many hash
      slots (`aiyield.keys`), which a cluster cannot run. Cluster support needs a slot-safe key layout first.

Every client gets a connect timeout and a socket timeout, so no caller can hang on a Redis that stopped answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from aiyield.settings import Settings, SettingsError, redact_url

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_PORT = 26379
REDIS_PORT = 6379

#: Seconds to open a TCP connection (to Redis or a sentinel); an unreachable server is a quick, retried failure.
CONNECT_TIMEOUT_SECONDS = 5.0
#: Seconds a command may take unless the caller says otherwise (a worker batch's script on a large batch is the
#: slowest command aiyield sends).
SOCKET_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """Where `AIYIELD_REDIS` points. `kind`: `plain` (the URL as redis-py reads it), `sentinel` or `cluster`."""

    kind: str
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse(url: str) -> Target:
    """Check an `AIYIELD_REDIS` URL; raise SettingsError naming the variable when it is not one of the forms above."""
    scheme = urlsplit(url).scheme
    if scheme in PLAIN_SCHEMES:
        return Target("plain", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise _bad(url, "expected redis://, rediss://, unix://, redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] "
                        "or redis+cluster://HOST:PORT[,HOST:PORT...]")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise _bad(url, "no ?query or #fragment is read in this form")
    credentials, _, hosts = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    sentinel = scheme == SENTINEL_SCHEME
    nodes = tuple(_node(url, h, SENTINEL_PORT if sentinel else REDIS_PORT) for h in hosts.split(","))
    path = [p for p in parts.path.split("/") if p]
    common = dict(nodes=nodes, username=unquote(user) or None, password=unquote(password) if password else None)
    if not sentinel:
        if path:
            raise _bad(url, "a cluster URL has no path (a cluster has one database)")
        raise _bad(url, "Redis Cluster is not yet supported: a worker batch is one transaction over keys in many hash "
                        "slots; use redis:// or redis+sentinel://")
    if not path or len(path) > 2:
        raise _bad(url, "expected /MASTER or /MASTER/DB after the sentinels (MASTER: the name the sentinels monitor)")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise _bad(url, f"database {path[1]!r} is not a number")
        db = int(path[1])
    return Target("sentinel", url, master=unquote(path[0]), db=db, **common)


def _node(url: str, text: str, default_port: int) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
        raise _bad(url, f"{text!r} is not HOST:PORT")
    return host, int(port or default_port)


def _bad(url: str, why: str) -> SettingsError:
    return SettingsError(f"AIYIELD_REDIS={redact_url(url)!r}: {why}")


def client(source: Settings | str, *, asyncio: bool = False, timeout: float = SOCKET_TIMEOUT_SECONDS, **options: Any):
    """A Redis client (`redis.Redis`, or `redis.asyncio.Redis` with `asyncio=True`) for `AIYIELD_REDIS`.

    `source`: the settings (URL and TLS CA file) or a bare URL. `timeout`: seconds a command may take. `options`:
    more redis-py connection arguments (`health_check_interval`, ...).
    """
    if isinstance(source, Settings):
        url = source.redis
        options = {**source.redis_client_options(), **options}
    else:
        url = source
    if not url:
        raise SettingsError("AIYIELD_REDIS is not set")
    target = parse(url)
    options = {"socket_timeout": timeout, "socket_connect_timeout": min(CONNECT_TIMEOUT_SECONDS, timeout), **options}
    if asyncio:
        import redis.asyncio as module
        from redis.asyncio.sentinel import Sentinel
    else:
        import redis as module
        from redis.sentinel import Sentinel
    if target.kind == "plain":
        return module.Redis.from_url(url, **options)
    # Sentinels answer only "where is the master", quickly: the same timeouts, no credentials (see above).
    sentinels = Sentinel(
        list(target.nodes),
        sentinel_kwargs={k: options[k] for k in ("socket_timeout", "socket_connect_timeout")},
        **options,
    )
    return sentinels.master_for(target.master, db=target.db, username=target.username, password=target.password)
