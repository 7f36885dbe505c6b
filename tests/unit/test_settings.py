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
    assert s.repo_teams == {"acme/api": "payments", "acme/web": "web"}
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
