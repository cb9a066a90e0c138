"""The run report (``dlw.report``): one self-contained HTML file with a section per workflow step.

A real penguins run is trained once (5 epochs); a copy of its folder gets small,
realistic versions of the files other steps add (advice, sufficiency, importance,
predictions, unfamiliar-input detection, tuning), so every section shows content.
An image-run variant is built from that copy by rewriting its schema and model config.
The browser test renders the report in headless Chromium (skipped only when no
Chromium binary is installed).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import signal
import subprocess
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlw.report import SECTIONS, render_report, write_report

SECTION_IDS = [sid for sid, _ in SECTIONS]
EVIL = "<script>alert('x')</script>"
EVIL_CLASS = '<b onmouseover="x">Gentoo&co</b>'
METHOD = "class-conditional Mahalanobis distance with a shared Ledoit-Wolf covariance, per block of features"


# --- building run folders -------------------------------------------------------


def _png(path: Path, title: str, kind: str = "line") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=60)
    if kind == "bar":
        ax.barh(["a", "b", "c"], [0.3, 0.1, 0.05])
    elif kind == "image":
        ax.imshow(np.random.default_rng(0).random((8, 8)), cmap="magma")
        ax.axis("off")
    else:
        ax.plot([0.25, 0.5, 1.0], [0.8, 0.9, 0.95], marker="o")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _update_json(path: Path, **changes) -> dict:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))
    return data


LATER_FILES = ("sufficiency.json", "sufficiency.png", "importance.csv", "importance.png", "test_predictions.csv", "ood.json",
               "ood.npz", "tuning.csv", "tuning.json", "report.html")
LATER_METRICS = ("advice", "ood", "warnings", "sufficiency", "explanations")


def strip_later_steps(folder: Path) -> None:
    """Remove what steps beyond today's basic run write, so a copied run folder is the same whatever the code writes."""
    for path in [folder / name for name in LATER_FILES] + list(folder.glob("tuning_*.png")):
        path.unlink(missing_ok=True)
    shutil.rmtree(folder / "explain", ignore_errors=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k not in LATER_METRICS}))


def add_step_files(folder: Path) -> None:
    """Add the files the later steps write (as their authors describe them) to a copied tabular run folder."""
    metrics = json.loads((folder / "metrics.json").read_text())
    main = metrics["main_metric"]
    net = metrics["test"][main]
    best_name, best = max(metrics["baselines"].items(), key=lambda kv: kv[1][main])
    _update_json(
        folder / "metrics.json",
        advice={  # as dlw.advice.advise writes it
            "baseline": best_name,
            "metric": main,
            "higher_is_better": True,
            "network": net,
            "baseline_value": best[main],
            "difference": net - best[main],
            "ci95": [net - best[main] - 0.04, net - best[main] + 0.04],
            "n_bootstrap": 2000,
            "n": metrics["test"]["n"],
            "outcome": "no_clear_difference",
            "verdict": f"no clear difference: prefer the simpler {best_name}",
            "explanation": f"On {metrics['test']['n']} held-out rows the network's {main} is {net:.3f} and {best_name}'s is "
            f"{best[main]:.3f}; these rows cannot tell them apart, and the simpler {best_name} is the one to prefer.",
        },
        ood={"rate": 0.05, "split": "test", "flag_rate": 0.058, "flagged": 4, "n": 69, "method": "Mahalanobis"},
        warnings=["small data: 3 of 3 classes have fewer than 50 training rows (Chinstrap 41, Gentoo 74); "
                  "a network is likely to overfit: trust the comparison with the baselines"],
    )
    (folder / "sufficiency.json").write_text(
        json.dumps(
            {
                "metric": main,
                "fractions": [0.25, 0.5, 1.0],
                "train_rows": [51, 103, 206],
                "validation": [0.91, 0.96, 0.97],
                "test": [0.9, 0.95, 0.97],
                "trend": "flat",
                "message": "flat: accuracy went from 0.96 to 0.97 on the validation split when the training data doubled "
                "(103 -> 206), within the noise (0.021): more data of the same kind is unlikely to help much",
            }
        )
    )
    _png(folder / "sufficiency.png", "sufficiency")
    schema = json.loads((folder / "schema.json").read_text())
    names = [f["name"] for f in schema["features"]]
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {"feature": names, "importance_mean": rng.random(len(names)).round(4), "importance_std": (rng.random(len(names)) / 20).round(4)}
    ).to_csv(folder / "importance.csv", index=False)
    _png(folder / "importance.png", "importance", kind="bar")
    classes = schema["problem"]["classes"]
    probs = rng.dirichlet(np.ones(len(classes)), size=12)
    frame = pd.DataFrame({name: rng.normal(size=12).round(2) for name in names[:3]})
    frame[schema["target"]] = rng.choice(classes, 12)
    frame["prediction"] = [classes[i] for i in probs.argmax(axis=1)]
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = probs[:, i].round(4)
    frame["ood"] = rng.random(12) < 0.1
    frame["ood_score"] = rng.random(12).round(3)
    frame.to_csv(folder / "test_predictions.csv", index=False)
    (folder / "ood.json").write_text(  # as dlw.ood.OODDetector.save writes it
        json.dumps({"method": METHOD, "rate": 0.05, "threshold": 1.83, "blocks": ["penultimate", "inputs"],
                    "dims": {"penultimate": 32, "inputs": 18}, "scale": {"penultimate": 2.41, "inputs": 2.7},
                    "scaling": {"penultimate": "shared", "inputs": "per_dimension"}, "n_classes": 3}, indent=2)
    )
    pd.DataFrame(
        {
            "trial": range(1, 8),
            "learning_rate": [0.001, 0.003, 0.01, 0.0003, 0.001, 0.003, 0.01],
            "hidden_layers": ["[64, 32]", "[32]", "[128, 64]", "[64]", "[32, 16]", "[64, 32]", "[16]"],
            "val_loss": [0.09, 0.05, 0.07, 0.2, 0.11, 0.04, 0.3],
        }
    ).to_csv(folder / "tuning.csv", index=False)
    _png(folder / "tuning_history.png", "tuning")


