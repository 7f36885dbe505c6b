"""The organisation file (`AIYIELD_ORG`, contract v3 §5): teams, the repos they own, their members, cost centers,
budgets, and seat prices. Read and validated in one place; every other part of aiyield asks this object.

    [teams.payments]
    repos = ["shop/pay*", "shop/ledger"]       # globs, case-insensitive: the team of commits no task claims
    members = ["ana@example.com", "octocat"]   # emails or logins vendor APIs report (mapped, then pseudonymised)
    cost_center = "CC-1042"
    monthly_usd = 5000

    [default]
    monthly_usd = 1000

    [seats]                                    # USD per seat per month
    copilot = 19.0

A budgets file (`AIYIELD_BUDGETS`: `[teams.NAME] monthly_usd`, `[default]`) is a valid organisation file, and so is
`AIYIELD_REPO_TEAMS` (`repo=team,...`), which `Org.from_repo_teams` turns into `repos` entries.

Pure: parsing takes text; `load` is the only function that touches the file system.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Mapping

from aiyield.core.finance import Budgets


class OrgError(ValueError):
    """A mistake in the organisation file, naming the file and the table at fault."""


@dataclass(frozen=True)
class Team:
    repos: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    cost_center: str | None = None
    monthly_usd: float | None = None


_TEAM_KEYS = {"repos", "members", "cost_center", "monthly_usd"}


@dataclass(frozen=True)
class Org:
    teams: Mapping[str, Team] = field(default_factory=dict)
    default_monthly_usd: float | None = None
    #: USD per seat per month, by tool (`copilot`, `cursor`, ...).
    seats: Mapping[str, float] = field(default_factory=dict)

    # -- questions the rest of aiyield asks

    @property
    def budgets(self) -> Budgets:
        return Budgets(
            {name: t.monthly_usd for name, t in self.teams.items() if t.monthly_usd is not None},
            self.default_monthly_usd,
        )

    def teams_of_repo(self, repo: str) -> tuple[str, ...]:
        """Every team whose `repos` match the repo (case-insensitive), sorted."""
        return _teams_of_repo(self._patterns, repo.casefold())

    def team_of_repo(self, repo: str) -> str | None:
        """The team of a repo's unclaimed commits: the team with the most specific matching pattern (an exact name
        beats any glob; among globs the longest; ties by team name), or None."""
        best: tuple[int, int, str] | None = None
        folded = repo.casefold()
        for team, patterns in self._patterns:
            for pattern in patterns:
                if fnmatch.fnmatchcase(folded, pattern):
                    exact = 0 if _is_glob(pattern) else 1
                    key = (exact, len(pattern), team)
                    if best is None or key[:2] > best[:2] or (key[:2] == best[:2] and team < best[2]):
                        best = key
        return best[2] if best else None

    def team_of_member(self, member: str) -> str | None:
        """The team listing this email or login (case-insensitive), or None."""
        return self._members.get(member.casefold())

    def cost_center(self, team: str) -> str | None:
        t = self.teams.get(team)
        return t.cost_center if t else None

    @cached_property
    def _patterns(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((name, tuple(p.casefold() for p in t.repos)) for name, t in sorted(self.teams.items()))

    @cached_property
    def _members(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, t in sorted(self.teams.items()):
            for m in t.members:
                out.setdefault(m.casefold(), name)
        return out

    # -- building

    @classmethod
    def parse(cls, text: str, source: str = "organisation file") -> "Org":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OrgError(f"{source}: not valid TOML: {exc}") from None
        unknown = set(doc) - {"teams", "default", "seats"}
        if unknown:
            raise OrgError(f"{source}: unknown table(s) {sorted(unknown)}; expected [teams.NAME], [default], [seats]")
        teams_table = doc.get("teams", {})
        if not isinstance(teams_table, dict):
            raise OrgError(f"{source}: `teams` must be a table of [teams.NAME] tables")
        teams = {name: _team(source, name, table) for name, table in teams_table.items()}
        default = None
        if "default" in doc:
            table = doc["default"]
            if not isinstance(table, dict) or set(table) - {"monthly_usd"}:
                raise OrgError(f"{source}: [default] takes only monthly_usd")
            default = _usd(source, "default", table.get("monthly_usd"), "monthly_usd")
        seats_table = doc.get("seats", {})
        if not isinstance(seats_table, dict):
            raise OrgError(f"{source}: [seats] must be a table of tool = USD per seat per month")
        seats = {tool: _usd(source, "seats", value, tool) for tool, value in seats_table.items()}
        members: dict[str, str] = {}
        for name, t in sorted(teams.items()):
            for m in t.members:
                if m.casefold() in members and members[m.casefold()] != name:
                    raise OrgError(f"{source}: member {m!r} is listed in both [teams.{members[m.casefold()]}] and [teams.{name}]")
                members[m.casefold()] = name
        return cls(teams, default, seats)

    @classmethod
    def load(cls, path: str | Path) -> "Org":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise OrgError(f"cannot read organisation file {path}: {exc.strerror or exc}") from None
        return cls.parse(text, str(path))

    def merged(self, other: "Org") -> "Org":
        """This file with another on top: its teams' fields replace ours where set (budgets file over org file)."""
        teams = dict(self.teams)
        for name, t in other.teams.items():
            mine = teams.get(name, Team())
            teams[name] = Team(
                repos=tuple(dict.fromkeys((*mine.repos, *t.repos))),
                members=tuple(dict.fromkeys((*mine.members, *t.members))),
                cost_center=t.cost_center if t.cost_center is not None else mine.cost_center,
                monthly_usd=t.monthly_usd if t.monthly_usd is not None else mine.monthly_usd,
            )
        default = other.default_monthly_usd if other.default_monthly_usd is not None else self.default_monthly_usd
        return Org(teams, default, {**self.seats, **other.seats})

    @classmethod
    def from_repo_teams(cls, pairs: Mapping[str, str]) -> "Org":
        """`AIYIELD_REPO_TEAMS` (repo -> team) as an organisation file."""
        repos: dict[str, list[str]] = {}
        for repo, team in pairs.items():
            repos.setdefault(team, []).append(repo)
        return cls({team: Team(repos=tuple(r)) for team, r in repos.items()})


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@lru_cache(maxsize=4096)
def _teams_of_repo(patterns: tuple[tuple[str, tuple[str, ...]], ...], folded: str) -> tuple[str, ...]:
    return tuple(team for team, pats in patterns if any(fnmatch.fnmatchcase(folded, p) for p in pats))


