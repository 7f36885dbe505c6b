from __future__ import annotations


import pytest

from aiyield.settings import Settings, SettingsError


def test_defaults():
    s = Settings.from_env({})
    assert (s.kafka, s.redis, s.gateway_port, s.metrics_port, s.partitions) == (None, None, 8787, 9464, 8)
    assert s.policy.production_environments == frozenset({"production", "prod"})
    assert s.using_dev_pseudonym_key
    assert s.topics == ("aiyield.events", "aiyield.dlq", "aiyield.join")


def test_environment_is_parsed():
    s = Settings.from_env({
        "AIYIELD_KAFKA": "k:9092", "AIYIELD_REDIS": "redis://r", "AIYIELD_INGEST_TOKENS": "a, b,,",
        "AIYIELD_PRODUCTION_ENVIRONMENTS": "live,prod-eu", "AIYIELD_FULL_CREDIT_LINES": "20",
        "AIYIELD_REPO_TEAMS": "acme/api=payments, acme/web=web", "AIYIELD_AI_TRAILERS": "robot=bot",
        "AIYIELD_NAMESPACE": "staging.", "AIYIELD_PSEUDONYM_KEY": "secret-key",
    })
    assert s.ingest_tokens == ("a", "b")
    assert s.policy.production_environments == frozenset({"live", "prod-eu"}) and s.policy.full_credit_lines == 20
    assert s.org.team_of_repo("ACME/api") == "payments" and s.org.team_of_repo("acme/web") == "web"
    assert s.ai_trailers == {"robot": "bot"}
    assert s.events_topic == "staging.aiyield.events"
    assert not s.using_dev_pseudonym_key


def test_secrets_are_not_in_repr():
    s = Settings.from_env({"AIYIELD_PSEUDONYM_KEY": "pk-123", "AIYIELD_GITHUB_SECRET": "gh-456",
                           "AIYIELD_GITLAB_TOKEN": "gl-789", "AIYIELD_INGEST_TOKENS": "tok-0"})
    text = repr(s)
    assert not any(secret in text for secret in ("pk-123", "gh-456", "gl-789", "tok-0"))


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"AIYIELD_PARTITIONS": "many"}, "AIYIELD_PARTITIONS='many' is not a int"),
        ({"AIYIELD_PARTITIONS": "0"}, "AIYIELD_PARTITIONS must be >= 1"),
        ({"AIYIELD_REPO_TEAMS": "acme/api"}, "AIYIELD_REPO_TEAMS: expected `key=value,...`"),
        ({"AIYIELD_AI_TRAILERS": ",,"}, "AIYIELD_AI_TRAILERS"),
    ],
)
def test_mistakes_name_the_variable(env, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")):
        Settings.from_env(env)


def test_ai_trailers_alone_ignore_the_rest_of_the_environment():
    from aiyield.settings import ai_trailers_from_env

    assert ai_trailers_from_env({"AIYIELD_AI_TRAILERS": "robot=bot", "AIYIELD_PARTITIONS": "zero"}) == {"robot": "bot"}
    assert ai_trailers_from_env({"AIYIELD_AI_TRAILERS": ""})["claude"] == "claude-code"
    with pytest.raises(SettingsError, match="AIYIELD_AI_TRAILERS"):
        ai_trailers_from_env({"AIYIELD_AI_TRAILERS": ","})


# -- transport security (issue 10): one helper per client family, secrets never shown --------------------------

from pathlib import Path  # noqa: E402

# A throwaway self-signed certificate (its key discarded): enough for ssl to load it as a trust anchor.
_SELF_SIGNED_CA = (Path(__file__).parents[1] / "fixtures" / "tls" / "ca.pem").read_text()


def test_plaintext_by_default_adds_nothing_to_the_clients():
    s = Settings.from_env({"AIYIELD_KAFKA": "k:9092", "AIYIELD_REDIS": "redis://r:6379/0"})
    assert s.kafka_client_config() == {"bootstrap.servers": "k:9092"}
    assert s.faust_broker_credentials() is None
    assert s.redis_client_options() == {}


def test_sasl_ssl_reaches_librdkafka_and_faust(tmp_path):
    import ssl

    import faust

    ca = tmp_path / "ca.pem"
    ca.write_text(_SELF_SIGNED_CA)
    s = Settings.from_env({
        "AIYIELD_KAFKA": "k1:9093,k2:9093", "AIYIELD_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "AIYIELD_KAFKA_SASL_MECHANISM": "scram-sha-512", "AIYIELD_KAFKA_SASL_USERNAME": "aiyield",
        "AIYIELD_KAFKA_SASL_PASSWORD": "kafka-pw-123", "AIYIELD_KAFKA_SSL_CAFILE": str(ca),
    })
    assert s.kafka_client_config() == {
        "bootstrap.servers": "k1:9093,k2:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "aiyield", "sasl.password": "kafka-pw-123", "ssl.ca.location": str(ca),
    }
    creds = s.faust_broker_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value, creds.protocol.value) == (
        "aiyield", "kafka-pw-123", "SCRAM-SHA-512", "SASL_SSL")
    assert isinstance(creds.ssl_context, ssl.SSLContext) and creds.ssl_context.get_ca_certs()  # our CA is loaded
    # The options the worker hands to aiokafka, through faust's own translation.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_password"] == "kafka-pw-123"
    # And a librdkafka client accepts the configuration (no connection is made).
    from confluent_kafka.admin import AdminClient

    AdminClient(s.kafka_client_config())


