"""The organisation file: parsing, validation messages, and the questions the pipeline asks of it."""

import pytest

from aiyield.core.org import Org, OrgError

EXAMPLE = """
[teams.payments]
repos = ["shop/pay*", "shop/ledger"]
members = ["ana@example.com", "octocat"]
cost_center = "CC-1042"
monthly_usd = 5000

[teams.shop]
repos = ["shop/*"]

[default]
monthly_usd = 100

[seats]
copilot = 19.0
cursor = 40
"""


def test_the_contract_example_parses_and_answers():
    org = Org.parse(EXAMPLE)
    assert org.team_of_repo("Shop/Ledger") == "payments"  # exact name, any case
    assert org.team_of_repo("shop/payments-api") == "payments"  # the longer glob beats shop/*
    assert org.team_of_repo("shop/web") == "shop"
    assert org.team_of_repo("other/repo") is None
    assert org.teams_of_repo("shop/pay") == ("payments", "shop")
    assert org.team_of_member("ANA@example.com") == "payments" and org.team_of_member("nobody") is None
    assert org.cost_center("payments") == "CC-1042" and org.cost_center("shop") is None
    assert org.budgets.for_team("payments") == 5000 and org.budgets.for_team("shop") == 100
    assert org.seats == {"copilot": 19.0, "cursor": 40.0}


def test_a_budgets_file_is_an_organisation_file():
    org = Org.parse("[teams.web]\nmonthly_usd = 10\n[default]\nmonthly_usd = 1\n")
    assert org.budgets.for_team("web") == 10 and org.budgets.for_team("x") == 1


def test_merging_keeps_both_and_the_later_budget_wins():
    base = Org.parse(EXAMPLE)
    on_top = Org.parse("[teams.payments]\nmonthly_usd = 7\n").merged(Org.from_repo_teams({"acme/api": "payments"}))
    merged = base.merged(on_top)
    assert merged.budgets.for_team("payments") == 7
    assert merged.team_of_repo("acme/api") == "payments" and merged.team_of_repo("shop/ledger") == "payments"
    assert merged.cost_center("payments") == "CC-1042"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[teams.a]\nrepo = ['x']\n", r"\[teams.a\] has unknown key\(s\) \['repo'\]"),
        ("[teams.a]\nrepos = 'x'\n", r"\[teams.a\] repos must be a list"),
        ("[teams.a]\nmonthly_usd = -1\n", r"monthly_usd must be finite and >= 0"),
        ("[seats]\ncopilot = 'x'\n", r"\[seats\] copilot must be a number"),
        ("[teams.a]\nmembers = ['m']\n[teams.b]\nmembers = ['M']\n", r"member 'M' is listed in both"),
        ("[team.a]\n", r"unknown table\(s\) \['team'\]"),
        ("not toml = = 1", r"not valid TOML"),
    ],
)
def test_mistakes_are_named(text, message):
    with pytest.raises(OrgError, match=message):
        Org.parse(text, "org.toml")