def make_evil(folder: Path) -> None:
    """Put HTML in user-controlled strings: a column name, a class name, an excluded column, a prediction column."""
    schema = json.loads((folder / "schema.json").read_text())
    schema["features"][0]["name"] = EVIL
    schema["features"][0]["vocabulary"] = [EVIL_CLASS, "Dream"]
    schema["problem"]["classes"][-1] = EVIL_CLASS
    schema["excluded"] = {EVIL: "an identifier: a different value on every row"}
    (folder / "schema.json").write_text(json.dumps(schema))
    frame = pd.read_csv(folder / "test_predictions.csv")
    frame.insert(0, EVIL, 1.0)
    frame["prediction"] = EVIL_CLASS
    frame.to_csv(folder / "test_predictions.csv", index=False)
    imp = pd.read_csv(folder / "importance.csv")
    imp.loc[0, "feature"] = EVIL
    imp.to_csv(folder / "importance.csv", index=False)


def _cnn_model_zip(path: Path) -> None:
    """A ``model.keras`` whose config.json lists a small CNN (as Keras writes it), without Keras."""

    def layer(cls, name, **cfg):
        return {"module": "keras.layers", "class_name": cls, "config": {"name": name, **cfg}, "name": name, "inbound_nodes": []}

    layers = [
        layer("InputLayer", "image", batch_shape=[None, 8, 8, 1], dtype="uint8"),
        layer("Rescaling", "rescale", scale=1 / 255, offset=0.0),
        layer("Conv2D", "conv_1", filters=16, kernel_size=[3, 3], activation="linear"),
        layer("BatchNormalization", "bn_1"),
        layer("Activation", "relu_1", activation="relu"),
        layer("MaxPooling2D", "pool_1", pool_size=[2, 2]),
        layer("GlobalAveragePooling2D", "features"),
        layer("Dense", "dense_1", units=32, activation="relu"),
        layer("Dropout", "dropout_1", rate=0.3),
        layer("Dense", "output", units=3, activation="softmax"),
    ]
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "dlw_cnn", "layers": layers}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))


