"""`aiyield report`'s table format: every team, tool and model name and every number whole, whatever the width.

Rich shrinks a table that is wider than the terminal (or than 80 columns when the output is piped) by cutting cells
to `…`: `growth…`, `1,249.…`. Here no cell is ever narrower than its text. Headers are short and folded at spaces
onto as many lines as their column needs; when even then the table does not fit, each row is printed as a block
(stacked), one `label  value` line per field, with lines the terminal may wrap but nothing cut. CSV and JSON are
not this module's: they are written whole by the CLI.
"""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Fields that name what a row is about (left-aligned; in the stacked layout, the block's first line).
IDENTITY = ("team", "tool", "model")
#: Shorter headers than the field names (which CSV and JSON keep).
HEADERS = {
    "spend_usd": "spend USD",
    "cost_per_normalized_deployment_usd": "USD per normalized deployment",
    "month_to_date_usd": "month to date USD",
    "forecast_usd": "forecast USD",
    "budget_usd": "budget USD",
    "forecast_vs_budget": "forecast / budget",
}
#: Fields the title already says (one value for the whole report).
IN_TITLE = ("month",)
EMPTY = "no data yet"


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def header(name: str) -> str:
    return HEADERS.get(name, name.replace("_", " "))


def show(console: Console, title: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Print `rows` (field name -> value) as a table when it fits `console.width` whole, else stacked."""
    # The title on a line of its own: as a table's title, Rich would fold it to the table's width. soft_wrap: a
    # line longer than the terminal is wrapped by the terminal, never cut or broken by Rich.
    console.print(title, style="bold", soft_wrap=True, highlight=False)
    if not rows:
        console.print(EMPTY, soft_wrap=True)
        return
    names = [n for n in names if n not in IN_TITLE]
    cells = [[cell(row[n]) for n in names] for row in rows]
    table = _table(names, cells)
    # Measured without the console's limit (a measurement is capped at the width it is given).
    if console.measure(table, options=console.options.update_width(1_000_000)).maximum <= console.width:
        console.print(table)
    else:
        _stacked(console, names, cells)


def _table(names: Sequence[str], cells: list[list[str]]) -> Table:
    # Two spaces between columns and a rule under the header: the narrowest table that still reads as one.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False)
    for i, name in enumerate(names):
        words = header(name)
        # Each column as wide as its widest cell or the longest word of its header, never narrower: fixed width,
        # no wrapping, so Rich has nothing to cut.
        width = max([len(row[i]) for row in cells] + [max(len(w) for w in words.split())])
        folded = "\n".join(textwrap.wrap(words, width, break_long_words=False))
        table.add_column(folded, justify="left" if name in IDENTITY else "right", width=width, no_wrap=True)
    for row in cells:
        table.add_row(*(Text(c) for c in row))  # Text: a name with brackets is not Rich markup
    return table


def _stacked(console: Console, names: Sequence[str], cells: list[list[str]]) -> None:
    """One block per row: its names first (on one line when they fit), then each field on a line of its own."""
    labels = [header(n) for n in names]
    shown = [i for i, n in enumerate(names) if n not in IDENTITY]
    label_width = max(len(labels[i]) for i in shown)
    value_width = max(len(row[i]) for row in cells for i in shown)
    for row in cells:
        parts = [row[i] for i, n in enumerate(names) if n in IDENTITY and row[i] != "—"]
        identity = " / ".join(parts) if len(" / ".join(parts)) <= console.width else "\n".join(parts)
        console.print("", soft_wrap=True)
        console.print(identity, style="bold", soft_wrap=True, highlight=False, markup=False)
        for i in shown:
            if 2 + label_width + 2 + value_width <= console.width:
                line = f"  {labels[i]:<{label_width}}  {row[i]:>{value_width}}"
            else:  # too narrow even for that: each value under its label
                line = f"  {labels[i]}\n    {row[i]}"
            console.print(line, soft_wrap=True, highlight=False, markup=False)
