"""Runs side by side (``dlw compare``), and one run's summary table in a notebook (``Run._repr_html_``).

Per run: the data, the model, the main metric of the network and of the best baseline, the
verdict, the time, and every config key whose value differs between the runs compared. All of
it is read from each run's own files (``metrics.json``, ``run.json``, ``config.yaml``,
``schema.json``), so runs from different days and machines compare the same way.

>>> from dlw.compare import compare_runs        # doctest: +SKIP
>>> compare_runs(["runs/a", "runs/b"])[["run", "metric", "network", "best_baseline"]]   # doctest: +SKIP
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import yaml

from dlw.bundle import is_bundle, open_bundle
from dlw.errors import DlwError
from dlw.objectives import higher_is_better
from dlw.runs import RunFiles, is_run_folder

# The columns every comparison has, in order; the differing config keys follow them.
COLUMNS = ("run", "data", "rows", "task", "model", "parameters", "metric", "network", "best_baseline", "baseline_value",
           "verdict", "ci95_low", "ci95_high", "seconds", "created")
VERDICT_WORDS = {"network_better": "network better", "no_clear_difference": "no clear difference", "baseline_better": "baseline better"}


def flat_config(config: dict, prefix: str = "") -> dict:
    """A nested config as ``{"train.epochs": 3, ...}``; lists and empty dicts kept as values."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def best_baseline(metrics: dict) -> tuple[str | None, float | None]:
    """The best baseline on the main metric: the verdict's when there is one, else by the metric's direction."""
    advice = metrics.get("advice") or {}
    if advice.get("baseline"):
        return advice["baseline"], advice.get("baseline_value")
    main = metrics.get("main_metric")
    scored = {k: v.get(main) for k, v in (metrics.get("baselines") or {}).items() if isinstance(v.get(main), (int, float))}
    if not scored:
        return None, None
    pick = max if higher_is_better(main) else min
    name = pick(scored, key=scored.get)
    return name, scored[name]


def run_summary(folder) -> dict:
    """One run's row: the fixed columns (``COLUMNS``) and ``config``, its flattened config."""
    folder = Path(folder)
    if not folder.is_dir() or not is_run_folder(folder):
        raise DlwError(f"{folder}: not a dlw run folder (no run.json); pass folders written by `dlw train` or `dlw run`")
    files = RunFiles(folder)
    m, manifest = files.metrics, files.manifest
    config_path = folder / "config.yaml"
    config = (yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None) or {}
    advice = m.get("advice") or {}
    ci = advice.get("ci95") or [None, None]
    main = m.get("main_metric")
    baseline, baseline_value = best_baseline(m)
    return {
        "run": config.get("name") or folder.name,
        "data": (manifest.get("data") or {}).get("source", (config.get("data") or {}).get("source")),
        "rows": (manifest.get("data") or {}).get("rows"),
        "task": m.get("task") or (files.schema.get("problem") or {}).get("task"),
        "model": (config.get("model") or {}).get("kind"),
        "parameters": (m.get("training") or {}).get("parameters"),
        "metric": main,
        "network": (m.get("test") or {}).get(main),
        "best_baseline": baseline,
        "baseline_value": baseline_value,
        "verdict": VERDICT_WORDS.get(advice.get("outcome"), advice.get("verdict")),
        "ci95_low": ci[0],
        "ci95_high": ci[1],
        "seconds": manifest.get("seconds"),
        "created": manifest.get("created"),
        "config": flat_config(config),
    }


def differing_keys(configs: list[dict]) -> list[str]:
    """Config keys whose values are not the same in every run (the run's name aside), in first-seen order."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    missing = object()
    return [k for k in keys if k != "name" and len({repr(c.get(k, missing)) for c in configs}) > 1]


def compare_runs(folders) -> pd.DataFrame:
    """One row per run folder or bundle: ``COLUMNS``, then one column per config key that differs between the runs.

    Example:
        >>> compare_runs(["runs/tabm", "runs/mlp"])["model"].tolist()   # doctest: +SKIP
        ['tabm', 'mlp']
    """
    if not folders:
        raise DlwError("dlw compare: no runs given; pass two or more run folders, e.g. `dlw compare runs/a runs/b`")
    summaries = [run_summary(open_bundle(f) if is_bundle(f) else f) for f in folders]
    configs = [s.pop("config") for s in summaries]
    keys = differing_keys(configs)
    rows = [{**s, **{k: _cell(c.get(k)) for k in keys}} for s, c in zip(summaries, configs)]
    return pd.DataFrame(rows, columns=[*COLUMNS, *keys])


def _cell(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else yaml.safe_dump(value, default_flow_style=True).strip()


def shown(value) -> str:
    """A cell as text: floats with four decimals, missing values as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_comparison(frame: pd.DataFrame, file=None) -> None:
    """The comparison as a rich table (on stdout unless ``file``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dlw compare", show_lines=False)
    for column in frame.columns:
        table.add_column(column, justify="right" if column in ("rows", "parameters", "network", "baseline_value", "seconds") else "left")
    for _, row in frame.iterrows():
        table.add_row(*(shown(v) for v in row.tolist()))
    Console(file=file, width=max(120, 14 * len(frame.columns))).print(table)


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f3f3f3}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
)


def html_table(frame: pd.DataFrame) -> str:
    """An HTML ``<table>`` of the frame, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = (f'<td class="num">{html.escape(shown(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else f"<td>{html.escape(shown(v))}</td>" for v in row.tolist())
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_html(frame: pd.DataFrame) -> str:
    """A self-contained page (inline style, no scripts, nothing fetched) holding the comparison."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>dlw compare</title>'
        f"<style>{_STYLE}</style></head><body><h1>dlw compare</h1>"
        "<p>Each run's main metric on its own test split, next to its best baseline; the verdict is the paired-bootstrap "
        "comparison of the two. Columns after <em>created</em> are the config keys that differ between the runs.</p>"
        f"{html_table(frame)}</body></html>\n"
    )


def summary_html(folder) -> str:
    """One run as a small HTML table for a notebook: data, task, model, main metric vs best baseline, verdict."""
    s = run_summary(folder)
    pairs = [
        ("run", s["run"]),
        ("data", f"{s['data']} ({shown(s['rows'])} rows)"),
        ("task", s["task"]),
        ("model", f"{s['model']} ({shown(s['parameters'])} parameters)"),
        (f"test {s['metric']}", f"network {shown(s['network'])} vs {s['best_baseline']} {shown(s['baseline_value'])}"),
        ("verdict", f"{s['verdict']} (95% interval {shown(s['ci95_low'])} to {shown(s['ci95_high'])})"),
        ("folder", str(folder)),
    ]
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in pairs)
    return f"<table><caption>dlw run</caption>{rows}</table>"
