"""Authentication rules and ingest-token scopes (aiyield.gateway.auth)."""

import hashlib
import hmac
import time
from pathlib import Path

import pytest

from aiyield.core.events import validate
from aiyield.core.org import Org, Team
from aiyield.gateway.app import beyond_loopback, check_exposure
from aiyield.gateway.auth import (
    Authenticator,
    Denied,
    Principal,
    Rule,
    Scope,
    parse_ingest_tokens,
    token_matches,
    verify_github,
)
from aiyield.settings import Settings, SettingsError

PUSH_BODY = (Path(__file__).parents[2] / "fixtures" / "github" / "push.branch.json").read_bytes()


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_github_documented_test_vector() -> None:
    # From GitHub's "Validating webhook deliveries" page.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert verify_github(b"It's a Secret to Everybody", b"Hello, World!", header)


def test_github_signature_over_a_real_delivery_body() -> None:
    assert verify_github(b"s3cret", PUSH_BODY, sign(b"s3cret", PUSH_BODY))


@pytest.mark.parametrize(
    "secret, body, header",
    [
        (b"other", PUSH_BODY, sign(b"s3cret", PUSH_BODY)),  # wrong secret
        (b"s3cret", PUSH_BODY + b" ", sign(b"s3cret", PUSH_BODY)),  # body changed after signing
        (b"s3cret", PUSH_BODY, None),  # header missing
        (b"s3cret", PUSH_BODY, ""),
        (b"s3cret", PUSH_BODY, sign(b"s3cret", PUSH_BODY)[len("sha256=") :]),  # no algorithm prefix
        (b"s3cret", PUSH_BODY, "sha1=" + hmac.new(b"s3cret", PUSH_BODY, hashlib.sha1).hexdigest()),  # legacy header
        (b"s3cret", PUSH_BODY, "sha256="),
        (b"s3cret", PUSH_BODY, "sha256=zz\u00e9\udc80"),  # non-hex, non-ASCII, lone surrogate: no exception
        (b"", PUSH_BODY, sign(b"", PUSH_BODY)),  # no secret configured: nothing verifies
    ],
)
def test_github_bad_signatures_are_rejected(secret: bytes, body: bytes, header: str | None) -> None:
    assert not verify_github(secret, body, header)


@pytest.mark.parametrize(
    "expected, given, ok",
    [
        ("gl-token", "gl-token", True),
        ("gl-token", "gl-tokeN", False),
        ("gl-token", "gl-token-longer", False),
        ("gl-token", "", False),
        ("gl-token", None, False),
        ("", "", False),  # an unset token matches nothing
        ("tök\u00e9n", "tök\u00e9n", True),
        ("token", "t\udc80ken", False),
    ],
)
def test_token_matches(expected: str, given: str | None, ok: bool) -> None:
    assert token_matches(expected, given) is ok


def authenticator(**settings) -> Authenticator:
    return Authenticator(Settings(**settings))


@pytest.mark.parametrize(
    "header, ok",
    [
        ("Bearer second", True),
        ("Bearer first", True),
        ("bearer second", True),  # the scheme is case-insensitive (RFC 7235)
        ("  Bearer   second  ", True),
        ("Bearer third", False),
        ("Bearer", False),
        ("Bearer ", False),
        ("Basic second", False),
        ("second", False),
        ("", False),
        (None, False),
    ],
)
def test_ingest_token_rule(header: str | None, ok: bool) -> None:
    auth = authenticator(ingest_tokens=("first", "second@team=web"))
    headers = {"Authorization": header} if header is not None else {}
    if ok:
        principal = auth.before_body(Rule.INGEST_TOKEN, headers)
        assert principal.name in ("token-1", "token-2")
        assert (principal.scope is None) == (principal.name == "token-1") == principal.trusted
    else:
        with pytest.raises(Denied) as info:
            auth.before_body(Rule.INGEST_TOKEN, headers)
        assert info.value.status == 401


def test_an_unconfigured_rule_lets_anyone_in_and_a_configured_one_does_not() -> None:
    open_ = authenticator()
    assert set(open_.open_rules()) == set(Rule)
    for rule in Rule:
        # An open ingest rule is a development gateway: it writes as an operator (no arrival stamp). Open webhooks
        # are still webhooks, whose times come from their payloads.
        assert open_.before_body(rule, {}) == Principal("anonymous", trusted=rule is Rule.INGEST_TOKEN)
        open_.after_body(rule, {}, b"anything")
    closed = authenticator(ingest_tokens=("t",), github_secret="g", gitlab_token="l")
    assert closed.open_rules() == []
    for rule in Rule:
        with pytest.raises(Denied):
            closed.before_body(rule, {})


