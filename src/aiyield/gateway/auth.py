"""Who may write: every authentication rule of the gateway, and the scopes of ingest tokens.

Three rules, one per kind of sender (`Rule`); each source of the table (`gateway.sources`) names one:

- `INGEST_TOKEN`: `Authorization: Bearer <token>`, one of `AIYIELD_INGEST_TOKENS` (events, OTLP, Argo CD);
- `GITHUB_SIGNATURE`: `X-Hub-Signature-256`, an HMAC of the raw body keyed with `AIYIELD_GITHUB_SECRET`;
- `GITLAB_TOKEN`: `X-Gitlab-Token` equal to `AIYIELD_GITLAB_TOKEN`.

`Authenticator.before_body` decides from the headers alone, before any body byte is read: the sender is known, or
it is refused (401). Only the GitHub rule needs the body; its header must be present and well-formed before the
body is read (with the body limit and read timeout), and `after_body` then checks the HMAC.

A rule whose credential is not configured lets anyone in (as `anonymous`): the gateway refuses to start that way
when it listens beyond loopback unless `AIYIELD_ALLOW_ANONYMOUS=true` (`missing_credentials`, checked in `app`).

Ingest tokens may be scoped (`TOKEN@SCOPE+SCOPE`, `team=NAME` or `repo=GLOB`): `Scope.refusal` names why a
validated event lies outside a token's scope. Every comparison is constant-time.

Trust (contract v3 §2 "Rank time"): a `Principal` is `trusted` when it writes as an operator would, its claims
ranking at their `ts`: an unscoped ingest token, or anyone on an ingest rule left open (no tokens configured: a
development gateway, where no scope exists to protect). Everything else, scoped tokens and the GitHub and GitLab
webhooks (whose times come from payload fields a committer can set), is stamped with its arrival by the gateway
(`gateway.ingest`), overwriting any `arrival` the sender wrote. `aiyield send` and producers writing to Kafka never
pass through here: they are trusted, and carry no `arrival` unless they write one.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Mapping

from aiyield.core.events import clean_name, repo_name
from aiyield.core.org import Org
from aiyield.settings import Settings, SettingsError

_GITHUB_PREFIX = "sha256="
_TEAM_TYPES = frozenset({"token", "task", "context"})
_REPO_TYPES = frozenset({"task", "push", "deployment"})


class Rule(enum.Enum):
    INGEST_TOKEN = "ingest token"
    GITHUB_SIGNATURE = "GitHub signature"
    GITLAB_TOKEN = "GitLab token"


class Denied(Exception):
    """The sender is not who it must be: answer `status` (401) with `message`."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Scope:
    """What a scoped ingest token may write: events of these teams and/or repos (globs). Empty sets: no limit.

    Contract v3 §4: a token never changes a task or claim of a team outside its scopes. With team scopes, every event
    names one of them; with repo scopes alone, a task names a team whose `repos` in the organisation file match the
    task's repo. Task identity is (`team`, `task_id`), so no scope reaches another team's task.
    """

    teams: frozenset[str] = frozenset()
    #: Globs over repo names as the validator keys them (`repo_name`: case-folded).
    repos: tuple[str, ...] = ()

    def refusal(self, event: Any, org: Org) -> str | None:
        """Why a validated event lies outside this scope, or None when it lies within. `org` says which teams own a
        repo (the teams a repo-scoped token may write tasks for)."""
        allowed = set(_TEAM_TYPES | _REPO_TYPES)
        if self.teams:
            allowed &= _TEAM_TYPES
        if self.repos:
            allowed &= _REPO_TYPES
        if event.type not in allowed:
            return f"this ingest token is scoped and may not write {event.type} events (contract v3 §4)"
        team = getattr(event, "team", None)
        if self.teams and team not in self.teams:
            return f"team {team!r} is outside this ingest token's scope (contract v3 §4)"
        if self.repos:
            repo = getattr(event, "repo", None)
            if repo is None or not any(fnmatch.fnmatchcase(repo, glob) for glob in self.repos):
                return f"repo {repo!r} is outside this ingest token's scope (contract v3 §4)"
            if not self.teams and event.type == "task" and team not in (owners := org.teams_of_repo(repo)):
                return (
                    f"team {team!r} is outside this ingest token's scope: a repo-scoped token writes tasks only under "
                    f"the teams whose repos in the organisation file match {repo!r} "
                    f"({', '.join(owners) if owners else 'none'}) (contract v3 §4)"
                )
        return None


@dataclass(frozen=True)
class Principal:
    """Who sent a request: `name` keys rate limits and is safe to log (never a secret); `scope` limits what it
    may write (None: everything); `trusted` senders' events keep the `arrival` they carry, the others' are stamped
    with their arrival at the gateway."""

    name: str
    scope: Scope | None = None
    trusted: bool = False


@dataclass(frozen=True)
class IngestToken:
    secret: str
    scope: Scope | None
    #: `token-N` by position in AIYIELD_INGEST_TOKENS: how logs and rate limits name it without revealing it.
    name: str


