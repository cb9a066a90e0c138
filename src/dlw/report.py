"""The run report: one self-contained ``report.html`` that walks through the nine steps of a run.

>>> from dlw.report import write_report
>>> write_report(Path("runs/penguins"))          # doctest: +SKIP
PosixPath('runs/penguins/report.html')

The report reads only files in the run folder (JSON, CSV, PNG, and the ``config.json``
inside the ``model.keras`` zip), so it needs neither Keras nor a trained model in
memory, and it works on a run folder copied to another machine. Every image is
embedded as a base64 data URI and the CSS is inline: the file can be mailed,
opened offline and printed. Every string from the user's data (column names,
class names, file paths) goes through :func:`html.escape`.

Sections, one per step (ids in order): problem, inputs, preparation, objective,
model, training, tuning, performance, sufficiency, unfamiliar, explanations,
predictions. A section whose files are absent says so ("not run for this run" /
"not available") instead of disappearing.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
import zipfile
from pathlib import Path

import pandas as pd

from dlw.advice import BASELINE_BETTER, NETWORK_BETTER, NO_CLEAR_DIFFERENCE
from dlw.crossfit import folds_text
from dlw.objectives import higher_is_better
from dlw.ood import threshold_text
from dlw.runs import RunFiles, read_json_or_none, write_atomic

__all__ = ["write_report", "SECTIONS"]

# (id, heading) in the order they appear.
SECTIONS: list[tuple[str, str]] = [
    ("problem", "1. The problem"),
    ("inputs", "2. Inputs and output"),
    ("preparation", "3. Data preparation"),
    ("objective", "4. Loss and metrics"),
    ("model", "5. The model"),
    ("training", "6. Training"),
    ("tuning", "7. Tuning"),
    ("performance", "8. Performance on held-out test data"),
    ("sufficiency", "9. Is there enough data?"),
    ("unfamiliar", "10. Unfamiliar inputs"),
    ("explanations", "11. What the model relies on"),
    ("predictions", "12. Example predictions"),
]

NOT_RUN = "Not run for this run."
NOT_AVAILABLE = "Not available for this run."

_IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --soft:#f6f8fa; --accent:#0b5cad;
  --green:#1a7f37; --green-bg:#dafbe1; --amber:#9a6700; --amber-bg:#fff8c5; --red:#cf222e; --red-bg:#ffebe9; }
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
header { border-bottom: 2px solid var(--line); padding-bottom: .75rem; margin-bottom: 1rem; }
h1 { font-size: 1.75rem; margin: 0 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2.25rem 0 .6rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .4rem; }
p { margin: .45rem 0; }
.meta { color: var(--muted); font-size: .92rem; margin: 0; }
.meta span + span::before { content: " · "; }
.lead { font-size: 1.1rem; }
.muted, .absent { color: var(--muted); }
.absent { font-style: italic; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .9em;
  background: var(--soft); padding: .05em .3em; border-radius: 4px; }
nav.toc { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem; font-size: .95rem; }
nav.toc ol { margin: .2rem 0; padding-left: 1.4rem; columns: 2; column-gap: 2rem; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
.table-wrap { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .9rem; min-width: 50%; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.network td { font-weight: 600; }
td.best { background: var(--green-bg); }
table.compact { font-size: .8rem; }
table.compact th, table.compact td { padding: .2rem .4rem; }
tr.miss td { background: var(--red-bg); }
table.kv th { width: 14rem; }
figure { margin: 1rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .25rem; }
.gallery { display: flex; flex-wrap: wrap; gap: .75rem; }
.gallery figure { flex: 1 1 14rem; max-width: 18rem; margin: .25rem 0; }
.verdict { border-left: 6px solid; border-radius: 6px; padding: .75rem 1rem; margin: 1rem 0; }
.verdict .title { font-size: 1.15rem; font-weight: 700; margin: 0 0 .25rem; }
.verdict.good { border-color: var(--green); background: var(--green-bg); }
.verdict.good .title { color: var(--green); }
.verdict.unclear { border-color: var(--amber); background: var(--amber-bg); }
.verdict.unclear .title { color: var(--amber); }
.verdict.bad { border-color: var(--red); background: var(--red-bg); }
.verdict.bad .title { color: var(--red); }
.note { border: 1px solid var(--line); background: var(--soft); border-radius: 6px; padding: .5rem .8rem; }
ul.warnings li { color: var(--amber); }
footer { color: var(--muted); font-size: .85rem; margin-top: 3rem; border-top: 1px solid var(--line); padding-top: .5rem; }
@media (max-width: 40rem) { nav.toc ol { columns: 1; } }
@media print {
  html { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; page-break-after: avoid; }
  figure, table, .verdict, .note, tr { break-inside: avoid; page-break-inside: avoid; }
  img { max-width: 100% !important; }
  .table-wrap { overflow: visible; }
  table { font-size: 8.5pt; }
  th, td { padding: .15rem .3rem; overflow-wrap: anywhere; }
  .verdict, td.best, tr.miss td, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
"""


# --- small helpers -------------------------------------------------------------


def esc(value) -> str:
    """Escape any value for HTML text or attribute (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def _fmt(value, digits: int = 4) -> str:
    """A number for people: ints with separators, floats to ``digits`` significant figures; other values as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if abs(value) < 1e-12:  # round-off, e.g. an importance of 2e-17
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return _fmt(int(value), digits)
        if abs(value) >= 1e6:
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    try:  # numpy scalars
        import numbers

        if isinstance(value, numbers.Integral):
            return _fmt(int(value), digits)
        if isinstance(value, numbers.Real):
            return _fmt(float(value), digits)
    except Exception:  # pragma: no cover - defensive
        pass
    return str(value)


