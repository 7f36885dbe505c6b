"""Settings of the pull connectors (docs/CONNECTORS.md)."""

import pytest

from aiyield.settings import Settings, SettingsError


def test_pull_settings_from_the_environment_and_secrets_kept_out_of_repr():
    s = Settings.from_env({"AIYIELD_GITHUB_TOKEN": "ghp_secret", "AIYIELD_GITHUB_ORG": "acme",
                           "AIYIELD_CURSOR_API_KEY": "key_secret", "AIYIELD_CURSOR_API_URL": "http://127.0.0.1:9/",
                           "AIYIELD_GITHUB_API_URL": "https://ghe.example.com/api/v3", "AIYIELD_CLAUDE_CODE_SPEND": "analytics"})
    assert (s.github_org, s.cursor_api_url, s.github_api_url, s.claude_code_spend) == (
        "acme", "http://127.0.0.1:9", "https://ghe.example.com/api/v3", "analytics")
    assert "ghp_secret" not in repr(s) and "key_secret" not in repr(s)
    assert Settings.from_env({}).claude_code_spend == "otel"


@pytest.mark.parametrize("env, fragment", [
    ({"AIYIELD_CLAUDE_CODE_SPEND": "both"}, "expected otel or analytics"),
    ({"AIYIELD_CURSOR_API_URL": "api.cursor.com"}, "AIYIELD_CURSOR_API_URL"),
])
def test_pull_settings_mistakes_name_the_variable(env, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)
