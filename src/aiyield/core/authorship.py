"""Line-level AI authorship from git notes: the Git AI Authorship Log (`refs/notes/ai`, schema `authorship/3.0.0`).

A note attached to a commit has two sections separated by a line `---`:

    src/main.rs                      <- a file path (quoted when it holds spaces)
      abcd1234abcd1234 1-10,15-20    <- two-space indent, a session hash, the lines that session wrote
    ---
    {"schema_version": "authorship/3.0.0", "base_commit_sha": "...",
     "prompts": {"abcd1234abcd1234": {"agent_id": {"tool": "cursor", "id": "...", "model": "..."}, ...}}}

Line numbers are those of each file as committed, so the AI-written lines a commit carries are the distinct line
numbers of each file, whichever session wrote them. The metadata's prompt records also hold the conversation
(`messages`): only `agent_id.tool` and `agent_id.model` are read, never the messages. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

SCHEMA_PREFIX = "authorship/"
_ENTRY = re.compile(r"^  (?P<hash>[0-9a-fA-F]{7,64}) (?P<ranges>\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)\s*$")


class NoteError(ValueError):
    """A note that is not an authorship log aiyield can read."""


@dataclass(frozen=True)
class Authorship:
    #: file -> session hash -> line numbers
    files: dict[str, dict[str, frozenset[int]]] = field(default_factory=dict)
    #: session hash -> (tool, model), as the metadata names them (either may be None)
    agents: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @property
    def ai_lines(self) -> int:
        """AI-written lines committed: distinct line numbers per file, over every session."""
        return sum(len(frozenset().union(*sessions.values())) for sessions in self.files.values())

    def lines_by_tool(self) -> Counter[str]:
        """Lines per agent tool (a line written by two sessions counts for each); `unknown` without metadata."""
        out: Counter[str] = Counter()
        for sessions in self.files.values():
            for session, lines in sessions.items():
                out[self.agents.get(session, (None, None))[0] or "unknown"] += len(lines)
        return out


def parse_ranges(text: str) -> frozenset[int]:
    lines: set[int] = set()
    for part in text.split(","):
        start, _, end = part.partition("-")
        lo, hi = int(start), int(end or start)
        if lo < 1 or hi < lo or hi - lo > 10_000_000:
            raise NoteError(f"bad line range {part!r}")
        lines.update(range(lo, hi + 1))
    return frozenset(lines)


def parse_note(text: str) -> Authorship:
    """An authorship log; `NoteError` when the note is of another kind or malformed."""
    attestation, divider, metadata_text = text.partition("\n---\n")
    if not divider:
        if text.startswith("---\n"):  # no attested file at all
            attestation, metadata_text = "", text[4:]
        else:
            raise NoteError("no `---` divider: not a Git AI authorship log")
    try:
        metadata = json.loads(metadata_text)
    except ValueError as exc:
        raise NoteError(f"metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict) or not str(metadata.get("schema_version", "")).startswith(SCHEMA_PREFIX):
        raise NoteError("metadata has no authorship/* schema_version")
    files: dict[str, dict[str, frozenset[int]]] = {}
    current: str | None = None
    for line in attestation.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line[1:-1] if len(line) > 1 and line[0] == line[-1] == '"' else line
            files.setdefault(current, {})
            continue
        match = _ENTRY.match(line)
        if match is None or current is None:
            raise NoteError(f"bad attestation line {line[:80]!r}")
        session = match["hash"].lower()
        previous = files[current].get(session, frozenset())
        files[current][session] = previous | parse_ranges(match["ranges"])
    agents = {}
    prompts = metadata.get("prompts")
    for session, record in (prompts.items() if isinstance(prompts, dict) else ()):
        agent = record.get("agent_id") if isinstance(record, dict) else None
        if isinstance(agent, dict):
            tool, model = agent.get("tool"), agent.get("model")
            agents[str(session).lower()] = (tool if isinstance(tool, str) else None, model if isinstance(model, str) else None)
    return Authorship(files, agents)
