"""Reference plugins that close the gap AI tools leave: their telemetry carries no repo or commit.

Two hooks turn "an AI tool wrote this commit" into a `task` event (docs/INTERFACE.md §1) that the worker can join to
pushes and deployments:

- a git `post-commit` hook: every commit whose message carries an AI `Co-authored-by:` trailer is one completed task;
- a Claude Code hook: a session is one task, `started` at SessionStart and `completed` (with the AI commits made in
  its working tree since it started) at Stop / SessionEnd.

Both run inside somebody else's workflow, so neither may ever get in the way: they always exit 0, print nothing on
stdout (Claude Code feeds a SessionStart hook's stdout to the model), report problems in one line on stderr, and
give the gateway at most SEND_TIMEOUT seconds. The developer's e-mail is sent for the gateway to pseudonymise and is
never printed.

They read only the environment they need (`AIYIELD_AI_TRAILERS`, `AIYIELD_TEAM`, `AIYIELD_GATEWAY`,
`AIYIELD_INGEST_TOKEN`, the state directory), never the whole settings object: a mistake in an unrelated variable
must not silence them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from aiyield.core.events import MAX_TASK_COMMITS
from aiyield.core.provenance import ai_tool, commit_task_id
from aiyield.local import state_dir
from aiyield.plugins.emit import Emitter
from aiyield.settings import ai_trailers_from_env

#: A git hook must not hold a commit up for long, whatever state the gateway is in.
SEND_TIMEOUT = 2.0
GIT_TIMEOUT = 10.0
CLAUDE_TOOL = "claude-code"
HOOK_MARKER = "# aiyield post-commit hook"
#: Where `install` moves a post-commit hook it finds, so the aiyield hook can run it first instead of clobbering it.
CHAINED_HOOK = "post-commit.pre-aiyield"
#: Session state older than this belongs to sessions that never sent SessionEnd (killed terminals).
STALE_SESSION_SECONDS = 30 * 86400

hook_app = typer.Typer(
    help="Git and Claude Code hooks that report AI-written commits to the aiyield gateway as task events.",
    no_args_is_help=True,
)

TeamOption = Annotated[
    Optional[str],
    typer.Option(
        "--team", help="Team to credit (default: git config aiyield.team, then AIYIELD_TEAM, then 'unassigned')."
    ),
]
GatewayOption = Annotated[str, typer.Option("--gateway", envvar="AIYIELD_GATEWAY", help="aiyield gateway base URL.")]
DEFAULT_GATEWAY = "http://localhost:8787"


class GitError(RuntimeError):
    pass


@dataclass(frozen=True)
class Commit:
    sha: str
    committed_at: int
    message: str


@dataclass(frozen=True)
class Context:
    """What a task event says about where the work happened and who gets the credit."""

    repo: str | None
    team: str
    developer: str | None


# -- git ---------------------------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        encoding="utf-8",
        errors="replace",  # commit messages are bytes; a stray Latin-1 byte must not lose the event
        timeout=GIT_TIMEOUT,
    )
    if proc.returncode:
        raise GitError(f"git {args[0]}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return proc.stdout


def _git_value(cwd: Path, *args: str) -> str | None:
    """One line of git output, or None when git has no answer (unset config key, no remote, no commits yet)."""
    try:
        return _git(cwd, *args).strip() or None
    except GitError:
        return None


def _commits(cwd: Path, *revs: str) -> list[Commit]:
    # -z separates commits with NUL, so any message body (blank lines, trailers) survives the split.
    out = _git(cwd, "log", "-z", "--format=%H%n%ct%n%B", *revs, "--")
    commits = []
    for record in out.split("\0"):
        if record.strip():
            sha, committed_at, message = (record.lstrip("\n").split("\n", 2) + [""])[:3]
            commits.append(Commit(sha, int(committed_at), message))
    return commits


def _added_lines(cwd: Path, sha: str) -> int:
    total = 0
    for line in _git(cwd, "show", "--numstat", "--format=", sha, "--").splitlines():
        added = line.split("\t", 1)[0]
        if added.isdigit():  # binary files show "-"
            total += int(added)
    return total


def _head(cwd: Path) -> str | None:
    return _git_value(cwd, "rev-parse", "--verify", "--quiet", "HEAD")


def normalise_remote(url: str) -> str | None:
    """`owner/name` from a git remote URL (scp-like `git@host:owner/name.git` or `scheme://host/owner/name(.git)`).

    Everything after the host is kept, so GitLab subgroups stay `group/sub/name` like its `path_with_namespace`;
    credentials and ports are dropped. None for local paths: they name no hosted repository that a push or
    deployment event could mention.
    """
    url = url.strip()
    if "://" in url:
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            return None
        path = parts.path
    else:
        scp = re.fullmatch(r"(?:[^@/]+@)?[^:/]+:(?P<path>.+)", url)
        if not scp:
            return None
        path = scp.group("path")
    path = path.strip("/").removesuffix(".git").strip("/")
    return path if "/" in path else None


def _context(cwd: Path, team: str | None) -> Context:
    origin = _git_value(cwd, "remote", "get-url", "origin")
    return Context(
        repo=normalise_remote(origin) if origin else None,
        team=team or _git_value(cwd, "config", "aiyield.team") or os.environ.get("AIYIELD_TEAM") or "unassigned",
        developer=_git_value(cwd, "config", "user.email"),
    )


# -- events ------------------------------------------------------------------------------------------------------


def task_event(
    *,
    event_id: str,
    task_id: str,
    status: str,
    tool: str,
    ctx: Context,
    commits: list[str] | None = None,
    ai_lines: int | None = None,
) -> dict:
    event: dict = {"type": "task", "id": event_id, "task_id": task_id, "team": ctx.team, "tool": tool, "status": status}
    if ctx.repo:
        event["repo"] = ctx.repo
        # The contract requires `repo` beside `commits`: without a hosted origin the commits cannot be joined anyway.
        if commits:
            event["commits"] = commits
    if ctx.developer:
        event["developer"] = ctx.developer
    if ai_lines is not None:
        event["ai_lines"] = ai_lines
    return event


def _send(events: list[dict], gateway: str) -> bool:
    """Deliver within SEND_TIMEOUT; True when the gateway accepted every event."""
    # Few, quick retries: a developer without a running gateway must not pay SEND_TIMEOUT on every commit.
    emitter = Emitter(
        gateway, token=os.environ.get("AIYIELD_INGEST_TOKEN") or None, timeout=SEND_TIMEOUT, max_attempts=3, backoff=0.1
    )
    for event in events:
        emitter.emit(event)
    emitter.close(timeout=SEND_TIMEOUT)
    # Refusals and unreachable gateways are logged by the emitter; running out of time is the one silent case.
    if emitter.dropped:
        print(f"aiyield: event not delivered to {gateway} in {SEND_TIMEOUT:g}s", file=sys.stderr)
    return emitter.sent == len(events)


@contextmanager
def _never_fail(command: str) -> Iterator[None]:
    # The host (git, Claude Code) must carry on whatever happens here; Ctrl-C still propagates.
    try:
        yield
    except Exception as exc:
        print(f"aiyield hook {command}: {exc}", file=sys.stderr)


def _trailers() -> dict[str, str]:
    return ai_trailers_from_env()


# -- git post-commit ---------------------------------------------------------------------------------------------


def _hook_script(team: str | None, gateway: str | None) -> str:
    options = ""
    if team:
        options += f" --team {shlex.quote(team)}"
    if gateway:
        options += f" --gateway {shlex.quote(gateway)}"
    python = shlex.quote(sys.executable)
    # The interpreter that ran `install` is pinned because git hooks run with whatever PATH the committing program
    # has (IDEs and GUI clients rarely see an activated virtualenv); `aiyield` on PATH is the fallback.
    return f"""#!/bin/sh
{HOOK_MARKER}: reports commits with an AI Co-authored-by trailer as task events.
# Written by `aiyield hook install` (re-run it to change options). A hook that was here before is kept as
# {CHAINED_HOOK} and still runs first. This hook never fails the commit.
hooks=$(dirname "$0")
if [ -x "$hooks/{CHAINED_HOOK}" ]; then
    "$hooks/{CHAINED_HOOK}" "$@"
