"""AI provenance from commit trailers.

Many tools sign the commits they write with a `Co-authored-by:` trailer (Claude Code, Copilot, Cursor, Kiro,
Gemini, ...). A commit carrying one is AI-written code even when the tool emits no task events, which is how teams
without plugins still earn normalized deployments. Pure: used by the webhook adapters and the git hook alike.
"""

from __future__ import annotations

import hashlib
import re

from aiyield.core.events import repo_name

#: Case-insensitive substrings of a co-author's name or e-mail that mark the commit as AI-written, with the tool
#: they name. Configurable (AIYIELD_AI_TRAILERS), because organisations run their own bots and agents.
DEFAULT_AI_TRAILERS: dict[str, str] = {
    "claude": "claude-code",
    "anthropic": "claude-code",
    "copilot": "copilot",
    "cursor": "cursor",
    "kiro": "kiro",
    "gemini": "gemini",
    "codex": "codex",
    "openai": "codex",
    "devin": "devin",
    "aider": "aider",
    "windsurf": "windsurf",
    "amazon q": "amazon-q",
    "jules": "jules",
}

_TRAILER = re.compile(r"^\s*co-authored-by:\s*(?P<who>.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def commit_task_id(repo: str | None, sha: str) -> str:
    """The task of one AI-written commit, named the same by every reporter (the git hook, GitHub and GitLab push
    webhooks), so a commit reported twice is one task and the second report is a duplicate.

    Built from the repo as the validator keys it (`repo_name`, case-insensitive) and the lower-cased SHA: a hook
    that reads `Billing/API` from its remote and GitHub's `billing/api` name one task. A repo name the validator
    would refuse keeps its raw form here; its event is rejected anyway.
    """
    try:
        key = repo_name(repo) if repo else ""
    except ValueError:
        key = repo or ""
    return "git-" + hashlib.sha256(f"{key}\n{sha.lower()}".encode()).hexdigest()[:32]


def parse_trailers(spec: str) -> dict[str, str]:
    """`needle=tool,needle=tool` (or bare `needle`, tool = needle) from configuration."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        needle, _, tool = part.partition("=")
        out[needle.strip().lower()] = (tool or needle).strip()
    if not out:
        raise ValueError("the AI trailer list is empty")
    return out


def ai_tool(message: str, trailers: dict[str, str] = DEFAULT_AI_TRAILERS) -> str | None:
    """The AI tool named by the first matching `Co-authored-by:` trailer of a commit message, else None."""
    for match in _TRAILER.finditer(message or ""):
        who = match.group("who").lower()
        for needle, tool in trailers.items():
            if needle in who:
                return tool
    return None