def _pct(fraction) -> str:
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        return "—"
    if fraction == 0:
        return "0%"
    pct = 100 * fraction
    return f"{pct:.1f}%" if pct >= 0.1 else "<0.1%"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _absent(text: str = NOT_AVAILABLE) -> str:
    return f'<p class="absent">{esc(text)}</p>'


def _attr_class(cls: str) -> str:
    return f' class="{cls}"' if cls else ""


def _p(text: str, cls: str = "") -> str:
    """A paragraph; ``text`` is HTML already (escape user strings before)."""
    return f"<p{_attr_class(cls)}>{text}</p>"


def _table(header: list[str], rows: list[list], numeric: set[int] | None = None, row_classes: list[str] | None = None,
           cell_classes: dict[tuple[int, int], str] | None = None, cls: str = "") -> str:
    """An HTML table; header and cells are escaped here (cells through :func:`_fmt`)."""
    numeric = numeric or set()
    cell_classes = cell_classes or {}
    head = "".join(f"<th{_attr_class('num' if i in numeric else '')}>{esc(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, value in enumerate(row):
            classes = " ".join(x for x in ("num" if c in numeric else "", cell_classes.get((r, c), "")) if x)
            cells.append(f"<td{_attr_class(classes)}>{esc(_fmt(value))}</td>")
        rc = row_classes[r] if row_classes and row_classes[r] else ""
        body.append(f"<tr{_attr_class(rc)}>{''.join(cells)}</tr>")
    return f'<div class="table-wrap"><table{_attr_class(cls)}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _kv_table(pairs: list[tuple[str, object]]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in pairs)
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def _data_uri(path: Path) -> str | None:
    """``data:`` URI for a PNG/JPEG/GIF file, or None if it is missing or not an image we know."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    for magic, mime in _IMAGE_TYPES.items():
        if data.startswith(magic):
            return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return None


def _figure(path: Path, caption: str) -> str:
    uri = _data_uri(path)
    if uri is None:
        return ""
    return f'<figure><img src="{uri}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def _config_value(folder: Path, key: str) -> str | None:
    """A top-level scalar from config.yaml, read without a YAML parser (``name: value``)."""
    try:
        text = (folder / "config.yaml").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf"^{re.escape(key)}:[ \t]*(.+?)[ \t]*$", text, flags=re.MULTILINE)
    if not match:
        return None
    value = match.group(1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value or None


def _model_layers(folder: Path) -> tuple[str | None, list[dict]] | None:
    """(model name, layers) from ``model.keras`` -> ``config.json``, without Keras; None if unreadable."""
    try:
        with zipfile.ZipFile(folder / "model.keras") as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    layers = []

    def walk(items, prefix=""):
        for item in items or []:
            if not isinstance(item, dict):
                continue
            cfg = item.get("config", {}) or {}
            name = item.get("name") or cfg.get("name") or ""
            nested = cfg.get("layers") if isinstance(cfg, dict) else None
            layers.append({"name": prefix + str(name), "class": str(item.get("class_name", "")), "config": cfg})
            if nested:  # a model used as a layer (e.g. a pretrained base): list its layers, indented by name
                walk(nested, prefix=f"{prefix}{name}/")

    walk(inner.get("layers"))
    return inner.get("name"), layers


def _layer_detail(layer: dict) -> tuple[str, str]:
    """(size, details) for a layer's row: units/filters, then kernel, activation, rate, shape."""
    cfg = layer["config"] if isinstance(layer["config"], dict) else {}
    size = ""
    for key in ("units", "filters", "output_dim", "num_tokens"):
        if _is_number(cfg.get(key)):
            size = f"{cfg[key]:,} {key.replace('_', ' ')}"
            break
    details = []
    if cfg.get("kernel_size") is not None:
        k = cfg["kernel_size"]
        details.append("kernel " + ("×".join(map(str, k)) if isinstance(k, (list, tuple)) else str(k)))
    if cfg.get("pool_size") is not None and layer["class"].endswith("Pooling2D"):
        p = cfg["pool_size"]
        details.append("pool " + ("×".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p)))
    if isinstance(cfg.get("activation"), str) and cfg["activation"] != "linear":
        details.append(f"activation {cfg['activation']}")
    if _is_number(cfg.get("rate")):
        details.append(f"rate {cfg['rate']:g}")
    if layer["class"] == "InputLayer":
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if isinstance(shape, list):
            details.append("shape (" + ", ".join("batch" if s is None else str(s) for s in shape) + ")")
        if cfg.get("dtype"):
            details.append(f"dtype {cfg['dtype']}" if isinstance(cfg["dtype"], str) else "")
    if layer["class"] == "Rescaling" and _is_number(cfg.get("scale")):
        details.append(f"scale {cfg['scale']:.4g}")
    return size, ", ".join(d for d in details if d)


# --- the sections --------------------------------------------------------------


