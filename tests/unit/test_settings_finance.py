"""Finance settings: AIYIELD_BUDGETS read and validated at start-up, cardinality caps, waste grace."""

from __future__ import annotations

import pytest

from aiyield.core.cardinality import Caps
from aiyield.settings import Settings, SettingsError


def test_budgets_are_loaded_from_the_named_file(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text("[teams.payments]\nmonthly_usd = 5000\n[default]\nmonthly_usd = 10\n")
    settings = Settings.from_env({"AIYIELD_BUDGETS": str(path)})
    assert settings.budgets.for_team("payments") == 5000 and settings.budgets.for_team("other") == 10
    assert Settings.from_env({}).budgets.for_team("payments") is None


@pytest.mark.parametrize("content", [None, "[teams.a]\nmonthly_usd = -1\n", "not toml ["])
def test_a_bad_budgets_file_stops_start_up_naming_the_variable(tmp_path, content):
    path = tmp_path / "budgets.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=r"AIYIELD_BUDGETS: .*budgets\.toml"):
        Settings.from_env({"AIYIELD_BUDGETS": str(path)})


def test_caps_and_grace():
    settings = Settings.from_env({"AIYIELD_MAX_TEAMS": "3", "AIYIELD_MAX_MODELS": "7", "AIYIELD_WASTE_GRACE_SECONDS": "60"})
    assert settings.caps == Caps(team=3, tool=Caps().tool, model=7)
    assert settings.waste_grace_seconds == 60
    assert Settings.from_env({}).caps == Caps()
    with pytest.raises(SettingsError, match="AIYIELD_MAX_TOOLS"):
        Settings.from_env({"AIYIELD_MAX_TOOLS": "0"})
