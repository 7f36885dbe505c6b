"""`aiyield provenance` on a real git repository with Git AI notes (refs/notes/ai) and an AI trailer commit,
through a running gateway and worker: normalized deployments reflect the AI lines, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .test_gateway import INGEST_TOKEN, gateway  # noqa: F401 - the gateway fixture

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True, text=True,
                          check=True, env={"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@acme.example",
                                           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@acme.example",
                                           "PATH": "/usr/bin:/bin"}).stdout.strip()


def commit(repo: Path, path: str, lines: int, message: str) -> str:
    (repo / path).write_text("".join(f"line {i}\n" for i in range(lines)))
    git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def authorship_note(files: dict[str, str], tool: str, base: str) -> str:
    attest = "".join(f"{path}\n  {'ab' * 8} {ranges}\n" for path, ranges in files.items())
    metadata = {"schema_version": "authorship/3.0.0", "git_ai_version": "1.0.23", "base_commit_sha": base,
                "prompts": {"ab" * 8: {"agent_id": {"tool": tool, "id": "s-1", "model": "claude-sonnet-4-5"},
                                      "messages": [{"type": "user", "text": "SECRET"}], "total_additions": 9,
                                      "total_deletions": 0, "accepted_lines": 9, "overriden_lines": 0}}}
    return attest + "---\n" + json.dumps(metadata, indent=2)


def test_notes_then_trailers_give_ai_lines_marked_with_their_source(pipeline, gateway, tmp_path):  # noqa: F811
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "git@github.com:acme/shop.git")
    base = commit(repo, "README", 1, "initial")
    noted = commit(repo, "billing.py", 40, "billing: retries")  # 40 lines, of which the note says 2 + 2 are AI's
    git(repo, "notes", "--ref=ai", "add", "-m", authorship_note({"billing.py": "3-4,10-11"}, "claude", base), noted)
    trailer = commit(repo, "api.py", 25, "api: pagination\n\nCo-authored-by: Claude <noreply@anthropic.com>")
    commit(repo, "docs.md", 5, "docs by hand")

    env = {"AIYIELD_INGEST_TOKEN": INGEST_TOKEN, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    dry = subprocess.run([sys.executable, "-m", "aiyield", "provenance", f"{base}..HEAD", "--team", "payments",
                          "--dry-run"], cwd=repo, capture_output=True, text=True, env=env, check=True)
    events = [json.loads(line) for line in dry.stdout.splitlines()]
    assert [(e["commits"], e["ai_lines"], e["ai_lines_source"], e["tool"]) for e in events] == [
        ([noted], 4, "notes", "claude-code"), ([trailer], 25, "trailer", "claude-code")]
    assert all(e["repo"] == "acme/shop" for e in events) and "SECRET" not in dry.stdout

    sent = subprocess.run([sys.executable, "-m", "aiyield", "provenance", f"{base}..HEAD", "--team", "payments",
                           "--gateway", gateway], cwd=repo, capture_output=True, text=True, env=env)
    assert sent.returncode == 0, sent.stderr
    assert "2 of 2 task(s) sent (1 from notes, 1 from trailers)" in sent.stderr
    pipeline.wait_value("aiyield_tasks", 2, team="payments", tool="claude-code", status="completed", window="1h")

    head = git(repo, "rev-parse", "HEAD")
    now = time.time()
    pipeline.send([
        {"type": "push", "id": "p-1", "ts": now - 5, "repo": "acme/shop", "branch": "main",
         "commits": [noted, trailer, head]},
        {"type": "deployment", "id": "d-0", "ts": now - 3, "deploy_id": "d-0", "repo": "acme/shop",
         "environment": "production", "status": "succeeded", "commits": [noted]},
        {"type": "deployment", "id": "d-1", "ts": now - 1, "deploy_id": "d-1", "repo": "acme/shop",
         "environment": "production", "status": "succeeded", "head": head},
    ])
    # d-0 ships the noted commit: min(1, 4/10); d-1 the rest, the trailer commit: min(1, 25/10). (Contract v3: one
    # deployment is worth at most 1 to a team, so the two are shipped by two deployments to tell their lines apart.)
    pipeline.wait_value("aiyield_normalized_deployments", 1.4, team="payments", window="1h")