class _Run(RunFiles):
    """Everything the report reads from one run folder, loaded once (absent files are None)."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.run = self.manifest
        self.problem = self.schema.get("problem") or {}
        self.task = self.problem.get("task") or self.metrics.get("task")
        self.images = self.input_kind == "images"
        self.name = _config_value(folder, "name") or folder.name


def _section_problem(r: _Run) -> str:
    p = r.problem
    target = p.get("target") or r.schema.get("target")
    task = r.task
    if not target and not task:
        return _absent()
    classes = [str(c) for c in p.get("classes") or []]
    if task == "regression":
        line = f"Predict the number <strong>{esc(target)}</strong> from the {'images' if r.images else 'other columns'} (regression)."
    else:
        shown = ", ".join(esc(c) for c in classes[:8]) + (", …" if len(classes) > 8 else "")
        kind = {"binary": "binary classification", "multiclass": "multiclass classification"}.get(task, esc(task))
        what = "an image" if r.images else "a row"
        line = (f"Predict <strong>{esc(target)}</strong>: which of {len(classes)} classes ({shown}) {what} belongs to "
                f"({kind}).")
    out = [_p(line, "lead")]
    if p.get("reason"):
        out.append(_p(f"Task chosen because: {esc(p['reason'])}.", "muted"))
    for note in p.get("notes") or []:
        out.append(_p(esc(note), "muted"))
    return "".join(out)


def _section_inputs(r: _Run) -> str:
    s = r.schema
    if not s:
        return _absent()
    target = s.get("target") or r.problem.get("target")
    if r.images:
        image = s.get("image") if isinstance(s.get("image"), dict) else s  # nested or top-level size/channels
        size = image.get("size")
        channels = image.get("channels")
        pairs = [
            ("Input", "images" + (f" ({s['source_kind']})" if s.get("source_kind") else "")),
            ("Image column", s.get("image_column")),
            ("Image size (height × width)", "×".join(map(str, size)) + " pixels" if isinstance(size, list) else size),
            ("Channels", f"{channels} ({ {1: 'greyscale', 3: 'colour (RGB)'}[channels]})" if channels in (1, 3) else channels),
            ("Output", target),
        ]
        pairs = [(k, v) for k, v in pairs if v is not None]
        counts = s.get("class_counts") or {}
        if counts:
            pairs.append(("Classes", len(counts)))
        out = [_kv_table(pairs)]
        if counts:
            total = sum(v for v in counts.values() if _is_number(v)) or 1
            rows = [[name, n, _pct(n / total) if _is_number(n) else "—"] for name, n in counts.items()]
            out.append("<h3>Images per class</h3>" + _table(["class", "images", "share"], rows, numeric={1, 2}))
        return "".join(out)
    features = s.get("features") or []
    if not features:
        return _absent("No input columns recorded.")
    rows = []
    for f in features:
        kind = f.get("kind", "")
        if kind == "categorical":
            vocab = [str(v) for v in f.get("vocabulary") or []]
            shown = ", ".join(vocab[:5]) + (f", … (+{len(vocab) - 5} more)" if len(vocab) > 5 else "")
            values = f"{len(vocab)} categories: {shown}" if vocab else "—"
        elif kind == "boolean":
            values = "true / false" + (f" (true = {f['true_value']})" if f.get("true_value") else "")
        elif _is_number(f.get("min")) and _is_number(f.get("max")):
            values = f"{_fmt(f['min'])} – {_fmt(f['max'])} (mean {_fmt(f.get('mean'))})"
        else:
            values = "—"
        rows.append([f.get("name", ""), kind, _pct(f.get("missing_fraction")), values, f.get("note") or ""])
    kinds: dict[str, int] = {}
    for f in features:
        kinds[f.get("kind", "?")] = kinds.get(f.get("kind", "?"), 0) + 1
    summary = ", ".join(f"{n} {esc(k)}" for k, n in kinds.items())
    return (_p(f"{len(features)} input column(s) ({summary}); output: <strong>{esc(target)}</strong>.")
            + _table(["column", "type", "missing", "range (min – max, mean) or categories", "note"], rows, numeric={2}))


def _section_preparation(r: _Run) -> str:
    s, sp = r.schema, r.splits
    if not s and not sp:
        return _absent()
    prep = s.get("preparation") or {}
    out = []
    rows = prep.get("rows", (r.run.get("data") or {}).get("rows"))
    facts = []
    if rows is not None:
        facts.append(f"{esc(_fmt(rows))} {'images' if r.images else 'rows'} read")
    dropped = prep.get("dropped_missing_target")
    if dropped:
        facts.append(f"{esc(_fmt(dropped))} dropped because the target was missing")
    elif dropped == 0 and not r.images:
        facts.append("none dropped for a missing target")
    if facts:
        out.append(_p("; ".join(facts) + "."))
    sizes = sp.get("sizes") or {}
    if sizes:
        total = sum(v for v in sizes.values() if _is_number(v)) or 1
        how = []
        if sp.get("method"):
            how.append(f"method: {esc(sp['method'])}")
        if sp.get("seed") is not None:
            how.append(f"seed {esc(sp['seed'])}")
        how_text = "; ".join(how)
        out.append("<h3>Splits</h3>" + (_p(how_text[:1].upper() + how_text[1:] + ".") if how else ""))
        out.append(_table(["split", "size", "share"], [[k, v, _pct(v / total) if _is_number(v) else "—"] for k, v in sizes.items()],
                          numeric={1, 2}))
        out.append(_p("The network learns from <em>train</em>, early stopping and tuning look at <em>validation</em>, and "
                      "<em>test</em> is used once, at the end, for the numbers in section 8.", "muted"))
    if not r.images:
        imputed = [f for f in s.get("features") or [] if f.get("kind") != "categorical" and (f.get("missing_fraction") or 0) > 0]
        cats = [f for f in s.get("features") or [] if f.get("kind") == "categorical" and (f.get("missing_fraction") or 0) > 0]
        out.append("<h3>Missing values</h3>")
        if imputed or cats:
            items = [
                f"<li><strong>{esc(f.get('name'))}</strong> ({_pct(f.get('missing_fraction'))} missing): filled with the training median"
                f"{' (' + esc(_fmt(f['median'])) + ')' if _is_number(f.get('median')) else ''}"
                f"{', plus a 0/1 indicator input saying it was missing' if f.get('indicator', True) else ''}.</li>"
                for f in imputed
            ]
            items += [
                f"<li><strong>{esc(f.get('name'))}</strong> ({_pct(f.get('missing_fraction'))} missing): "
                "“missing” is a category of its own.</li>"
                for f in cats
            ]
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            out.append(_p("No missing values in the input columns."))
    excluded = s.get("excluded") or {}
    out.append("<h3>Columns not used</h3>")
    if excluded:
        out.append(_table(["column", "why"], [[k, v] for k, v in excluded.items()]))
    else:
        out.append(_p("None: every column other than the target is an input." if not r.images else "None."))
    notes = prep.get("notes") or []
    if notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(out)


def _section_objective(r: _Run) -> str:
    o = r.schema.get("objective") or {}
    if not o:
        return _absent()
    metrics = o.get("metrics") or []
    out = [_kv_table([("Loss (what training minimises)", o.get("loss")),
                      ("Metrics watched during training", ", ".join(map(str, metrics)) or "—")])]
    if o.get("why"):
        out.append(_p(f"Why this loss: {esc(o['why'])}."))
    main = r.metrics.get("main_metric")
    if main:
        why = r.metrics.get("main_metric_reason")
        out.append(_p(f"The main metric for comparing with the baselines in section 8 is <strong>{esc(main)}</strong> "
                      f"({'higher' if higher_is_better(main) else 'lower'} is better)" + (f": {esc(why)}." if why else ".")))
    return "".join(out)


def _section_model(r: _Run) -> str:
    out = []
    read = _model_layers(r.folder)
    training = r.metrics.get("training") or {}
    params, trainable = training.get("parameters"), training.get("trainable_parameters")
    count = ""
    if _is_number(params):
        count = f"<strong>{esc(_fmt(params))}</strong> parameters (weights)"
        if _is_number(trainable) and trainable != params:
            count += f", {esc(_fmt(trainable))} of them trained (the rest are fixed, e.g. the standardisation's means and variances)"
    if read is None:
        out.append(_absent("The model file (model.keras) is not available."))
    else:
        name, layers = read
        lead = f"Keras model <code>{esc(name)}</code>" if name else "Keras model"
        lead += f" with {len(layers)} layers"
        out.append(_p(lead + (f" and {count}" if count else "") + "; its layers in order from input to output:"))
        rows = [[layer["name"], layer["class"], *_layer_detail(layer)] for layer in layers]
        out.append(_table(["layer", "type", "size", "details"], rows))
    if read is None and count:
        out.append(_p(count[:1].upper() + count[1:] + "."))
    return "".join(out)


def _section_training(r: _Run) -> str:
    t = r.metrics.get("training") or {}
    out = []
    if t:
        epochs, best, early = t.get("epochs_run"), t.get("best_epoch"), t.get("stopped_early")
        pairs = [("Epochs run", epochs), ("Best epoch (weights kept)", best),
                 ("Stopped early", "yes — validation loss stopped improving" if early else "no — ran to the epoch limit" if early is False else None),
                 ("Fit time", f"{_fmt(t['fit_seconds'], 3)} s" if _is_number(t.get("fit_seconds")) else None),
                 ("Cross-fitted", folds_text(t["folds"]) if t.get("folds") else None)]
        history = _read_csv(r.folder / "history.csv")
        if history is not None and _is_number(best) and "epoch" in history.columns:
            row = history[history["epoch"] == best]
            if len(row):
                for col in history.columns:
                    if col.startswith("val_"):
                        pairs.append((f"{col} at the best epoch", float(row.iloc[0][col])))
        out.append(_kv_table([(k, v) for k, v in pairs if v is not None]))
    fig = _figure(r.folder / "learning_curves.png", "Learning curves: training and validation loss and metrics per epoch")
    if fig:
        out.append(fig)
        out.append(_p("Training and validation curves that keep apart late in training are a sign of overfitting; "
                      "the weights kept are those of the best validation epoch.", "muted"))
    return "".join(out) or _absent()


def _tuning_value_column(frame: pd.DataFrame, info: dict) -> str | None:
    wanted = info.get("objective") or info.get("metric")
    if wanted in frame.columns:
        return wanted
    for col in ("value", "score", "objective", "val_loss"):
        if col in frame.columns:
            return col
    for col in frame.columns:
        if str(col).startswith("val_") and pd.api.types.is_numeric_dtype(frame[col]):
            return col
    return None


def _section_tuning(r: _Run) -> str:
    frame = _read_csv(r.folder / "tuning.csv")
    if frame is None:
        return _absent("Not run for this run: no hyperparameter tuning was asked for (the model used the configured settings).")
    info = read_json_or_none(r.folder / "tuning.json") or {}
    out = [_p(f"<strong>{len(frame)}</strong> trial(s) tried" + (f" ({esc(info['method'])})" if info.get("method") else "") + ".")]
    value = _tuning_value_column(frame, info)
    top = frame
    if value is not None:
        direction = info.get("direction") or ("min" if not higher_is_better(value) or value in ("value", "objective") else "max")
        values = pd.to_numeric(frame[value], errors="coerce")
        ascending = str(direction).lower().startswith("min")
        top = frame.assign(_v=values).sort_values("_v", ascending=ascending, na_position="last").drop(columns="_v")
        best = values.min() if ascending else values.max()
        out.append(_p(f"Best {esc(value)}: <strong>{esc(_fmt(float(best)))}</strong> "
                      f"({'lower' if ascending else 'higher'} is better, measured on the validation split)."))
    if info.get("best_params"):
        out.append(_p("Best settings: " + ", ".join(f"<code>{esc(k)} = {esc(v)}</code>" for k, v in info["best_params"].items())))
    top = top.head(5)
    columns = [str(c) for c in top.columns]
    numeric = {i for i, c in enumerate(top.columns) if pd.api.types.is_numeric_dtype(top[c])}
    rows = [[_cell(v) for v in row] for row in top.itertuples(index=False)]
    out.append("<h3>Top trials</h3>" + _table(columns, rows, numeric=numeric))
    for png in sorted(r.folder.glob("tuning*.png")):
        out.append(_figure(png, png.stem.replace("_", " ").capitalize()))
    return "".join(out)


def _cell(value):
    """A CSV cell as a Python value for :func:`_fmt` (NaN -> None)."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        value = value.item()
    return value


