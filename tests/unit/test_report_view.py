"""`aiyield report`'s table at any width: every name and number whole (tests/integration/test_report_width.py runs
the command itself, piped, at 80 columns)."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from aiyield.readout import MonthRow, TeamRow
from aiyield.report_view import cell, show

LONG = "growth-experiments-platform"
WINDOW_ROWS = [
    TeamRow(LONG, 1_249_000.25, 3.5, 356_857.21, 1_204, 37, 12, 48),
    TeamRow("payments", 12.5, 1.0, 12.5, 3, 1, 0, 2),
    TeamRow("[red]not markup[/red]", 0.0, 0.0, None, 0, 0, 0, 0),
]
MONTH_ROWS = [
    MonthRow(LONG, None, None, "2026-12", 1_249_000.25, 9_876_543.21, 1_000_000.0, 9.88),
    MonthRow(LONG, "claude-code", "claude-sonnet-4-5-20250929", "2026-12", 1_249_000.25, 9_876_543.21, None, None),
]


def render(rows, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    names = [f.name for f in dataclasses.fields(type(rows[0]))]
    show(console, "aiyield — report", names, [dataclasses.asdict(r) for r in rows])
    return console.file.getvalue()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160, 240])
@pytest.mark.parametrize("rows", [WINDOW_ROWS, MONTH_ROWS], ids=["window", "month"])
def test_every_name_and_number_is_whole_at_any_width(rows, width):
    text = render(rows, width)
    assert "…" not in text
    for row in rows:
        for field in dataclasses.fields(row):
            if field.name != "month":
                assert cell(getattr(row, field.name)) in text, (field.name, getattr(row, field.name))
    # Only an unbreakable word longer than the width may make a line longer (the terminal wraps it).
    for line in text.splitlines():
        assert len(line) <= width or any(len(word) > width for word in line.split()), line


def test_a_wide_terminal_gets_a_table_a_narrow_one_blocks():
    wide = render(WINDOW_ROWS, 200)
    header = wide.splitlines()[1:4]  # folded onto three lines, under the title
    assert "─" in wide and "team" in header[2] and "normalized" in header[1] and "USD per" in header[0]
    narrow = render(WINDOW_ROWS, 80)
    assert "─" not in narrow and f"\n{LONG}\n" in narrow and "  spend USD " in narrow


def test_no_rows_say_so():
    console = Console(file=io.StringIO(), width=80, color_system=None)
    show(console, "aiyield — last 1h", ["team"], [])
    assert "no data yet" in console.file.getvalue()