def test_github_rule_checks_the_header_before_the_body_and_the_hmac_after() -> None:
    auth = authenticator(github_secret="s3cret")
    with pytest.raises(Denied):  # refused from the headers alone: the body is never read
        auth.before_body(Rule.GITHUB_SIGNATURE, {"X-Hub-Signature-256": "sha256=short"})
    forged = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert auth.before_body(Rule.GITHUB_SIGNATURE, forged) == Principal("github")
    with pytest.raises(Denied):
        auth.after_body(Rule.GITHUB_SIGNATURE, forged, PUSH_BODY)
    auth.after_body(Rule.GITHUB_SIGNATURE, {"X-Hub-Signature-256": sign(b"s3cret", PUSH_BODY)}, PUSH_BODY)


def test_gitlab_rule() -> None:
    auth = authenticator(gitlab_token="gl")
    assert auth.before_body(Rule.GITLAB_TOKEN, {"X-Gitlab-Token": "gl"}) == Principal("gitlab")
    with pytest.raises(Denied):
        auth.before_body(Rule.GITLAB_TOKEN, {"X-Gitlab-Token": "nope"})


# -- scopes ------------------------------------------------------------------------------------------------------


def test_parse_ingest_tokens() -> None:
    plain, team, both = parse_ingest_tokens(("a", "b@team=payments+team=web", "c@team=web+repo=shop/*"))
    assert (plain.secret, plain.scope, plain.name) == ("a", None, "token-1")
    assert team.scope == Scope(frozenset({"payments", "web"}), ())
    assert both.scope == Scope(frozenset({"web"}), ("shop/*",))
    # Repo globs are matched against case-folded repo names, so they are folded too; team names keep their case.
    (cased,) = parse_ingest_tokens(("e@team=Web+repo=Shop/API-*",))
    assert cased.scope == Scope(frozenset({"Web"}), ("shop/api-*",))
    # Names in a scope are NFKC-normalised like the events' names.
    (wide,) = parse_ingest_tokens(("d@team=\uff57\uff45\uff42",))
    assert wide.scope.teams == frozenset({"web"})


@pytest.mark.parametrize("entry", ["@team=x", "t@", "t@team=", "t@user=x", "t@team=x+", "t@repo"])
def test_malformed_scopes_are_a_settings_error(entry: str) -> None:
    with pytest.raises(SettingsError, match="AIYIELD_INGEST_TOKENS"):
        parse_ingest_tokens((entry,))


NOW = time.time()
TOKEN = {"type": "token", "id": "1", "ts": NOW, "team": "web", "tool": "t", "model": "m", "input_tokens": 1,
         "output_tokens": 1}
TASK = {"type": "task", "id": "2", "ts": NOW, "task_id": "x", "team": "web", "tool": "t", "status": "started",
        "repo": "shop/api"}
PUSH = {"type": "push", "id": "3", "ts": NOW, "repo": "shop/api", "branch": "main", "commits": []}
DEPLOY = {"type": "deployment", "id": "4", "ts": NOW, "deploy_id": "d", "repo": "shop/api", "environment": "prod",
          "status": "failed", "team": "web"}


#: shop/* belongs to web (and shop/api also to ops); bank/* to payments; lab/* to nobody.
ORG = Org({"web": Team(repos=("shop/*",)), "ops": Team(repos=("Shop/API",)), "payments": Team(repos=("bank/*",))})


@pytest.mark.parametrize(
    "scope, event, allowed",
    [
        (Scope(frozenset({"web"})), TOKEN, True),
        (Scope(frozenset({"web"})), TASK, True),
        (Scope(frozenset({"payments"})), TOKEN, False),  # another team
        (Scope(frozenset({"web"})), PUSH, False),  # team scopes write token and task events only
        (Scope(frozenset({"web"})), DEPLOY, False),  # ... even a deployment naming the team
        (Scope(repos=("shop/*",)), PUSH, True),
        (Scope(repos=("shop/*",)), DEPLOY, True),
        (Scope(repos=("shop/*",)), TASK, True),  # web owns shop/*
        (Scope(repos=("shop/*",)), {**TASK, "team": "ops"}, True),  # ops owns shop/api too
        (Scope(repos=("shop/*",)), {**TASK, "team": "ops", "repo": "shop/web"}, False),  # ... but not shop/web
        (Scope(repos=("shop/*",)), {**TASK, "team": "payments"}, False),  # v3: not another team's task
        (Scope(repos=("lab/*",)), {**TASK, "repo": "lab/x"}, False),  # a repo no team owns: no task at all
        (Scope(repos=("shop/*",)), TOKEN, False),  # repo scopes write task, push and deployment events
        (Scope(repos=("shop/*",)), {**PUSH, "repo": "bank/core"}, False),
        (Scope(repos=("shop/*",)), {**PUSH, "repo": "Shop/Web"}, True),  # repo names are case-insensitive
        (Scope(repos=("shop/*",)), {**TASK, "repo": None}, False),
        (Scope(frozenset({"web"}), ("shop/*",)), TASK, True),  # both: task events of both
        (Scope(frozenset({"web"}), ("shop/*",)), {**TASK, "repo": "bank/core"}, False),
        (Scope(frozenset({"web"}), ("shop/*",)), {**TASK, "team": "payments"}, False),
        (Scope(frozenset({"web"}), ("lab/*",)), {**TASK, "repo": "lab/x"}, True),  # the team scope says which team
        (Scope(frozenset({"web"}), ("shop/*",)), TOKEN, False),
    ],
)
def test_scope(scope: Scope, event: dict, allowed: bool) -> None:
    event = validate({k: v for k, v in event.items() if v is not None}, NOW)
    reason = scope.refusal(event, ORG)
    assert (reason is None) is allowed, reason
    assert reason is None or reason.endswith("(contract v3 §4)")