def test_ssl_only_and_sasl_plaintext():
    import faust

    s = Settings.from_env({"AIYIELD_KAFKA": "k:9093", "AIYIELD_KAFKA_SECURITY_PROTOCOL": "SSL"})
    assert s.kafka_client_config() == {"bootstrap.servers": "k:9093", "security.protocol": "SSL"}
    assert isinstance(s.faust_broker_credentials(), faust.SSLCredentials)
    s = Settings.from_env({"AIYIELD_KAFKA": "k:9092", "AIYIELD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "AIYIELD_KAFKA_SASL_USERNAME": "u", "AIYIELD_KAFKA_SASL_PASSWORD": "p"})
    assert s.kafka_client_config()["sasl.mechanism"] == "PLAIN" and "ssl.ca.location" not in s.kafka_client_config()
    creds = s.faust_broker_credentials()
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.ssl_context is None


def test_redis_tls_and_acl_from_the_url(tmp_path):
    import redis

    ca = tmp_path / "redis-ca.pem"
    ca.write_text(_SELF_SIGNED_CA)
    s = Settings.from_env({"AIYIELD_REDIS": "rediss://aiyield:redis-pw-456@r:6380/0", "AIYIELD_REDIS_CA_FILE": str(ca)})
    assert s.redis_client_options() == {"ssl_ca_certs": str(ca)}
    from aiyield import redisconn

    client = redisconn.client(s)  # what the exporter and `report` build
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("aiyield", "redis-pw-456", str(ca))
    assert client.connection_pool.connection_class is redis.SSLConnection
    import redis.asyncio as aioredis

    from aiyield.store import RedisStore

    store = RedisStore(s.redis, **s.redis_client_options())  # the worker's store
    assert store.redis.connection_pool.connection_class is aioredis.SSLConnection
    assert store.redis.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)


def test_no_secret_in_repr_including_the_redis_password():
    s = Settings.from_env({
        "AIYIELD_KAFKA": "k:9092", "AIYIELD_REDIS": "rediss://aiyield:redis-pw-456@r:6380/0",
        "AIYIELD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AIYIELD_KAFKA_SASL_USERNAME": "aiyield",
        "AIYIELD_KAFKA_SASL_PASSWORD": "kafka-pw-123", "AIYIELD_PSEUDONYM_KEY": "pk-1",
    })
    text = repr(s)
    assert "kafka-pw-123" not in text and "redis-pw-456" not in text and "pk-1" not in text
    assert "rediss://aiyield:***@r:6380/0" in text and "kafka_sasl_username='aiyield'" in text
    assert s.redis == "rediss://aiyield:redis-pw-456@r:6380/0"  # the value itself is intact


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"AIYIELD_KAFKA_SECURITY_PROTOCOL": "TLS"}, "AIYIELD_KAFKA_SECURITY_PROTOCOL='TLS': expected one of"),
        ({"AIYIELD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AIYIELD_KAFKA_SASL_USERNAME": "u"}, "needs AIYIELD_KAFKA_SASL_PASSWORD"),
        ({"AIYIELD_KAFKA_SASL_MECHANISM": "GSSAPI"}, "AIYIELD_KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({"AIYIELD_KAFKA_SASL_PASSWORD": "p"}, "uses no SASL"),
        ({"AIYIELD_KAFKA_SSL_CAFILE": "/etc/hostname"}, "uses no TLS"),
        ({"AIYIELD_KAFKA_SECURITY_PROTOCOL": "SSL", "AIYIELD_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "is not a readable file"),
        ({"AIYIELD_REDIS": "redis://r", "AIYIELD_REDIS_CA_FILE": "/etc/hostname"}, "not a rediss://"),
        ({"AIYIELD_REDIS": "http://u:secret@r"}, r"expected redis://"),
    ],
)
def test_transport_security_mistakes_name_the_variable(env, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")) as info:
        Settings.from_env(env)
    assert "secret" not in str(info.value)


def test_redact_url():
    from aiyield.settings import redact_url

    assert redact_url("redis://r:6379/0") == "redis://r:6379/0"
    assert redact_url("rediss://:pw@r:6380") == "rediss://:***@r:6380"
    assert redact_url(None) is None



def test_otlp_grpc_port_defaults_to_4317_and_0_turns_it_off():
    assert Settings.from_env({}).otlp_grpc_port == 4317
    assert Settings.from_env({"AIYIELD_OTLP_GRPC_PORT": "0"}).otlp_grpc_port == 0
    with pytest.raises(SettingsError, match="AIYIELD_OTLP_GRPC_PORT"):
        Settings.from_env({"AIYIELD_OTLP_GRPC_PORT": "grpc"})