_NAME = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")


def _team(source: str, name: str, table: object) -> Team:
    where = f"teams.{name}"
    if not _NAME.match(name):
        raise OrgError(f"{source}: team name {name!r} must be 1-256 characters without control characters")
    if not isinstance(table, dict):
        raise OrgError(f"{source}: [{where}] must be a table")
    extra = set(table) - _TEAM_KEYS
    if extra:
        raise OrgError(f"{source}: [{where}] has unknown key(s) {sorted(extra)}; expected {sorted(_TEAM_KEYS)}")

    def strings(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and _NAME.match(v) for v in value):
            raise OrgError(f"{source}: [{where}] {key} must be a list of 1-256 character strings")
        return tuple(value)

    cost_center = table.get("cost_center")
    if cost_center is not None and not (isinstance(cost_center, str) and _NAME.match(cost_center)):
        raise OrgError(f"{source}: [{where}] cost_center must be a 1-256 character string")
    monthly = _usd(source, where, table["monthly_usd"], "monthly_usd") if "monthly_usd" in table else None
    return Team(strings("repos"), strings("members"), cost_center, monthly)


def _usd(source: str, where: str, value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OrgError(f"{source}: [{where}] {key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise OrgError(f"{source}: [{where}] {key} must be finite and >= 0, got {value!r}")
    return float(value)
