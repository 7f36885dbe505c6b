"""Git AI authorship logs (refs/notes/ai, authorship/3.0.0), parsed without reading the conversation."""

import json

import pytest

from aiyield.core.authorship import NoteError, parse_note, parse_ranges

SPEC_EXAMPLE = """src/main.rs
  abcd1234abcd1234 1-10,15-20
  efab5678efab5678 25,30-35
src/lib.rs
  abcd1234abcd1234 1-50
"my file.rs"
  efab5678efab5678 3
---
""" + json.dumps({
    "schema_version": "authorship/3.0.0", "git_ai_version": "1.0.23",
    "base_commit_sha": "7734793b756b3921c88db5375a8c156e9532447b",
    "prompts": {
        "abcd1234abcd1234": {"agent_id": {"tool": "cursor", "id": "6ef2", "model": "claude-4.5-opus"},
                             "messages": [{"type": "user", "text": "SECRET prompt"}], "total_additions": 25,
                             "total_deletions": 5, "accepted_lines": 20, "overriden_lines": 0},
        "efab5678efab5678": {"agent_id": {"tool": "claude", "id": "a1b2", "model": "claude-3-sonnet"},
                             "messages": [], "total_additions": 6, "total_deletions": 0, "accepted_lines": 6,
                             "overriden_lines": 0},
    },
}, indent=2)


def test_the_spec_example():
    log = parse_note(SPEC_EXAMPLE)
    assert log.ai_lines == (10 + 6 + 1 + 6) + 50 + 1
    assert log.lines_by_tool() == {"cursor": 66, "claude": 8}
    assert log.agents["abcd1234abcd1234"] == ("cursor", "claude-4.5-opus")
    assert "my file.rs" in log.files


def test_a_line_written_by_two_sessions_counts_once():
    note = "a.py\n  1111111111111111 1-5\n  2222222222222222 4-8\n---\n" + json.dumps(
        {"schema_version": "authorship/3.0.0", "base_commit_sha": "x", "prompts": {}})
    assert parse_note(note).ai_lines == 8


def test_a_note_without_attestations_has_no_ai_lines():
    assert parse_note("---\n" + json.dumps({"schema_version": "authorship/3.0.0", "prompts": {}})).ai_lines == 0


@pytest.mark.parametrize("note", [
    "just a human note",
    "a.py\n  1111111111111111 1-5\n---\nnot json",
    "a.py\n  1111111111111111 1-5\n---\n" + json.dumps({"schema_version": "other/1"}),
    "a.py\n  zz 1-5\n---\n" + json.dumps({"schema_version": "authorship/3.0.0"}),
    "a.py\n  1111111111111111 5-1\n---\n" + json.dumps({"schema_version": "authorship/3.0.0"}),
])
def test_other_notes_are_refused(note):
    with pytest.raises(NoteError):
        parse_note(note)


def test_ranges():
    assert parse_ranges("1,2,19-22,300") == {1, 2, 19, 20, 21, 22, 300}
