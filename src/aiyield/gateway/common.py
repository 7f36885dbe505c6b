"""What the source adapters share: their two errors, field access, timestamps, ids, pushes with AI commits as tasks.

Pure: no I/O. The adapters return plain event dicts (docs/INTERFACE.md §1); the caller validates them with
`aiyield.core.events.validate`, so "valid" is defined in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from typing import Any, Mapping

from aiyield.core.org import Org
from aiyield.core.provenance import ai_tool
from aiyield.core.provenance import commit_task_id

#: Team of events whose source names none (docs/INTERFACE.md §4).
UNASSIGNED = "unassigned"
_BRANCH_PREFIX = "refs/heads/"


class BadPayload(ValueError):
    """A body the adapter cannot turn into events: undecodable, or missing a field it needs. Answer 400."""


class UnsupportedEvent(ValueError):
    """A well-formed delivery of an event kind the adapter does not handle (e.g. a GitHub `issues` hook).

    Distinct from `BadPayload` so the server can answer it without alarming anyone: the sender did nothing wrong,
    it was merely subscribed to more than aiyield reads.
    """

    def __init__(self, source: str, kind: str) -> None:
        super().__init__(f"{source} event {kind!r} is not supported")
        self.source = source
        self.kind = kind


def need(payload: Mapping[str, Any], path: str, source: str, kind: type = object) -> Any:
    """The value at dotted `path`, or `BadPayload` naming the path when it is absent, null, empty or not a `kind`.

    Fields only passed through are left for the event validator to type-check; `kind` guards the ones the
    adapters compute with, so a malformed delivery is a 400 and never an exception from deep inside.
    """
    value: Any = payload
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
        if value is None or value == "":
            raise BadPayload(f"{source} payload has no `{path}`")
    if not isinstance(value, kind):
        raise BadPayload(f"{source} payload: `{path}` must be a {kind.__name__}, got {type(value).__name__}")
    return value


def parse_time(value: Any, what: str) -> float:
    """Epoch seconds from the timestamp shapes the sources use.

    Epoch numbers (GitHub's `repository.pushed_at` in push hooks), RFC 3339 (`2019-05-15T15:20:55Z`), and GitLab's
    own `2021-04-28 21:50:00 +0200` and `2016-08-12 15:23:28 UTC`. A time without an offset is rejected rather than
    guessed, because a wrong zone shifts events across window boundaries silently. Times before 1970 (negative
    epoch seconds) and non-finite numbers are rejected, as the validator rejects them.
    """
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(" UTC"):
            text = text[:-4] + "+00:00"
        try:
            # Python 3.11 also reads GitLab's space-separated `... +0200`.
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            try:
                seconds = parsed.timestamp()
            except (OverflowError, ValueError):  # year 1 with a positive offset falls off the calendar
                seconds = None
        if seconds is None:
            raise BadPayload(f"{what} {value!r} is not a timestamp with a UTC offset")
    if seconds is None:
        raise BadPayload(f"{what} {value!r} is not a timestamp")
    # The same rule as the validator's for `ts` (epoch seconds >= 0), so no source can slip a pre-1970 time past
    # the gateway that the worker would then refuse.
    if not math.isfinite(seconds) or seconds < 0:
        raise BadPayload(f"{what} {value!r} is before 1970-01-01T00:00:00Z or not finite")
    return seconds


def stable_id(prefix: str, *parts: object) -> str:
    """A deterministic event id of bounded length (the contract allows 128 characters).

    Built from the source's own identifiers, so a redelivered webhook or a retried export yields the same id and
    is deduplicated downstream instead of counted twice.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"{prefix}-{digest}"


def branch_of(ref: str) -> str | None:
    """`main` for `refs/heads/main`; None for tags and other refs, which carry no commits to ship."""
    return ref[len(_BRANCH_PREFIX) :] if ref.startswith(_BRANCH_PREFIX) else None


def branch_push(
    *,
    event_id: str,
    ts: float,
    repo: str,
    branch: str,
    head: str,
    commits: list[tuple[str, str]],
    trailers: Mapping[str, str],
    org: Org,
    forced: bool = False,
) -> list[dict[str, Any]]:
    """Commits (sha, message), in push order, landed on a branch: the `push` event, then one completed `task` per
    commit whose message names an AI co-author.

    The tasks are how teams without IDE plugins still earn normalized deployments. No `ai_lines`: push payloads
    carry no line counts, so each such task earns full credit (docs/INTERFACE.md §2). Git hosts list commits by
    their full ids, so the tasks claim full SHAs as contract v3 §1 requires. `forced`: the push rewrote the branch.

    A task's id and event id are the git `post-commit` hook's (`aiyield.hooks`): a commit reported by the hook and
    by a push webhook is one task, and whichever event arrives second is a duplicate. The hook usually fires first,
    at commit time, so its `ai_lines` are kept; the webhook covers clones without the hook. The same commit pushed
    again (another branch, a merge) is the same task too.
    """
    push = {
        "type": "push",
        "id": event_id,
        "ts": ts,
        "repo": repo,
        "branch": branch,
        "commits": [sha for sha, _ in commits],
        "head": head,
    }
    if forced:
        push["forced"] = True
    team = org.team_of_repo(repo) or UNASSIGNED
    tasks = []
    for sha, message in commits:
        tool = ai_tool(message, trailers)
        if tool is None:
            continue
        sha = sha.lower()
        task_id = commit_task_id(repo, sha)
        tasks.append(
            {
                "type": "task",
                "id": f"{task_id}:completed",
                "ts": ts,
                "task_id": task_id,
                "team": team,
                "tool": tool,
                "status": "completed",
                "repo": repo,
                "commits": [sha],
            }
        )
    return [push, *tasks]