_VERDICTS = {
    "good": "The network is better than the best baseline",
    "unclear": "No clear difference between the network and the best baseline",
    "bad": "The baseline is better than the network",
}


# The box's colour for each outcome code of the verdict (dlw.advice).
_OUTCOME_CLASS = {NETWORK_BETTER: "good", NO_CLEAR_DIFFERENCE: "unclear", BASELINE_BETTER: "bad"}


def _verdict_class(advice: dict) -> str:
    """good (network better) / unclear / bad (baseline better), from the verdict's outcome code.

    A run folder written before the code existed has none: its interval decides, as the
    verdict itself did (the whole interval on one side of zero).
    """
    if advice.get("outcome") in _OUTCOME_CLASS:
        return _OUTCOME_CLASS[advice["outcome"]]
    ci, diff = advice.get("ci95"), advice.get("difference")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_is_number(x) for x in ci) and _is_number(diff):
        # difference = network - baseline; flip it when lower is better so that > 0 favours the network.
        sign = 1 if higher_is_better(advice.get("metric", "")) else -1
        lo, hi = sorted((sign * ci[0], sign * ci[1]))
        if lo > 0:
            return "good"
        if hi < 0:
            return "bad"
    return "unclear"


def _verdict_box(advice: dict) -> str:
    cls = _verdict_class(advice)
    verdict = advice.get("verdict")
    title = _VERDICTS[cls]
    lines = [f'<p class="title">{esc(title)}</p>']
    if verdict and str(verdict).lower().replace("_", " ") not in title.lower():
        lines.append(f"<p><strong>Verdict:</strong> {esc(verdict)}</p>")
    metric = advice.get("metric")
    parts = []
    if advice.get("network") is not None or _is_number(advice.get("network")):
        parts.append(f"network {esc(_fmt(advice.get('network')))}")
    if advice.get("baseline"):
        parts.append(f"{esc(advice['baseline'])} (best baseline) {esc(_fmt(advice.get('baseline_value')))}")
    if parts:
        lines.append(f"<p>{esc(metric) + ' on the test split: ' if metric else ''}{' vs '.join(parts)}.</p>")
    if _is_number(advice.get("difference")):
        ci = advice.get("ci95")
        ci_text = (f", 95% interval {esc(_fmt(ci[0]))} to {esc(_fmt(ci[1]))}"
                   if isinstance(ci, (list, tuple)) and len(ci) == 2 else "")
        diff = advice["difference"]
        how = ""
        if _is_number(advice.get("n_bootstrap")) and _is_number(advice.get("n")):
            how = f" (paired bootstrap: {esc(_fmt(advice['n_bootstrap']))} resamples of the {esc(_fmt(advice['n']))} test rows)"
        higher = advice.get("higher_is_better")
        direction = f"; {'higher' if higher else 'lower'} is better" if isinstance(higher, bool) else ""
        lines.append(f"<p>Difference (network − baseline): <strong>{'+' if diff > 0 else ''}{esc(_fmt(diff))}</strong>"
                     f"{ci_text}{how}{direction}.</p>")
    if advice.get("explanation"):
        lines.append(f"<p>{esc(advice['explanation'])}</p>")
    return f'<div class="verdict {cls}" role="note">{"".join(lines)}</div>'


