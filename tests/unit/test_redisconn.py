"""The Redis client factory: URL forms, their errors, and the options every client gets (no server needed)."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import SentinelConnectionPool

from aiyield import redisconn
from aiyield.settings import Settings, SettingsError


def test_sentinel_url_names_sentinels_master_db_and_credentials():
    target = redisconn.parse("redis+sentinel://app:p%40ss@s1:26379,[::1]:26380,s3/mymaster/2")
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("::1", 26380), ("s3", redisconn.SENTINEL_PORT))
    assert (target.master, target.db, target.username, target.password) == ("mymaster", 2, "app", "p@ss")


@pytest.mark.parametrize("url, why", [
    ("redis+sentinel://s1:26379", "/MASTER"),
    ("redis+sentinel://s1:26379/m/x", "not a number"),
    ("redis+sentinel://s1:26379/m/0/extra", "/MASTER"),
    ("redis+sentinel://s1:port/m", "not HOST:PORT"),
    ("redis+sentinel://s1:26379,/m", "not HOST:PORT"),
    ("redis+sentinel://s1:26379/m?ssl=true", "query"),
    ("http://r:6379", "expected redis://"),
    ("redis+cluster://n1:7000/0", "no path"),
])
def test_malformed_urls_name_the_variable_and_the_problem(url, why):
    with pytest.raises(SettingsError, match=f"AIYIELD_REDIS=.*{why}"):
        Settings.from_env({"AIYIELD_REDIS": url})


def test_cluster_is_refused_at_start_with_a_clear_reason():
    with pytest.raises(SettingsError, match="AIYIELD_REDIS=.*Redis Cluster is not yet supported"):
        Settings.from_env({"AIYIELD_REDIS": "redis+cluster://n1:7000,n2:7001"})


def test_password_is_masked_in_errors():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AIYIELD_REDIS": "redis+sentinel://u:secret-pw@s1:26379"})
    assert "secret-pw" not in str(caught.value)


def test_plain_client_has_both_timeouts():
    kwargs = redisconn.client("redis://h:6379/3", timeout=7).connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["db"]) == (7, redisconn.CONNECT_TIMEOUT_SECONDS, 3)
    short = redisconn.client("redis://h:6379/3", timeout=1).connection_pool.connection_kwargs
    assert short["socket_connect_timeout"] == 1  # never longer than the command timeout


@pytest.mark.parametrize("asyncio, pool_class, sentinel_class", [
    (False, SentinelConnectionPool, redis.Redis), (True, AsyncSentinelPool, aioredis.Redis),
])
def test_sentinel_client_asks_the_sentinels_for_the_master(asyncio, pool_class, sentinel_class):
    settings = Settings.from_env({"AIYIELD_REDIS": "redis+sentinel://app:pw@s1:1,s2:2/mymaster/4"})
    client = redisconn.client(settings, asyncio=asyncio, timeout=9)
    pool = client.connection_pool
    assert isinstance(pool, pool_class) and pool.is_master and pool.service_name == "mymaster"
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"], kwargs["socket_timeout"]) == ("app", "pw", 4, 9)
    assert kwargs["socket_connect_timeout"] == redisconn.CONNECT_TIMEOUT_SECONDS
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    for sentinel in sentinels:
        assert isinstance(sentinel, sentinel_class)
        own = sentinel.connection_pool.connection_kwargs
        assert own.get("password") is None and own["socket_timeout"] == 9  # the URL's password is the master's only


def test_unset_url_is_a_settings_error():
    with pytest.raises(SettingsError, match="AIYIELD_REDIS is not set"):
        redisconn.client(Settings())