def make_image_run(folder: Path, nested: bool = False) -> None:
    """Turn a copied (enriched) tabular run folder into what an image run writes (``dlw.imaging.ImageSchema``).

    ``nested``: size and channels under ``"image"`` instead of at the top level.
    """
    classes = ["circle", "square", EVIL_CLASS]
    schema = json.loads((folder / "schema.json").read_text())
    for key in ("features", "excluded", "numeric_inputs", "fitted"):
        schema.pop(key, None)
    image = {"size": [8, 8], "channels": 1}
    schema.update(
        {
            "inputs": "images",
            "target": "label",
            **({"image": image} if nested else {**image, "source_kind": "folder", "image_column": None}),
            "class_counts": {"circle": 40, "square": 35, EVIL_CLASS: 25},
        }
    )
    schema["problem"].update({"target": "label", "classes": classes, "reason": "3 classes (one folder per class)"})
    schema["preparation"] = {"rows": 100, "dropped_missing_target": 0, "notes": ["2 unreadable files skipped: broken.png, empty.jpg"]}
    (folder / "schema.json").write_text(json.dumps(schema))
    _update_json(folder / "splits.json", sizes={"train": 60, "validation": 20, "test": 20})
    _cnn_model_zip(folder / "model.keras")
    for name in ("importance.csv", "importance.png"):
        (folder / name).unlink()
    for i in (1, 2, 10):  # sorted as people count: 1, 2, 10
        _png(folder / "explain" / f"occlusion_{i}.png", f"predicted {classes[i % 3]} (0.9{i}); true {classes[i % 3]}", kind="image")
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=20)
    frame = pd.DataFrame({"path": [f"images/{classes[i % 3]}/img_{i:03d}.png" for i in range(20)],
                          "label": [classes[i % 3] for i in range(20)],
                          "prediction": [classes[j] for j in probs.argmax(axis=1)]})
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = probs[:, i].round(4)
    frame["ood"] = False
    frame["ood_score"] = rng.random(20).round(3)
    frame.to_csv(folder / "test_predictions.csv", index=False)


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory) -> Path:
    """A real penguins run (5 epochs); read-only for tests: copy it before changing files."""
    from dlw import Workflow

    out = tmp_path_factory.mktemp("report") / "penguins"
    Workflow.from_config("penguins", overrides=["train.epochs=5"], quiet=True).train(out=out)
    return out


@pytest.fixture(scope="module")
def minimal_run(penguins_run, tmp_path_factory) -> Path:
    """The penguins run with only the files every run had before the later steps (no advice, tuning, ...)."""
    folder = tmp_path_factory.mktemp("report_minimal") / "penguins"
    shutil.copytree(penguins_run, folder)
    strip_later_steps(folder)
    return folder


@pytest.fixture(scope="module")
def full_run(minimal_run, tmp_path_factory) -> Path:
    """The penguins run plus every later step's files (known contents), with HTML in user strings; report written."""
    folder = tmp_path_factory.mktemp("report_full") / "penguins"
    shutil.copytree(minimal_run, folder)
    add_step_files(folder)
    make_evil(folder)
    write_report(folder)
    return folder


# --- reading the HTML -------------------------------------------------------------


