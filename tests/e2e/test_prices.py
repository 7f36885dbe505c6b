"""`aiyield prices` as a user runs it: the table in use, with each entry's source, date and long-context tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def prices(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIYIELD_")} | {"COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "aiyield", "prices", *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_the_builtin_table_and_a_price_file_on_top(tmp_path):
    table = prices()
    assert table.returncode == 0, table.stderr
    sonnet = next(line for line in table.stdout.splitlines() if "claude-sonnet-4-5 " in line)
    assert [c.strip() for c in sonnet.split("│")[1:7]] == ["claude-sonnet-4-5", "3", "15", "0.3", "3.75", "6"]
    assert "> 200,000: 6 / 22.5 / 0.6 / 7.5 / 12" in sonnet and "2025-11-24" in sonnet

    path = tmp_path / "prices.toml"
    path.write_text('[models."in-house"]\ninput = 1.0\noutput = 2.0\nsource = "our GPU cluster"\neffective = 2026-12-01\n')
    answer = prices("--format", "json", env={"AIYIELD_PRICES": str(path)})
    assert answer.returncode == 0, answer.stderr
    models = {m["model"]: m for m in json.loads(answer.stdout)["models"]}
    assert models["in-house"] | {} == {
        "model": "in-house", "input": 1.0, "output": 2.0, "cache_read": 0.0, "cache_write": 1.25,
        "cache_write_1h": 2.0, "long_context_threshold": None, "long_context": None, "source": "our GPU cluster",
        "effective": "2026-12-01"}
    assert models["claude-sonnet-4"]["long_context"]["cache_write_1h"] == 12.0

    bad = prices("--prices", str(tmp_path / "missing.toml"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
