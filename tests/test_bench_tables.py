"""bench/tables.py's comparison of a run with an earlier one (what bench/RESULTS.md's better/worse counts come from)."""

from __future__ import annotations

import json

from conftest import bench_module


def test_lower_rmse_and_higher_auc_count_as_better_and_a_later_line_wins(tmp_path, capsys):
    tables = bench_module("tables")
    earlier = tmp_path / "earlier.jsonl"
    lines = [
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 30000.0, "outcome": "no_clear_difference"},
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 20000.0, "outcome": "network_better"},
        {"table": "attrition", "seed": 42, "metric": "roc_auc", "network": 0.80, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 0, "metric": "rmse", "network": 3.0, "outcome": "no_clear_difference"},
    ]
    earlier.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    reference = tables.read_rows(earlier)
    rows = [
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 19000.0, "outcome": "network_better"},
        {"table": "attrition", "seed": 42, "metric": "roc_auc", "network": 0.79, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 0, "metric": "rmse", "network": 3.0, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 1, "metric": "rmse", "network": 2.0, "outcome": "no_clear_difference"},
    ]
    assert abs(tables.relative_change(rows[0], reference["ames", 42]) - 0.05) < 1e-12
    tables.print_changes(rows, reference)
    assert capsys.readouterr().out.strip().endswith("better in 1, worse in 1, unchanged in 1")