class _Collector(HTMLParser):
    """Sections (id + h2 text) in order, every src/href attribute and every img src."""

    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.h2: list[str] = []
        self.refs: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href", "srcset", "action", "data", "poster"):
            if attrs.get(key) is not None:
                self.refs.append(attrs[key])
        if tag == "img":
            self.images.append(attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def parse(text: str) -> _Collector:
    collector = _Collector()
    collector.feed(text)
    return collector


def section_text(text: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', text, flags=re.S)
    assert match, f"section {sid} missing"
    return match.group(1)


# --- tests: the HTML itself ----------------------------------------------------------


def assert_self_contained(text: str) -> None:
    doc = parse(text)
    assert doc.scripts == 0
    assert "http://" not in text and "https://" not in text
    assert 'src="file' not in text and "url(" not in text and "@import" not in text
    assert all(ref.startswith("#") or ref.startswith("data:image/png;base64,") for ref in doc.refs), doc.refs
    for src in doc.images:
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_on_the_run_folder_as_dlw_writes_it(penguins_run, tmp_path):
    """Whatever files today's code writes into a run folder, every section renders (none fails) and stays self-contained."""
    folder = tmp_path / "run"
    shutil.copytree(penguins_run, folder)
    text = write_report(folder).read_text(encoding="utf-8")
    doc = parse(text)
    assert doc.sections == SECTION_IDS and doc.h2 == [title for _, title in SECTIONS]
    assert "Could not be shown" not in text
    assert_self_contained(text)
    assert len(doc.images) >= 2  # learning curves, confusion matrix
    assert "What each baseline chose on the validation split" in text and "min samples leaf" in text  # the baselines' strength, shown


def test_minimal_run_report_has_every_section_and_says_what_is_absent(minimal_run, tmp_path):
    out = write_report(minimal_run, out=tmp_path / "plain.html")
    assert out == tmp_path / "plain.html" and not (minimal_run / "report.html").exists()
    text = out.read_text(encoding="utf-8")
    doc = parse(text)
    assert doc.sections == SECTION_IDS
    assert doc.h2 == [title for _, title in SECTIONS]
    assert "not run for this run" in section_text(text, "tuning").lower()
    for sid in ("sufficiency", "unfamiliar", "explanations", "predictions"):
        body = section_text(text, sid).lower()
        assert "not run for this run" in body or "not available" in body, sid
    # The files every run has today show up.
    assert "Adelie" in section_text(text, "problem")
    assert "bill_length_mm" in section_text(text, "inputs")
    assert "stratified random" in section_text(text, "preparation")
    assert "filled with the training median" in section_text(text, "preparation")
    assert "sparse_categorical_crossentropy" in section_text(text, "objective")
    model = section_text(text, "model")
    first_units = __import__("dlw").load(minimal_run).config.model.hidden_units[0]  # 128 for tabm, the default since issue 11
    assert "hidden_1" in model and f"{first_units} units" in model and "Dense" in model
    assert len(parse(section_text(text, "training")).images) == 1  # learning curves
    performance = section_text(text, "performance")
    assert "hist_gradient_boosting" in performance and "accuracy (main)" in performance
    assert len(parse(performance).images) == 2  # confusion matrix, reliability diagram
    assert "Calibrated probabilities" in performance and "expected calibration error" in performance


def test_full_report_sections_in_order_self_contained_and_images_are_png(full_run):
    path = full_run / "report.html"
    text = path.read_text(encoding="utf-8")
    doc = parse(text)
    assert doc.sections == SECTION_IDS
    assert doc.h2 == [title for _, title in SECTIONS]
    assert "Could not be shown" not in text
    # Self-contained: nothing fetched from the network or the disk; every image a PNG data URI.
    assert_self_contained(text)
    # learning curves, confusion matrix, reliability diagram, tuning, sufficiency, importance
    assert len(doc.images) == 6
    # Each added file shows real content.
    assert "7</strong> trial(s)" in section_text(text, "tuning") and "0.04" in section_text(text, "tuning")
    performance = section_text(text, "performance")
    assert 'class="verdict unclear"' in performance and "cannot tell them apart" in performance
    assert "2000 resamples of the 69 test rows" in performance
    assert performance.index("verdict") < performance.index("<table")
    sufficiency = section_text(text, "sufficiency")
    assert "unlikely to help much" in sufficiency and "fewer than 50 training rows" in sufficiency
    unfamiliar = section_text(text, "unfamiliar")
    assert "5.0%" in unfamiliar and "5.8% (4 of 69)" in unfamiliar and METHOD in unfamiliar and "scaling.penultimate" in unfamiliar
    explanations = section_text(text, "explanations")
    assert "importance_mean" in explanations and "not causes in the world" in explanations
    predictions = section_text(text, "predictions")
    assert predictions.count("<tr") == 11 and "prob_Adelie" in predictions and "ood_score" in predictions
    assert "dlw 0.1.0" in text and "Keras 3." in text and "backend " in text


def test_user_strings_are_escaped(full_run):
    text = (full_run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in text and "<b onmouseover" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&lt;b onmouseover=&quot;x&quot;&gt;Gentoo&amp;co&lt;/b&gt;" in text
    for sid in ("problem", "inputs", "preparation", "explanations", "predictions"):
        assert "&lt;script&gt;" in section_text(text, sid) or "&lt;b onmouseover" in section_text(text, sid), sid


@pytest.mark.parametrize(
    ("outcome", "verdict", "difference", "ci", "expected"),
    [
        ("network_better", "the network is better", 0.1, [0.05, 0.15], "good"),
        ("baseline_better", "the baseline is better", -0.1, [-0.15, -0.05], "bad"),
        ("no_clear_difference", "no clear difference: prefer the simpler linear", 0.01, [-0.03, 0.05], "unclear"),
        (None, "", 0.1, [0.05, 0.15], "good"),  # a run from before the outcome code: decided from the interval
        ("no_clear_difference", "the network is better", 0.1, [0.05, 0.15], "unclear"),  # the code decides, not the words
    ],
)
def test_verdict_colour(full_run, tmp_path, outcome, verdict, difference, ci, expected):
    folder = tmp_path / "run"
    shutil.copytree(full_run, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["advice"].update(outcome=outcome, verdict=verdict, difference=difference, ci95=ci)
    if outcome is None:
        del metrics["advice"]["outcome"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert f'class="verdict {expected}"' in render_report(folder)


@pytest.mark.parametrize("nested", [False, True], ids=["top-level-size", "nested-image-size"])
def test_image_run_report(full_run, tmp_path, nested):
    folder = tmp_path / "images_run"
    shutil.copytree(full_run, folder)
    (folder / "report.html").unlink()
    make_image_run(folder, nested=nested)
    out = write_report(folder)
    assert out == folder / "report.html"
    text = out.read_text(encoding="utf-8")
    doc = parse(text)
    assert doc.sections == SECTION_IDS
    inputs = section_text(text, "inputs")
    assert "8×8 pixels" in inputs and "1 (greyscale)" in inputs and "circle" in inputs and "40" in inputs
    assert "&lt;b onmouseover" in inputs and "<b onmouseover" not in text
    model = section_text(text, "model")
    assert "conv_1" in model and "16 filters" in model and "kernel 3×3" in model
    explanations = section_text(text, "explanations")
    assert len(parse(explanations).images) == 3 and "not causes in the world" in explanations and "Occlusion" in explanations
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", explanations)
    assert captions == ["occlusion 1", "occlusion 2", "occlusion 10"]
    assert "images/circle/img_000.png" in section_text(text, "predictions")
    assert "Could not be shown" not in text
    assert_self_contained(text)


def test_regression_run_report(regression_run, tmp_path):
    run, _ = regression_run
    folder = tmp_path / "regression"
    shutil.copytree(run.path, folder)
    text = write_report(folder).read_text(encoding="utf-8")
    assert parse(text).sections == SECTION_IDS and "Could not be shown" not in text
    assert_self_contained(text)
    assert "Predict the number <strong>price</strong>" in section_text(text, "problem")
    performance = section_text(text, "performance")
    assert "rmse: lower is better" in performance and len(parse(performance).images) == 1  # residuals.png
    assert "house_id" in section_text(text, "preparation")  # excluded, with the reason


def test_missing_and_broken_files_do_not_stop_the_report(tmp_path):
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "metrics.json").write_text("{not json")
    (folder / "model.keras").write_bytes(b"not a zip")
    (folder / "tuning.csv").write_text("")
    text = write_report(folder).read_text(encoding="utf-8")
    assert parse(text).sections == SECTION_IDS
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nowhere")


def test_report_does_not_import_keras():
    code = (
        "import sys, dlw.report; assert 'keras' not in sys.modules, 'keras imported';"
        "assert not any(m.startswith(('tensorflow', 'jax')) for m in sys.modules)"
    )
    subprocess.run([os.sys.executable, "-c", code], check=True, timeout=60)


# --- tests: rendered in a real browser ----------------------------------------------


def find_chromium() -> str | None:
    """A Chromium/Chrome binary: $DLW_CHROMIUM, else the usual names on PATH."""
    names = [os.environ.get("DLW_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"]
    for name in filter(None, names):
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(binary: str, profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Headless Chromium in its own process group, killed (group and all) if it hangs past ``timeout``."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"headless Chromium did not finish within {timeout:.0f} s: {' '.join(command)}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_report_renders_in_headless_chromium(full_run, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium binary found (install the 'chromium' package, or set DLW_CHROMIUM); CI installs it")
    from PIL import Image, ImageStat

    url = (full_run / "report.html").resolve().as_uri()
    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    doc = parse(dom.stdout)
    assert doc.sections == SECTION_IDS, dom.stderr[-2000:]
    assert doc.h2 == [title for _, title in SECTIONS]
    assert "<script" not in dom.stdout  # the escaped names stayed text in the live DOM

    shot = tmp_path / "report.png"
    result = run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        grey = image.convert("L")
        stat = ImageStat.Stat(grey)
        assert stat.stddev[0] > 10, f"screenshot looks blank (pixel std {stat.stddev[0]:.1f})"
        # The page column (max-width 60rem) is centred: the left margin is white, the text column is not.
        assert grey.crop((0, 0, 100, 4000)).getextrema()[0] > 240
        assert grey.crop((200, 0, 1080, 4000)).getextrema()[0] < 80
        # Not one solid colour per band: the first screen has both text and images.
        colours = image.convert("RGB").resize((128, 400)).getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50


def test_round_trip_base64_of_pngs_is_strict(full_run):
    """The data URIs are strict base64 (no line breaks or stray characters a browser may reject)."""
    for src in parse((full_run / "report.html").read_text()).images:
        payload = src.split(",", 1)[1]
        assert re.fullmatch(r"[A-Za-z0-9+/]+=*", payload)
        try:
            base64.b64decode(payload, validate=True)
        except binascii.Error as error:  # pragma: no cover - the assertion message
            pytest.fail(f"bad base64: {error}")
