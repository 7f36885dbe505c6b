"""`aiyield provenance`: AI-authored lines of the commits of a push, as task events marked with their source.

Run as a CI step on push (`aiyield provenance "$BEFORE..$AFTER"`) or from a `pre-push` hook. For each commit of
the range (oldest first):

1. a Git AI authorship log under `refs/notes/ai` (`core.authorship`): `ai_lines` = the AI-written lines it attests,
   `ai_lines_source = "notes"` (line level: high confidence), tool = the agent with most lines;
2. else an AI `Co-authored-by:` trailer (`core.provenance`): `ai_lines` = every line the commit adds,
   `ai_lines_source = "trailer"` (commit level: the whole commit is taken as AI-written);
3. else nothing: a human commit.

The task is the commit's task (`commit_task_id`), the same one the post-commit hook and the push webhooks report, so
every reporter names one task (docs/INTERFACE.md §2: its `ai_lines` is the largest reported). The event id is the
task's plus `:provenance`, so this report is not dropped as a duplicate of the hook's. Notes arrive with a fetch
of `refs/notes/ai` (`git fetch origin refs/notes/ai:refs/notes/ai`); CI checkouts need it explicitly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from aiyield.core.authorship import NoteError, parse_note
from aiyield.core.provenance import DEFAULT_AI_TRAILERS, ai_tool, commit_task_id
from aiyield.plugins.emit import Emitter
from aiyield.plugins.hooks import DEFAULT_GATEWAY, Context, GitError, _added_lines, _commits, _context, _git, task_event
from aiyield.settings import ai_trailers_from_env

NOTES_REF = "refs/notes/ai"
SEND_TIMEOUT = 30.0


def note_of(cwd: Path, sha: str) -> str | None:
    try:
        return _git(cwd, "notes", f"--ref={NOTES_REF}", "show", sha)
    except GitError:
        return None


def tool_name(agent_tool: str, trailers: dict[str, str]) -> str:
    """The aiyield tool for a Git AI agent tool (`claude` -> `claude-code`, as its co-author trailer would be)."""
    lowered = agent_tool.lower()
    for needle, tool in trailers.items():
        if needle in lowered:
            return tool
    return agent_tool


def events_for(cwd: Path, revisions: list[str], ctx: Context, trailers: dict[str, str] = DEFAULT_AI_TRAILERS) -> list[dict]:
    events = []
    for commit in reversed(_commits(cwd, *revisions)):
        note = note_of(cwd, commit.sha)
        authorship = None
        if note is not None:
            try:
                authorship = parse_note(note)
            except NoteError as exc:
                print(f"aiyield provenance: {commit.sha[:12]}: note ignored ({exc})", file=sys.stderr)
        if authorship is not None and authorship.ai_lines > 0:
            tool = tool_name(authorship.lines_by_tool().most_common(1)[0][0], trailers)
            lines, source = authorship.ai_lines, "notes"
        elif (tool := ai_tool(commit.message, trailers)) is not None:
            lines, source = _added_lines(cwd, commit.sha), "trailer"
        else:
            continue
        task_id = commit_task_id(ctx.repo, commit.sha)
        event = task_event(event_id=f"{task_id}:provenance", task_id=task_id, status="completed", tool=tool, ctx=ctx,
                           commits=[commit.sha], ai_lines=lines)
        event["ai_lines_source"] = source
        event["ts"] = commit.committed_at
        events.append(event)
    return events


def provenance(
    revisions: Annotated[list[str], typer.Argument(help="Commits to read, as git log takes them: `BEFORE..AFTER`.")],
    team: Annotated[Optional[str], typer.Option("--team", help="Team to credit (default: git config aiyield.team, AIYIELD_TEAM, 'unassigned').")] = None,
    gateway: Annotated[str, typer.Option("--gateway", envvar="AIYIELD_GATEWAY", help="aiyield gateway base URL.")] = DEFAULT_GATEWAY,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the events as NDJSON instead of sending them.")] = False,
    repo: Annotated[Optional[str], typer.Option("--repo", help="owner/name (default: from the origin remote).")] = None,
) -> None:
    """Report the AI-authored lines of a push (git-ai notes, else AI co-author trailers) as task events."""
    cwd = Path.cwd()
    try:
        ctx = _context(cwd, team)
        if repo:
            ctx = Context(repo=repo, team=ctx.team, developer=ctx.developer)
        events = events_for(cwd, revisions, ctx, ai_trailers_from_env())
    except GitError as exc:
        print(f"aiyield provenance: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if dry_run:
        for event in events:
            print(json.dumps({k: v for k, v in event.items() if k != "developer"}))
        return
    emitter = Emitter(gateway, token=os.environ.get("AIYIELD_INGEST_TOKEN") or None, timeout=SEND_TIMEOUT)
    for event in events:
        emitter.emit(event)
    emitter.close(timeout=SEND_TIMEOUT)
    by_source = {s: sum(1 for e in events if e["ai_lines_source"] == s) for s in ("notes", "trailer")}
    print(f"aiyield provenance: {emitter.sent} of {len(events)} task(s) sent "
          f"({by_source['notes']} from notes, {by_source['trailer']} from trailers)", file=sys.stderr)
    if emitter.sent != len(events):
        raise typer.Exit(1)
