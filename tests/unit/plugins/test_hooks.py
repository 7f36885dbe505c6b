"""The git post-commit and Claude Code hooks, on real throwaway repositories, reporting to a real HTTP server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_double import GatewayDouble, closed_port_url
from typer.testing import CliRunner

from aiyield.core.events import validate
from aiyield.core.provenance import commit_task_id
from aiyield.plugins.hooks import hook_app, normalise_remote

CLAUDE_TRAILER = "Co-authored-by: Claude <noreply@anthropic.com>"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config (signing, templates, hooksPath) and no aiyield settings leak in."""
    global_config = tmp_path / "gitconfig"
    global_config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in list(os.environ):
        if name.startswith("AIYIELD_") or name.startswith("GIT_AUTHOR") or name.startswith("GIT_COMMITTER"):
            monkeypatch.delenv(name)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "shop"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    git(path, "remote", "add", "origin", "git@github.com:acme/shop.git")
    return path


def commit(repo: Path, message: str, lines: int = 3, name: str = "app.py") -> str:
    with open(repo / name, "a") as f:
        f.writelines(f"line {i}\n" for i in range(lines))
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def install(repo: Path, *options: str) -> None:
    result = CliRunner().invoke(hook_app, ["install", "--repo", str(repo), *options])
    assert result.exit_code == 0, result.output


def assert_valid(event: dict) -> None:
    """Whatever a hook sends must pass the contract's validation as the gateway applies it."""
    validate(event, now=9e9)


# -- remote URLs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("git@github.com:acme/shop.git", "acme/shop"),
        ("git@github.com:acme/shop", "acme/shop"),
        ("github.com:acme/shop.git", "acme/shop"),
        ("https://github.com/acme/shop.git", "acme/shop"),
        ("https://github.com/acme/shop", "acme/shop"),
        ("https://github.com/acme/shop/", "acme/shop"),
        ("https://x-access-token:ghp_secret@github.com/acme/shop.git", "acme/shop"),
        ("ssh://git@github.com/acme/shop.git", "acme/shop"),
        ("ssh://git@gitlab.example.com:2222/acme/shop.git", "acme/shop"),
        ("https://gitlab.com/acme/platform/shop.git", "acme/platform/shop"),
        ("git@gitlab.com:acme/platform/shop.git", "acme/platform/shop"),
        ("  git@github.com:acme/shop.git\n", "acme/shop"),
        ("/srv/git/shop.git", None),
        ("file:///srv/git/acme/shop.git", None),
        ("../shop", None),
        ("https://github.com/shop", None),
    ],
)
def test_normalise_remote(url: str, expected: str | None) -> None:
    assert normalise_remote(url) == expected


# -- git post-commit ---------------------------------------------------------------------------------------------


def test_install_chains_an_existing_hook_and_is_idempotent(repo: Path, gateway: GatewayDouble) -> None:
    hooks = repo / ".git" / "hooks"
    previous = "#!/bin/sh\necho ran >> \"$(git rev-parse --show-toplevel)/../previous-hook.log\"\n"
    (hooks / "post-commit").write_text(previous)
    (hooks / "post-commit").chmod(0o755)

    install(repo, "--gateway", gateway.url)
    first = (hooks / "post-commit").read_text()
    install(repo, "--gateway", gateway.url)

    assert (hooks / "post-commit").read_text() == first
    assert (hooks / "post-commit.pre-aiyield").read_text() == previous
    assert sorted(p.name for p in hooks.iterdir() if not p.name.endswith(".sample")) == [
        "post-commit",
        "post-commit.pre-aiyield",
    ]
    assert (hooks / "post-commit").stat().st_mode & stat.S_IXUSR

    commit(repo, f"Add app\n\n{CLAUDE_TRAILER}")
    assert (repo.parent / "previous-hook.log").read_text() == "ran\n"  # chained exactly once
    assert len(gateway.events) == 1