def _section_performance(r: _Run) -> str:
    m = r.metrics
    test = m.get("test") or {}
    baselines = m.get("baselines") or {}
    out = []
    advice = m.get("advice")
    if isinstance(advice, dict) and advice:
        out.append(_verdict_box(advice))
    persistence = m.get("advice_persistence")
    if isinstance(persistence, dict) and persistence.get("explanation"):
        out.append(_p(f"Against the persistence baseline alone (checks.persistence): {esc(persistence['explanation'])}"))
    for hint in m.get("hints") or []:  # what the baselines suggest trying (dlw.models.designs.bend_hint)
        out.append(f'<div class="note"><p>{esc(hint)}</p></div>')
    if not test:
        out.append(_absent("No test-split metrics: the run was not measured on held-out data."))
    else:
        main = m.get("main_metric")
        names = [k for k in test if k != "n" and _is_number(test[k])]
        for b in baselines.values():
            names += [k for k in (b or {}) if k != "n" and k not in names and _is_number(b[k])]
        if main in names:
            names.remove(main)
            names.insert(0, main)
        models = [("network", test)] + [(name, b or {}) for name, b in baselines.items()]
        rows = [[label, *[vals.get(n) for n in names]] for label, vals in models]
        best_cells = {}
        for c, n in enumerate(names, start=1):
            column = [(i, row[c]) for i, row in enumerate(rows) if _is_number(row[c])]
            if column:
                best = (max if higher_is_better(n) else min)(v for _, v in column)
                for i, v in column:
                    if v == best:
                        best_cells[(i, c)] = "best"
        header = ["model"] + [f"{n} (main)" if n == main else n for n in names]
        out.append(_p(f"Measured once on the test split ({esc(_fmt(test.get('n')))} "
                      f"{'images' if r.images else 'rows'} the network never trained or tuned on), next to simple baselines "
                      "fitted on the same training rows. Best value per column is shaded; "
                      + ", ".join(f"{esc(n)}: {'higher' if higher_is_better(n) else 'lower'} is better" for n in names) + "."))
        out.append(_table(header, rows, numeric=set(range(1, len(header))), row_classes=["network"] + [""] * len(baselines),
                          cell_classes=best_cells) + _baseline_choices(m.get("baseline_fits")))
        if not baselines:
            out.append(_p("No baselines were measured for this run.", "absent"))
    threshold = r.problem.get("threshold")
    if _is_number(threshold):
        out.append(_p(f"Decision threshold: the second class is predicted when its probability exceeds {threshold:.3f} "
                      "(checks.threshold; chosen on the validation split when auto, or kept from the class-weighted training)."))
    elif isinstance(r.problem.get("class_offsets"), list):
        out.append(_p("Decision rule: the class-weighted network's own decisions, kept after its probabilities were calibrated "
                      "(the largest log-probability plus a per-class offset; problem.class_offsets in schema.json)."))
    class_warnings = [w for w in m.get("warnings") or [] if " predicts class " in w]
    if class_warnings:
        out.append("<ul class=\"warnings\">" + "".join(f"<li>{esc(w)}</li>" for w in class_warnings) + "</ul>")
    for png, caption in (("confusion_matrix.png", "Confusion matrix on the test split (rows: true class, columns: predicted)"),
                         ("residuals.png", "Residuals on the test split: prediction errors against the true value")):
        out.append(_figure(r.folder / png, caption))
    out.append(_calibration(m.get("calibration"), r.folder))
    return "".join(out)