def parse_ingest_tokens(entries: tuple[str, ...]) -> tuple[IngestToken, ...]:
    """`AIYIELD_INGEST_TOKENS` entries (`TOKEN` or `TOKEN@SCOPE+SCOPE`) as tokens; `SettingsError` if malformed."""
    out = []
    for n, entry in enumerate(entries, 1):
        secret, at, scopes = entry.partition("@")
        if not secret:
            raise SettingsError(f"AIYIELD_INGEST_TOKENS entry {n}: empty token before '@'")
        scope = None
        if at:
            teams, repos = set(), []
            for part in scopes.split("+"):
                kind, eq, value = part.partition("=")
                if not eq or not value or kind not in ("team", "repo"):
                    raise SettingsError(
                        f"AIYIELD_INGEST_TOKENS entry {n}: scope {part!r} is not team=NAME or repo=GLOB"
                    )
                # Event names are normalised by the validator: so are the scope's, by the same functions.
                try:
                    value = clean_name(value) if kind == "team" else repo_name(value)
                except ValueError as exc:
                    raise SettingsError(f"AIYIELD_INGEST_TOKENS entry {n}: scope {part!r}: {exc}") from None
                if kind == "team":
                    teams.add(value)
                else:
                    repos.append(value)
            scope = Scope(frozenset(teams), tuple(repos))
        out.append(IngestToken(secret, scope, f"token-{n}"))
    return tuple(out)


def missing_credentials(settings: Settings) -> list[str]:
    """The variables whose absence leaves a rule open to anyone."""
    return [
        name
        for name, value in (
            ("AIYIELD_INGEST_TOKENS", settings.ingest_tokens),
            ("AIYIELD_GITHUB_SECRET", settings.github_secret),
            ("AIYIELD_GITLAB_TOKEN", settings.gitlab_token),
        )
        if not value
    ]


def _bytes(text: str) -> bytes:
    # Header values may hold any character; "replace" keeps encoding total instead of raising on lone surrogates.
    return text.encode("utf-8", "replace")


def token_matches(expected: str, given: str | None) -> bool:
    """Whether a shared-secret token equals `expected`, in time independent of both (hashed first: compare_digest
    alone would reveal the expected token's length). An empty `expected` matches nothing."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(hashlib.sha256(_bytes(expected)).digest(), hashlib.sha256(_bytes(given)).digest())


def verify_github(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` (`sha256=<hex HMAC of the raw body>`) was made with `secret`."""
    if not secret or not header or not header.startswith(_GITHUB_PREFIX):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(_bytes(expected), _bytes(header[len(_GITHUB_PREFIX) :]))


def bearer(authorization_header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    scheme, _, given = (authorization_header or "").strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


class Authenticator:
    """Every rule, applied to a request's headers (and, for GitHub, its body)."""

    def __init__(self, settings: Settings) -> None:
        self._tokens = parse_ingest_tokens(settings.ingest_tokens)
        self._github = settings.github_secret.encode()
        self._gitlab = settings.gitlab_token

    def open_rules(self) -> list[Rule]:
        """Rules that let anyone in, for want of a credential."""
        configured = {Rule.INGEST_TOKEN: self._tokens, Rule.GITHUB_SIGNATURE: self._github, Rule.GITLAB_TOKEN: self._gitlab}
        return [rule for rule, value in configured.items() if not value]

    def before_body(self, rule: Rule, headers: Mapping[str, str]) -> Principal:
        """The sender, from headers alone; raises `Denied`. GitHub's signature is checked later, by `after_body`."""
        if rule is Rule.INGEST_TOKEN:
            if not self._tokens:
                return Principal("anonymous", trusted=True)
            given = bearer(headers.get("Authorization"))
            matched = None
            for token in self._tokens:  # no early exit: the time taken does not tell which token matched
                if token_matches(token.secret, given) and matched is None:
                    matched = token
            if matched is None:
                raise Denied("missing or wrong bearer token")
            return Principal(matched.name, matched.scope, trusted=matched.scope is None)
        if rule is Rule.GITLAB_TOKEN:
            if not self._gitlab:
                return Principal("anonymous")
            if not token_matches(self._gitlab, headers.get("X-Gitlab-Token")):
                raise Denied("bad or missing X-Gitlab-Token")
            return Principal("gitlab")
        if not self._github:
            return Principal("anonymous")
        signature = headers.get("X-Hub-Signature-256") or ""
        if not signature.startswith(_GITHUB_PREFIX) or len(signature) != len(_GITHUB_PREFIX) + 64:
            raise Denied("bad or missing X-Hub-Signature-256")
        return Principal("github")

    def after_body(self, rule: Rule, headers: Mapping[str, str], body: bytes) -> None:
        """Checks that need the body (GitHub's HMAC); raises `Denied`."""
        if rule is Rule.GITHUB_SIGNATURE and self._github:
            if not verify_github(self._github, body, headers.get("X-Hub-Signature-256")):
                raise Denied("bad or missing X-Hub-Signature-256")