def test_install_outside_a_repository_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(hook_app, ["install", "--repo", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a git repository" in result.output


def test_an_ai_commit_becomes_exactly_one_completed_task(repo: Path, gateway: GatewayDouble) -> None:
    install(repo, "--team", "payments", "--gateway", gateway.url)

    sha = commit(repo, f"Add checkout\n\nGenerated with Claude Code.\n\n{CLAUDE_TRAILER}\n", lines=12)

    (event,) = gateway.events  # the hook flushes before the commit returns
    task_id = commit_task_id("acme/shop", sha)
    assert {k: v for k, v in event.items() if k != "ts"} == {
        "type": "task",
        "id": f"{task_id}:completed",
        "task_id": task_id,
        "team": "payments",
        "tool": "claude-code",
        "status": "completed",
        "repo": "acme/shop",
        "commits": [sha],
        "ai_lines": 12,
        "developer": "dev@example.com",
    }
    assert len(sha) == 40
    assert_valid(event)


def test_a_remote_spelled_in_capitals_names_the_task_the_host_s_webhook_names(repo: Path, gateway: GatewayDouble) -> None:
    """Repo names are case-insensitive (contract v3 §1): `Acme/Shop` from the remote and GitHub's `acme/shop` are one
    repo, and the commit's task id is the same from the hook and from the push webhook."""
    git(repo, "remote", "set-url", "origin", "https://github.com/Acme/Shop.git")
    install(repo, "--gateway", gateway.url)
    sha = commit(repo, f"Add\n\n{CLAUDE_TRAILER}")
    (event,) = gateway.events
    assert event["task_id"] == commit_task_id("acme/shop", sha) == commit_task_id("Acme/Shop", sha.upper())
    assert validate(event, now=9e9).repo == "acme/shop"


def test_a_commit_without_an_ai_trailer_reports_nothing(repo: Path, gateway: GatewayDouble) -> None:
    install(repo, "--gateway", gateway.url)
    commit(repo, "Plain human commit\n\nCo-authored-by: Alice <alice@example.com>")
    assert gateway.requests == []


@pytest.mark.parametrize(
    ("config_team", "env_team", "expected"),
    [("checkout", "ignored", "checkout"), (None, "search", "search"), (None, None, "unassigned")],
)
def test_team_falls_back_to_git_config_then_environment(
    repo: Path,
    gateway: GatewayDouble,
    monkeypatch: pytest.MonkeyPatch,
    config_team: str | None,
    env_team: str | None,
    expected: str,
) -> None:
    if config_team:
        git(repo, "config", "aiyield.team", config_team)
    if env_team:
        monkeypatch.setenv("AIYIELD_TEAM", env_team)
    sha = commit(repo, "Fix\n\nCo-authored-by: Copilot <copilot@github.com>")
    monkeypatch.chdir(repo)

    result = CliRunner().invoke(hook_app, ["post-commit", "--gateway", gateway.url])

    assert result.exit_code == 0, result.output
    (event,) = gateway.events
    assert (event["team"], event["tool"], event["commits"]) == (expected, "copilot", [sha])


def test_an_unreachable_gateway_never_fails_the_commit(repo: Path) -> None:
    install(repo, "--gateway", closed_port_url())
    (repo / "app.py").write_text("x\n")
    git(repo, "add", "app.py")
    done = subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "-m", f"Add\n\n{CLAUDE_TRAILER}"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "gave up sending 1 event(s)" in done.stderr
    assert "dev@example.com" not in done.stderr + done.stdout


#: Mistakes in variables the hooks do not use; before the hooks read only their own, these silenced them.
UNRELATED_MISTAKES = {"AIYIELD_PARTITIONS": "zero", "AIYIELD_REPO_TEAMS": "no-equals-sign", "AIYIELD_GATEWAY_PORT": "x"}


def test_a_mistake_in_an_unrelated_variable_does_not_silence_the_git_hook(
    repo: Path, gateway: GatewayDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(repo, "--gateway", gateway.url)
    for name, value in UNRELATED_MISTAKES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIYIELD_AI_TRAILERS", "our-bot=internal-agent")

    sha = commit(repo, "Bot change\n\nCo-authored-by: Our-Bot <bot@example.com>")

    (event,) = gateway.events
    assert (event["tool"], event["commits"]) == ("internal-agent", [sha])


def test_a_mistake_in_the_trailer_list_is_reported_and_the_commit_goes_on(repo: Path, gateway: GatewayDouble) -> None:
    install(repo, "--gateway", gateway.url)
    (repo / "app.py").write_text("x\n")
    git(repo, "add", "app.py")
    done = subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "-m", f"Add\n\n{CLAUDE_TRAILER}"],
        capture_output=True, text=True, env={**os.environ, "AIYIELD_AI_TRAILERS": ",,"},
    )
    assert done.returncode == 0
    assert "aiyield hook post-commit: AIYIELD_AI_TRAILERS" in done.stderr
    assert gateway.requests == []


def test_hooks_installed_by_earlier_versions_still_run(repo: Path, gateway: GatewayDouble) -> None:
    """Earlier `install` wrote `python -m aiyield.hooks post-commit` into repositories; that name must keep working."""
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\n{sys.executable} -m aiyield.hooks post-commit --gateway {gateway.url}\nexit 0\n")
    hook.chmod(0o755)

    sha = commit(repo, f"Add\n\n{CLAUDE_TRAILER}")

    (event,) = gateway.events
    assert event["commits"] == [sha]


# -- Claude Code -------------------------------------------------------------------------------------------------


def claude_hook(gateway: GatewayDouble, hook_event: str, cwd: Path, session: str = "5f1c2d3e-aaaa-bbbb") -> str:
    payload = {"session_id": session, "hook_event_name": hook_event, "cwd": str(cwd), "transcript_path": "/dev/null"}
    result = CliRunner().invoke(
        hook_app, ["claude-code", "--team", "payments", "--gateway", gateway.url], input=json.dumps(payload)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # SessionStart stdout would be fed to the model
    return result.stderr


def test_claude_code_session_reports_start_then_its_ai_commits(
    repo: Path, gateway: GatewayDouble, tmp_path: Path
) -> None:
    before = commit(repo, f"Earlier AI work\n\n{CLAUDE_TRAILER}")
    state = tmp_path / "state" / "aiyield" / "claude-code" / "5f1c2d3e-aaaa-bbbb.json"

    claude_hook(gateway, "SessionStart", repo)
    assert json.loads(state.read_text())["start_head"] == before
    ai = commit(repo, f"Add cart\n\n{CLAUDE_TRAILER}", lines=5)
    commit(repo, "Human tweak", lines=2)
    ai_too = commit(repo, f"Add tests\n\n{CLAUDE_TRAILER}", lines=4, name="test_app.py")
    claude_hook(gateway, "Stop", repo)
    claude_hook(gateway, "Stop", repo)  # another turn, no new commits: nothing new to say
    claude_hook(gateway, "SessionEnd", repo)

    started, completed = gateway.events
    assert {k: v for k, v in started.items() if k != "ts"} == {
        "type": "task",
        "id": "5f1c2d3e-aaaa-bbbb:started",
        "task_id": "5f1c2d3e-aaaa-bbbb",
        "team": "payments",
        "tool": "claude-code",
        "status": "started",
        "repo": "acme/shop",
        "developer": "dev@example.com",
    }
    assert completed["task_id"] == "5f1c2d3e-aaaa-bbbb"
    assert (completed["status"], completed["tool"], completed["repo"]) == ("completed", "claude-code", "acme/shop")
    assert completed["commits"] == [ai, ai_too]
    assert completed["ai_lines"] == 9
    for event in (started, completed):
        assert_valid(event)
    assert not state.exists()


def test_claude_code_session_without_commits_completes_empty(repo: Path, gateway: GatewayDouble) -> None:
    commit(repo, "Initial")
    claude_hook(gateway, "SessionStart", repo)
    claude_hook(gateway, "Stop", repo)

    completed = gateway.events[-1]
    assert completed["status"] == "completed"
    assert "commits" not in completed and completed["ai_lines"] == 0
    assert_valid(completed)


def test_claude_code_reports_commits_made_after_a_previous_report(repo: Path, gateway: GatewayDouble) -> None:
    claude_hook(gateway, "SessionStart", repo)  # an empty repository: no HEAD yet
    first = commit(repo, f"One\n\n{CLAUDE_TRAILER}")
    claude_hook(gateway, "Stop", repo)
    second = commit(repo, f"Two\n\n{CLAUDE_TRAILER}")
    claude_hook(gateway, "Stop", repo)

    assert [e.get("commits") for e in gateway.events] == [None, [first], [first, second]]
    assert len({e["id"] for e in gateway.events}) == 3


def test_a_long_session_is_reported_in_parts_of_at_most_the_task_limit(
    repo: Path, gateway: GatewayDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task event lists at most 1,000 commits (contract v3 §1; 2 here): a longer session is one task reported in
    parts, each with full SHAs and the session's whole `ai_lines`."""
    import aiyield.plugins.hooks as hooks

    monkeypatch.setattr(hooks, "MAX_TASK_COMMITS", 2)
    claude_hook(gateway, "SessionStart", repo)
    shas = [commit(repo, f"Step {i}\n\n{CLAUDE_TRAILER}", lines=i + 1) for i in range(5)]
    claude_hook(gateway, "Stop", repo)

    parts = gateway.events[1:]
    assert [p["commits"] for p in parts] == [shas[0:2], shas[2:4], shas[4:]]
    assert {p["task_id"] for p in parts} == {"5f1c2d3e-aaaa-bbbb"} and len({p["id"] for p in parts}) == 3
    assert [p["ai_lines"] for p in parts] == [15, 15, 15]
    for part in parts:
        assert_valid(part)
        assert all(len(sha) == 40 for sha in part["commits"])
    claude_hook(gateway, "Stop", repo)  # reported: nothing more
    assert len(gateway.events) == 4


def test_claude_code_outside_git_and_with_bad_input_never_fails(tmp_path: Path, gateway: GatewayDouble) -> None:
    claude_hook(gateway, "SessionStart", tmp_path)
    claude_hook(gateway, "Stop", tmp_path)
    assert [e["status"] for e in gateway.events] == ["started", "completed"]
    assert all("repo" not in e for e in gateway.events)

    result = CliRunner().invoke(hook_app, ["claude-code", "--gateway", gateway.url], input="not json")
    assert result.exit_code == 0
    assert result.stderr.startswith("aiyield hook claude-code:")


def test_a_mistake_in_an_unrelated_variable_does_not_silence_the_claude_code_hook(
    repo: Path, gateway: GatewayDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in UNRELATED_MISTAKES.items():
        monkeypatch.setenv(name, value)
    commit(repo, "Initial")

    assert claude_hook(gateway, "SessionStart", repo) == ""
    assert (tmp_path / "state" / "aiyield" / "claude-code" / "5f1c2d3e-aaaa-bbbb.json").exists()
    ai = commit(repo, f"Add cart\n\n{CLAUDE_TRAILER}")
    assert claude_hook(gateway, "Stop", repo) == ""

    started, completed = gateway.events
    assert (started["status"], completed["status"], completed["commits"]) == ("started", "completed", [ai])