def _baseline_choices(fits) -> str:
    """What each baseline chose on the validation split (metrics.json's ``baseline_fits``), as one paragraph; "" without them."""
    if not isinstance(fits, dict) or not fits:
        return ""
    described = []
    for name, chosen in fits.items():
        if not isinstance(chosen, dict):
            continue
        parts = [f"{key.replace('_', ' ')} {_fmt(value)}" for key, value in chosen.items() if key not in ("fit_seconds", "group_numbers")]
        if chosen.get("group_numbers"):
            parts.append(f"the group numbers read as a {chosen['group_numbers']}")
        parts.append(f"fitted in {_fmt(chosen.get('fit_seconds'))} s")
        described.append(f"{name}: {', '.join(parts)}")
    return _p("What each baseline chose on the validation split (cross-fitted: its first fold's choice; the readings of a group's "
              "number by out-of-fold loss): " + esc("; ".join(described)) + ".", "muted")


def _calibration(c, folder: Path) -> str:
    """Brier score and expected calibration error before and after temperature scaling, and the reliability diagram."""
    if not isinstance(c, dict) or not isinstance(c.get("before"), dict) or not isinstance(c.get("after"), dict):
        return ""
    rows = [[stage, c[stage].get("brier"), c[stage].get("ece")] for stage in ("before", "after")]
    text = ("<h3>Calibrated probabilities</h3>" + _p(
        f"{esc(c.get('method', 'temperature scaling'))}: temperature {esc(_fmt(c.get('temperature')))}; model.keras predicts the "
        "calibrated probabilities. Measured on the test split (lower is better for both): the Brier score, and the expected "
        "calibration error, the gap between how sure the network says it is and how often it is right."))
    text += _table(["probabilities", "Brier score", "expected calibration error"], rows, numeric={1, 2})
    return text + _figure(folder / "reliability.png", "Reliability diagram: share predicted right against confidence, before and after calibration")