fi
if [ -x {python} ]; then
    {python} -m aiyield.plugins.hooks post-commit{options}
elif command -v aiyield >/dev/null 2>&1; then
    aiyield hook post-commit{options}
fi
exit 0
"""


@hook_app.command()
def install(
    repo: Annotated[Path, typer.Option("--repo", help="Repository to install into.")] = Path("."),
    team: TeamOption = None,
    gateway: Annotated[
        Optional[str],
        typer.Option("--gateway", help="Gateway URL to pin in the hook (default: AIYIELD_GATEWAY at commit time)."),
    ] = None,
) -> None:
    """Install the post-commit hook; an existing hook is kept and chained. Safe to run again."""
    try:
        # --git-path honours core.hooksPath and linked worktrees.
        hooks_dir = repo / _git(repo, "rev-parse", "--git-path", "hooks").strip()
    except (GitError, OSError) as exc:
        typer.echo(f"aiyield hook install: {repo} is not a git repository ({exc})", err=True)
        raise typer.Exit(1)
    hooks_dir.mkdir(parents=True, exist_ok=True)
    hook, chained = hooks_dir / "post-commit", hooks_dir / CHAINED_HOOK
    if hook.exists() and HOOK_MARKER not in hook.read_text(errors="replace"):
        if chained.exists():
            typer.echo(f"aiyield hook install: both {hook} and {chained} exist; merge them by hand first", err=True)
            raise typer.Exit(1)
        hook.rename(chained)
        typer.echo(f"kept the existing hook as {chained}; it still runs first")
    hook.write_text(_hook_script(team, gateway))
    hook.chmod(0o755)
    typer.echo(f"installed {hook}")


@hook_app.command("post-commit")
def post_commit(team: TeamOption = None, gateway: GatewayOption = DEFAULT_GATEWAY) -> None:
    """Report HEAD as a completed task when its message has an AI co-author trailer (run by the git hook)."""
    with _never_fail("post-commit"):
        cwd = Path.cwd()
        (commit,) = _commits(cwd, "-1", "HEAD")
        tool = ai_tool(commit.message, _trailers())
        if tool is None:
            return
        ctx = _context(cwd, team)
        task_id = commit_task_id(ctx.repo, commit.sha)
        event = task_event(
            event_id=f"{task_id}:completed",
            task_id=task_id,
            status="completed",
            tool=tool,
            ctx=ctx,
            commits=[commit.sha],
            ai_lines=_added_lines(cwd, commit.sha),
        )
        _send([event], gateway)


# -- Claude Code -------------------------------------------------------------------------------------------------


def _session_file(session: str) -> Path:
    # Beside `aiyield up`'s state file; session ids are UUIDs, anything else is hashed so it cannot escape the dir.
    name = session if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", session) else hashlib.sha256(session.encode()).hexdigest()
    return state_dir() / "claude-code" / f"{name}.json"


def _load_session(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save_session(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)  # atomic: a concurrent hook never reads half a file


def _prune_sessions(directory: Path, now: float) -> None:
    for old in directory.glob("*.json"):
        try:
            if old.stat().st_mtime < now - STALE_SESSION_SECONDS:
                old.unlink()
        except OSError:
            pass  # another hook pruned it first


def _session_commits(cwd: Path, state: dict, trailers: dict[str, str]) -> list[Commit]:
    """The AI commits the session made: reachable now, not at start, and committed after the session started.

    The time bound keeps out commits a `git pull` brought in mid-session (they keep their original committer date).
    """
    if _head(cwd) is None:
        return []
    start = state.get("start_head")
    commits = _commits(cwd, "--reverse", f"{start}..HEAD" if start else "HEAD")
    since = int(state["started_at"])
    return [c for c in commits if c.committed_at >= since and ai_tool(c.message, trailers)]


@hook_app.command("claude-code")
def claude_code(team: TeamOption = None, gateway: GatewayOption = DEFAULT_GATEWAY) -> None:
    """Claude Code hook (SessionStart, Stop, SessionEnd): reads the hook JSON on stdin."""
    with _never_fail("claude-code"):
        payload = json.loads(sys.stdin.read() or "{}")
        session, hook_event = payload.get("session_id"), payload.get("hook_event_name")
        if not session or hook_event not in ("SessionStart", "Stop", "SessionEnd"):
            return  # wired to another hook event: nothing to report
        cwd = Path(payload.get("cwd") or os.getcwd())
        path, now = _session_file(session), time.time()
        # SessionStart also fires on resume, /clear and compaction: the first one defines the session's start.
        # A missing file on Stop means the hook was wired mid-session: only later commits can be attributed.
        state = _load_session(path) or {"start_head": _head(cwd), "started_at": now}
        ctx = _context(cwd, team)

        if hook_event == "SessionStart":
            _prune_sessions(path.parent, now)
            _save_session(path, state)
            _send([task_event(event_id=f"{session}:started", task_id=session, status="started",
                              tool=CLAUDE_TOOL, ctx=ctx)], gateway)
            return

        commits = _session_commits(cwd, state, _trailers())
        shas = [c.sha for c in commits]
        # Stop fires after every turn: report only when the session's commit set changed since the last report.
        # The event id follows the commit set, so the gateway's dedup absorbs any repeat.
        signature = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:16]
        if state.get("reported") != signature:
            # A task event lists at most MAX_TASK_COMMITS commits (contract v3 §1): a longer session is reported in
            # parts, one task whose commits are their union; each part carries the session's whole `ai_lines` (the
            # largest report counts). The first part keeps the id a one-part report has always had.
            ai_lines = sum(_added_lines(cwd, sha) for sha in shas)
            parts = [shas[i : i + MAX_TASK_COMMITS] for i in range(0, len(shas), MAX_TASK_COMMITS)] or [[]]
            events = [
                task_event(
                    event_id=f"{session}:completed:{signature}" + (f":{n}" if n else ""),
                    task_id=session,
                    status="completed",
                    tool=CLAUDE_TOOL,
                    ctx=ctx,
                    commits=part,
                    ai_lines=ai_lines,
                )
                for n, part in enumerate(parts)
            ]
            if _send(events, gateway):
                state["reported"] = signature
        if hook_event == "SessionEnd":
            path.unlink(missing_ok=True)
        else:
            _save_session(path, state)


if __name__ == "__main__":  # the installed git hook runs `python -m aiyield.plugins.hooks post-commit`
    hook_app(prog_name="aiyield hook")