def test_a_repo_scoped_token_is_told_which_teams_it_may_write_tasks_for() -> None:
    scope = parse_ingest_tokens(("t@repo=shop/*",))[0].scope
    reason = scope.refusal(validate({**TASK, "team": "payments", "repo": "Shop/API"}, NOW), ORG)
    assert reason == ("team 'payments' is outside this ingest token's scope: a repo-scoped token writes tasks only "
                      "under the teams whose repos in the organisation file match 'shop/api' (ops, web) "
                      "(contract v3 §4)")
    reason = scope.refusal(validate({**TASK, "repo": "shop/x"}, NOW), Org())
    assert reason is not None and "(none)" in reason


def test_no_scope_reaches_another_teams_task() -> None:
    """Task identity is (team, task_id): whatever the scope, an accepted event names one of the token's teams, so
    a task id another team uses is never touched (contract v3 §4)."""
    scopes = [Scope(frozenset({"web"})), Scope(repos=("shop/*", "bank/*")), Scope(frozenset({"web"}), ("bank/*",))]
    for scope in scopes:
        for repo in ("shop/api", "bank/core", "lab/x"):
            for team in ("web", "ops", "payments"):
                event = validate({**TASK, "team": team, "repo": repo, "task_id": "shared-id"}, NOW)
                if scope.refusal(event, ORG) is None:
                    owners = scope.teams or set(ORG.teams_of_repo(repo))
                    assert team in owners, (scope, repo, team)


# -- exposure ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, beyond",
    [("127.0.0.1", False), ("::1", False), ("localhost", False), ("127.0.0.2", False), ("0.0.0.0", True),
     ("::", True), ("10.0.0.5", True), ("gateway.internal", True)],
)
def test_beyond_loopback(host: str, beyond: bool) -> None:
    assert beyond_loopback(host) is beyond


def test_a_gateway_beyond_loopback_refuses_to_start_open_unless_told() -> None:
    secrets = dict(ingest_tokens=("t",), github_secret="g", gitlab_token="l")
    check_exposure(Settings(gateway_host="0.0.0.0", **secrets))
    check_exposure(Settings(gateway_host="127.0.0.1"))  # development: open, with warnings
    check_exposure(Settings(gateway_host="0.0.0.0", allow_anonymous=True))
    with pytest.raises(SettingsError, match="AIYIELD_GITLAB_TOKEN is not set.*AIYIELD_ALLOW_ANONYMOUS=true"):
        check_exposure(Settings(gateway_host="0.0.0.0", ingest_tokens=("t",), github_secret="g"))


def test_settings_read_the_gateway_knobs() -> None:
    s = Settings.from_env({"AIYIELD_GATEWAY_HOST": "0.0.0.0", "AIYIELD_ALLOW_ANONYMOUS": "true",
                           "AIYIELD_RATE_LIMIT_PER_SECOND": "0", "AIYIELD_MAX_CONNECTIONS": "10",
                           "AIYIELD_HEADER_TIMEOUT_SECONDS": "2.5", "AIYIELD_BODY_TIMEOUT_SECONDS": "4"})
    assert (s.gateway_host, s.allow_anonymous, s.rate_limit_per_second, s.max_connections) == ("0.0.0.0", True, 0, 10)
    assert (s.header_timeout_seconds, s.body_timeout_seconds) == (2.5, 4)
    assert Settings.from_env({}).gateway_host == "127.0.0.1"
    with pytest.raises(SettingsError, match="AIYIELD_ALLOW_ANONYMOUS"):
        Settings.from_env({"AIYIELD_ALLOW_ANONYMOUS": "maybe"})