def _section_sufficiency(r: _Run) -> str:
    s = r.sufficiency
    if not isinstance(s, dict) or not s:
        s = r.metrics.get("sufficiency") if isinstance(r.metrics.get("sufficiency"), dict) else None
    out = []
    if isinstance(s, dict) and s:
        metric = s.get("metric", "")
        if s.get("message"):
            out.append(f'<div class="note"><p><strong>{esc(s["message"])}</strong></p></div>')
        fractions = s.get("fractions") or []
        cols = [("train rows", s.get("train_rows") or []), (f"validation {metric}".strip(), s.get("validation") or []),
                (f"test {metric}".strip(), s.get("test") or [])]
        cols = [(name, vals) for name, vals in cols if vals]
        if fractions:
            rows = [[f"{_fmt(100 * f if _is_number(f) else f, 3)}%", *[vals[i] if i < len(vals) else None for _, vals in cols]]
                    for i, f in enumerate(fractions)]
            out.append(_p("The network was retrained on growing fractions of the training rows. A score still rising at "
                          "100% suggests more data would help; a flat curve suggests the data are not what limits it."))
            out.append(_table(["share of training rows", *[n for n, _ in cols]], rows, numeric=set(range(0, len(cols) + 1))))
        if s.get("trend"):
            out.append(_p(f"Trend: <strong>{esc(s['trend'])}</strong>."))
    else:
        out.append(_absent("Learning-curve check on data size: not run for this run."))
    out.append(_figure(r.folder / "sufficiency.png", "Score against the number of training rows"))
    warnings = r.metrics.get("warnings") or []
    if warnings:
        out.append("<h3>Warnings about the data</h3><ul class=\"warnings\">"
                   + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    elif "warnings" in r.metrics:
        out.append(_p("No small-data warnings.", "muted"))
    return "".join(out)


def _flat_pairs(data, prefix: str = "", limit: int = 30) -> list[tuple[str, object]]:
    """Scalars of a nested dict as (dotted key, value) pairs; short lists joined, long ones summarised."""
    pairs: list[tuple[str, object]] = []
    if not isinstance(data, dict):
        return pairs
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += _flat_pairs(value, prefix=f"{name}.", limit=limit)
        elif isinstance(value, list):
            if len(value) <= 8 and all(not isinstance(v, (dict, list)) for v in value):
                pairs.append((name, ", ".join(_fmt(v) for v in value)))
            else:
                pairs.append((name, f"{len(value)} values"))
        else:
            pairs.append((name, value))
        if len(pairs) >= limit:
            break
    return pairs[:limit]


def _section_unfamiliar(r: _Run) -> str:
    ood = r.metrics.get("ood")
    out = []
    if isinstance(ood, dict) and ood:
        rate = ood.get("rate")
        split = ood.get("split", "test")
        flagged = ood.get("test_flag_rate", ood.get("flag_rate"))
        pairs = []
        if ood.get("method"):
            pairs.append(("Method", ood["method"]))
        if _is_number(rate):
            pairs.append(("Target flag rate (how the threshold was set)", threshold_text(rate, ood.get("calibration_rows"))))
        if _is_number(flagged):
            count = (f" ({_fmt(ood['flagged'])} of {_fmt(ood['n'])})"
                     if _is_number(ood.get("flagged")) and _is_number(ood.get("n")) else "")
            pairs.append((f"Flagged on the {split} split", _pct(flagged) + count))
        shown = ("method", "rate", "split", "test_flag_rate", "flag_rate", "flagged", "n")
        pairs += [(k, v) for k, v in ood.items() if k not in shown and not isinstance(v, (dict, list))]
        out.append(_p("At prediction time, dlw flags inputs that look unlike the training data (the <code>ood</code> column "
                      "in predictions): the network's answer for them deserves less trust."))
        out.append(_kv_table(pairs))
        if _is_number(rate) and _is_number(flagged):
            if flagged > 2 * rate + 0.02:
                out.append(_p(f"The {esc(split)} split is flagged more often ({_pct(flagged)}) than the target rate ({_pct(rate)}): "
                              "part of it may differ from the training data.", "muted"))
            else:
                out.append(_p(f"The {esc(split)} split is flagged about as often as expected or less ({_pct(flagged)} vs "
                              f"{_pct(rate)}): it looks like the training data.", "muted"))
    details = _flat_pairs(r.ood) if isinstance(r.ood, dict) else []
    if isinstance(ood, dict):  # the method is shown above already
        details = [(k, v) for k, v in details if not (k == "method" and v == ood.get("method"))]
    if details:
        out.append("<h3>Details (ood.json)</h3>" + _kv_table(details))
    for png in sorted(r.folder.glob("ood*.png")):
        out.append(_figure(png, png.stem.replace("_", " ")))
    return "".join(out) or _absent("Unfamiliar-input detection: not run for this run.")


_NOT_CAUSES = ("These describe what the model relies on to make its predictions, not causes in the world: "
               "a column can matter to the model because it is correlated with the real cause, and changing it "
               "need not change the outcome.")


def _section_explanations(r: _Run) -> str:
    out = []
    frame = _read_csv(r.folder / "importance.csv")
    if frame is not None and "feature" in frame.columns:
        if "importance_mean" in frame.columns:
            frame = frame.sort_values("importance_mean", ascending=False)
        out.append(_p("Permutation importance: how much the test score drops when one column's values are shuffled "
                      "(mean and spread over repeats). Larger means the model leans on that column more."))
        shown = frame.head(20)
        cols = [c for c in ("feature", "importance_mean", "importance_std") if c in shown.columns]
        rows = [[_cell(v) for v in row] for row in shown[cols].itertuples(index=False)]
        out.append(_table(cols, rows, numeric={i for i, c in enumerate(cols) if c != "feature"}))
        if len(frame) > 20:
            out.append(_p(f"(Top 20 of {len(frame)} columns.)", "muted"))
    out.append(_figure(r.folder / "importance.png", "Permutation importance per input column"))
    pictures = sorted((r.folder / "explain").glob("*.png"), key=_natural) if (r.folder / "explain").is_dir() else []
    if pictures:
        if all(p.stem.startswith("occlusion") for p in pictures):
            out.append(_p("Occlusion maps: each test image with the regions where covering a patch with grey lowers the "
                          "probability of the predicted class most: the parts of the image the answer depends on."))
        else:
            out.append(_p("Example test images with the regions the network's answer depends on most highlighted "
                          f"({len(pictures)} picture(s) from the <code>explain</code> folder)."))
        figures = [_figure(p, p.stem.replace("_", " ")) for p in pictures[:24]]
        out.append('<div class="gallery">' + "".join(figures) + "</div>")
        if len(pictures) > 24:
            out.append(_p(f"(24 of {len(pictures)} pictures shown; all are in the explain folder.)", "muted"))
    if not "".join(out):
        return _absent("Explanations: not available for this run.")
    out.append(f'<div class="note"><p>{esc(_NOT_CAUSES)}</p></div>')
    return "".join(out)


def _natural(path: Path) -> list:
    """Sort key: ``occlusion_2`` before ``occlusion_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _section_predictions(r: _Run) -> str:
    frame = _read_csv(r.folder / "test_predictions.csv")
    if frame is None:
        return _absent("Example predictions: not available for this run.")
    target = r.problem.get("target") or r.schema.get("target")
    # What the reader came for first (truth, prediction, probabilities, unfamiliar flag), then the inputs.
    first = [c for c in frame.columns if c in ("path", target, "prediction") or str(c).startswith("prob_") or c in ("ood", "ood_score")]
    first.sort(key=lambda c: 0 if c == "path" else 1 if c == target else 2 if c == "prediction" else 4 if c in ("ood", "ood_score") else 3)
    frame = frame[first + [c for c in frame.columns if c not in first]]
    shown = frame.head(10)
    columns = [str(c) for c in shown.columns]
    numeric = {i for i, c in enumerate(shown.columns) if pd.api.types.is_numeric_dtype(shown[c]) and shown[c].dtype != bool}
    short = {i for i, c in enumerate(columns) if c.startswith("prob_") or c == "ood_score"}  # 3 significant digits
    rows = [[_fmt(_cell(v), 3) if i in short and _is_number(_cell(v)) else _cell(v) for i, v in enumerate(row)]
            for row in shown.itertuples(index=False)]
    row_classes = []
    if target in shown.columns and "prediction" in shown.columns and r.task != "regression":
        row_classes = ["" if str(a) == str(b) else "miss" for a, b in zip(shown[target], shown["prediction"])]
    lead = (f"The first {len(shown)} of {len(frame)} test {'images' if r.images else 'rows'} with the network's prediction"
            + (f" next to the true <strong>{esc(target)}</strong>" if target in shown.columns else "")
            + (", the class probabilities" if any(c.startswith("prob_") for c in columns) else "")
            + (" and whether the input looked unfamiliar (<code>ood</code>)" if "ood" in columns else "") + ".")
    if any(row_classes):
        lead += " Wrong predictions are shaded."
    return _p(lead) + _table(columns, rows, numeric=numeric, row_classes=row_classes or None, cls="compact")


_BUILDERS = {
    "problem": _section_problem,
    "inputs": _section_inputs,
    "preparation": _section_preparation,
    "objective": _section_objective,
    "model": _section_model,
    "training": _section_training,
    "tuning": _section_tuning,
    "performance": _section_performance,
    "sufficiency": _section_sufficiency,
    "unfamiliar": _section_unfamiliar,
    "explanations": _section_explanations,
    "predictions": _section_predictions,
}


def _header(r: _Run) -> str:
    info = r.run
    meta = []
    if info.get("created"):
        meta.append(f"<span>run created {esc(info['created'])}</span>")
    source = (info.get("data") or {}).get("source")
    if source:
        meta.append(f"<span>data: {esc(source)}</span>")
    versions = []
    if info.get("dlw_version"):
        versions.append(f"dlw {esc(info['dlw_version'])}")
    if info.get("keras_version"):
        versions.append(f"Keras {esc(info['keras_version'])}")
    if info.get("backend"):
        versions.append(f"backend {esc(info['backend'])}")
    if info.get("python"):
        versions.append(f"Python {esc(info['python'])}")
    if versions:
        meta.append(f"<span>{', '.join(versions)}</span>")
    if _is_number(info.get("seconds")):
        meta.append(f"<span>{esc(_fmt(info['seconds'], 3))} s in all</span>")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    meta.append(f"<span>report written {esc(now)}</span>")
    toc = "".join(f'<li><a href="#{sid}">{esc(title.split(". ", 1)[1])}</a></li>' for sid, title in SECTIONS)
    return (f"<header><h1>dlw run: {esc(r.name)}</h1><p class=\"meta\">{''.join(meta)}</p></header>"
            f'<nav class="toc" aria-label="Contents"><strong>Contents</strong><ol>{toc}</ol></nav>')


def render_report(run_folder: Path) -> str:
    """The report's HTML for ``run_folder`` (a string; :func:`write_report` writes it)."""
    r = _Run(Path(run_folder))
    parts = [_header(r)]
    for sid, title in SECTIONS:
        try:
            body = _BUILDERS[sid](r)
        except Exception as error:  # one odd file must not cost the whole report
            body = _absent(f"Could not be shown: {type(error).__name__}: {error}")
        parts.append(f'<section id="{sid}"><h2>{esc(title)}</h2>{body}</section>')
    parts.append(f"<footer>Written by dlw from the files in the run folder <code>{esc(r.folder.name)}</code>. "
                 "This page is self-contained: it needs no network and no other file.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>dlw report: {esc(r.name)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def write_report(run_folder: Path, out: Path | None = None) -> Path:
    """Write the run's ``report.html`` (or ``out``; a folder gets ``report.html`` inside) and return its path."""
    run_folder = Path(run_folder)
    if not run_folder.is_dir():
        raise FileNotFoundError(f"{run_folder}: not a run folder")
    target = Path(out) if out is not None else run_folder / "report.html"
    if target.is_dir():
        target = target / "report.html"
    text = render_report(run_folder)
    write_atomic(target, text)
    return target
