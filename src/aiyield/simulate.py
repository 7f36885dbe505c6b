"""A synthetic organisation for `aiyield up --simulate` and `aiyield simulate`.

Teams use different tools and models; AI tasks write commits that are pushed, deployed head-only to staging and
production, sometimes rolled back; some task reports arrive after their deployment; and one team ("growth-lab")
burns tokens and never ships: its tasks are abandoned, or claim commits another team already owns (contested
claims), so every metric and the waste signals move. A team that games crediting ("ops-farm") ships real work but
cuts every change into one task per commit with the lines split between them, and adds trailer-style claims
without lines on the same commits: under contract v3 it earns what one task per change would (one deployment is
worth at most 1 to a team), and its extra claims show as contested. Pure and seeded: the caller supplies the clock.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

TEAMS = {
    # team: (tool, models, repo, ships)
    "payments": ("claude-code", ["claude-sonnet-4-5-20250929", "claude-haiku-4-5"], "acme/payments", True),
    "search": ("cursor", ["gpt-5", "claude-sonnet-4-5"], "acme/search", True),
    "platform": ("copilot", ["gpt-4.1", "gemini-2.5-pro"], "acme/platform", True),
    "data": ("kiro", ["amazon.nova-pro-v1:0", "claude-sonnet-4"], "acme/pipelines", True),
    "growth-lab": ("codex", ["gpt-5-codex", "o3"], "acme/growth-experiments", False),
    "ops-farm": ("aider", ["gpt-5-mini", "claude-haiku-4-5"], "acme/ops-tools", True),
}
FARM = "ops-farm"


@dataclass
class _Repo:
    name: str
    pending: list[str] = field(default_factory=list)  # pushed, not yet deployed
    deploys: int = 0
    last_prod: str | None = None
    recent: list[str] = field(default_factory=list)  # the last commits pushed, for claims by another team


class Organisation:
    def __init__(self, seed: int = 7, developers_per_team: int = 6) -> None:
        self.rng = random.Random(seed)
        # The farming team draws from its own generator, so the other teams' story is the same with or without it.
        self.farm_rng = random.Random(seed + 1)
        self.developers = {t: [f"{t}-dev-{i}@acme.example" for i in range(developers_per_team)] for t in TEAMS}
        self.repos = {t: _Repo(spec[2]) for t, spec in TEAMS.items()}
        self.seq = 0
        self.late: list[tuple[float, dict]] = []  # task reports held back until after their deployment

    def _id(self, kind: str) -> str:
        self.seq += 1
        return f"sim-{kind}-{self.seq}-{self.rng.getrandbits(32):08x}"

    def _sha(self) -> str:
        return hashlib.sha1(self._id("sha").encode()).hexdigest()

    def tick(self, now: float, events: int) -> list[dict]:
        """About `events` events with timestamps in (now - 1, now]."""
        out: list[dict] = []
        teams = [t for t in TEAMS if t != FARM]
        while len(out) < events:
            out.extend(self._event(self.rng.choice(teams), now))
        main_rng, self.rng = self.rng, self.farm_rng
        try:
            farm: list[dict] = []
            while len(farm) < events // len(TEAMS):
                farm.extend(self._event(FARM, now))
        finally:
            self.rng = main_rng
        out += farm
        due = [e for t, e in self.late if t <= now]
        self.late = [(t, e) for t, e in self.late if t > now]
        return out + due

    def _event(self, team: str, now: float) -> list[dict]:
        ts = now - self.rng.random()
        roll = self.rng.random()
        if roll < 0.965 or team == "growth-lab" and roll < 0.985:
            return [self._token(team, ts)]
        if roll < 0.995:
            return self._task(team, ts)
        return self._deploy(team, ts)

    def _token(self, team: str, ts: float) -> dict:
        tool, models, _repo, _ships = TEAMS[team]
        scale = 6 if team == "growth-lab" else 1  # the team that burns tokens
        return {
            "type": "token",
            "id": self._id("tok"),
            "ts": ts,
            "team": team,
            "tool": tool,
            "model": self.rng.choice(models),
            "developer": self.rng.choice(self.developers[team]),
            "input_tokens": self.rng.randint(500, 8000) * scale,
            "output_tokens": self.rng.randint(100, 2000) * scale,
            "cache_read_tokens": self.rng.randint(0, 20000),
            "cache_write_tokens": self.rng.randint(0, 2000),
        }

    def _task(self, team: str, ts: float) -> list[dict]:
        tool, _models, repo_name, ships = TEAMS[team]
        developer = self.rng.choice(self.developers[team])
        task_id = self._id("task")
        base = {"type": "task", "task_id": task_id, "team": team, "tool": tool, "developer": developer}
        started = {**base, "id": self._id("evt"), "ts": ts - 60, "status": "started"}
        victim = self.repos["payments"]
        if not ships and victim.recent and self.rng.random() < 0.2:
            # Gaming: claim commits another team's tasks wrote (and own, having claimed them first).
            claimed = self.rng.sample(victim.recent, min(2, len(victim.recent)))
            return [started, {**base, "id": self._id("evt"), "ts": ts, "status": "completed", "repo": victim.name,
                              "commits": claimed}]
        if not ships or self.rng.random() < 0.15:
            return [started, {**base, "id": self._id("evt"), "ts": ts, "status": "abandoned"}]
        commits = [self._sha() for _ in range(self.rng.randint(1, 3))]
        if team == FARM:
            return [started, *self._farm(base, ts, commits)]
        repo = self.repos[team]
        repo.pending.extend(commits)
        repo.recent = (repo.recent + commits)[-50:]
        push = {"type": "push", "id": self._id("push"), "ts": ts, "repo": repo_name, "branch": "main", "commits": commits}
        done = {
            **base,
            "id": self._id("evt"),
            "ts": ts,
            "status": "completed",
            "repo": repo_name,
            "commits": commits,
            "ai_lines": self.rng.choice([None, 4, 12, 40, 120]),
        }
        if done["ai_lines"] is None:
            del done["ai_lines"]
        if self.rng.random() < 0.2:
            self.late.append((ts + self.rng.uniform(5, 30), done))  # reported after the deployment shipped it
            return [started, push]
        return [started, push, done]

    def _farm(self, base: dict, ts: float, commits: list[str]) -> list[dict]:
        """One change reported as many: a task per commit sharing its lines, and a line-less claim on each commit."""
        repo_name = TEAMS[FARM][2]
        repo = self.repos[FARM]
        repo.pending.extend(commits)
        push = {"type": "push", "id": self._id("push"), "ts": ts, "repo": repo_name, "branch": "main", "commits": commits}
        lines = self.rng.choice([12, 30, 60])
        out = [push]
        for i, sha in enumerate(commits):
            for kind, extra in (("piece", {"ai_lines": lines // len(commits)}), ("trailer", {})):
                out.append({**base, "task_id": f"{base['task_id']}-{kind}-{i}", "id": self._id("evt"),
                            "ts": ts + (1 if kind == "trailer" else 0), "status": "completed", "repo": repo_name,
                            "commits": [sha], **extra})
        return out

    def _deploy(self, team: str, ts: float) -> list[dict]:
        _tool, _models, repo_name, ships = TEAMS[team]
        repo = self.repos[team]
        if not ships or not repo.pending:
            return []
        head = repo.pending[-1]
        repo.pending.clear()
        out = []
        for env in ("staging", "production"):
            repo.deploys += 1
            deploy_id = f"{repo_name}#{repo.deploys}"
            out.append(
                {"type": "deployment", "id": self._id("dep"), "ts": ts, "deploy_id": deploy_id, "repo": repo_name,
                 "environment": env, "status": "succeeded", "head": head, "team": team}
            )
        if self.rng.random() < 0.1:  # a bad release, rolled back within the survival window
            out.append(
                {"type": "deployment", "id": self._id("dep"), "ts": ts + 1, "deploy_id": deploy_id, "repo": repo_name,
                 "environment": "production", "status": "rolled_back", "team": team}
            )
        return out
