"""Step 10, share the model (issue 13): MODEL_CARD.md, the one-file bundle, dlw compare, a Run in a notebook.

Two short penguins runs on a real CSV file (3 and 2 epochs), trained once for the module.
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_dlw
from dlw.bundle import MANIFEST, BundleVersionWarning, write_bundle
from dlw.errors import DlwError
from dlw.workflow import Workflow, load

EPOCHS = ["train.epochs=3"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A penguins CSV, two runs on it, a bundle of the first, and new rows to predict."""
    from palmerpenguins import load_penguins

    folder = tmp_path_factory.mktemp("share")
    frame = load_penguins()
    frame.to_csv(folder / "penguins.csv", index=False)
    frame.drop(columns=["species"]).sample(40, random_state=1).to_csv(folder / "new.csv", index=False)
    first = Workflow.from_config(str(folder / "penguins.csv"), target="species", overrides=EPOCHS, quiet=True).train(out=folder / "a")
    second = Workflow.from_config(
        str(folder / "penguins.csv"), target="species", overrides=["train.epochs=2", "model.ensemble=4"], quiet=True
    ).train(out=folder / "b", sufficiency=True)
    bundle = write_bundle(first.path, folder / "a.dlw.zip")
    return {"folder": folder, "a": first.path, "b": second.path, "bundle": bundle}


def card_parts(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def markdown_rows(body: str, first_cell: str) -> list[str]:
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells[1:]
    raise AssertionError(f"no table row {first_cell!r} in the card")


# --- MODEL_CARD.md --------------------------------------------------------------


def test_every_run_writes_a_card_whose_metrics_equal_metrics_json(shared):
    run = shared["a"]
    metrics = json.loads((run / "metrics.json").read_text())
    header, body = card_parts(run / "MODEL_CARD.md")
    assert header["library_name"] == "keras" and "dlw" in header["tags"] and "tabular-classification" in header["tags"]
    names = [k for k in metrics["test"] if k != "n"]
    assert header["metrics"] == names
    carded = {m["type"]: m["value"] for m in header["model-index"][0]["results"][0]["metrics"]}
    assert carded == {k: metrics["test"][k] for k in names}, "the front matter holds metrics.json's test metrics exactly"
    table_header = markdown_rows(body, "model")
    assert table_header == names
    assert markdown_rows(body, "network") == [f"{metrics['test'][k]:.4f}" for k in names]
    for baseline, values in metrics["baselines"].items():
        assert markdown_rows(body, f"baseline: {baseline}") == [f"{values[k]:.4f}" for k in names]
    advice = metrics["advice"]
    assert f"**Verdict: {advice['verdict']}.**" in body
    assert f"95% interval {advice['ci95'][0]:.4f} to {advice['ci95'][1]:.4f}" in body


def test_the_card_describes_the_data_model_checks_limits_and_versions_from_the_run_files(shared):
    run = shared["a"]
    manifest = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    _, body = card_parts(run / "MODEL_CARD.md")
    for section in ("## Intended use", "## Data", "## Task, model and training", "## Test metrics",
                    "## Unfamiliar inputs and data sufficiency", "## Limits", "## How to load and predict", "## Versions"):
        assert section in body
    assert manifest["data"]["sha256"] and f"`{manifest['data']['sha256']}`" in body, "the data's SHA-256 from run.json"
    assert markdown_rows(body, "rows") == [f"{manifest['data']['rows']:,}"]
    assert f"{metrics['ood']['flagged']} of {metrics['ood']['n']} test rows flagged" in body
    assert "data sufficiency: not run" in body, "this run did not measure it, and the card says so"
    assert f"{metrics['training']['parameters']:,} parameters" in body
    assert f"- Keras: {manifest['keras_version']}" in body and f"- dlw: {manifest['dlw_version']}" in body
    assert "not causes" in body, "explanations are not causes"
    if metrics["advice"]["outcome"] != "network_better":
        assert metrics["advice"]["baseline"] in body.split("## Limits", 1)[1].split("##", 1)[0]


def test_the_card_has_the_data_sufficiency_sentence_when_it_ran(shared):
    message = json.loads((shared["b"] / "metrics.json").read_text())["sufficiency"]["message"]
    _, body = card_parts(shared["b"] / "MODEL_CARD.md")
    assert f"- data sufficiency: {message}" in body


def test_dlw_card_regenerates_the_same_card_for_an_older_run(shared, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(shared["a"], older)
    (older / "MODEL_CARD.md").unlink()
    proc = run_dlw("card", older)
    assert proc.returncode == 0, proc.stderr
    assert (older / "MODEL_CARD.md").read_text() == (shared["a"] / "MODEL_CARD.md").read_text()
    missing = run_dlw("card", tmp_path / "nothing")
    assert missing.returncode == 2 and "not a dlw run folder" in missing.stderr and "Traceback" not in missing.stderr


# --- the one-file bundle ------------------------------------------------------------


def test_the_bundle_holds_what_prediction_needs_and_a_manifest_of_hashes(shared):
    import hashlib

    with zipfile.ZipFile(shared["bundle"]) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read(MANIFEST))
        assert names == {MANIFEST, "model.keras", "schema.json", "ood.json", "ood.npz", "MODEL_CARD.md", "metrics.json", "config.yaml", "run.json",
                         "splits.json"}, "what prediction needs (and the split's row numbers), no plots, no data"
        for name, entry in manifest["members"].items():
            data = archive.read(name)
            assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            assert data == (shared["a"] / name).read_bytes()
    assert set(manifest["members"]) == names - {MANIFEST}
    assert manifest["dlw_version"] == json.loads((shared["a"] / "run.json").read_text())["dlw_version"]
    assert manifest["keras_version"]


def test_the_bundle_predicts_exactly_what_its_run_folder_predicts(shared):
    new = pd.read_csv(shared["folder"] / "new.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BundleVersionWarning)  # same versions here: no warning
        from_bundle = load(shared["bundle"])
    pd.testing.assert_frame_equal(from_bundle.predict(new), load(shared["a"]).predict(new))
    assert from_bundle.metrics == load(shared["a"]).metrics
    assert load(shared["bundle"]).path == from_bundle.path, "the same bundle opened twice shares one private folder"


def test_dlw_predict_reads_a_bundle_like_a_run_folder(shared, tmp_path):
    new = shared["folder"] / "new.csv"
    proc = run_dlw("predict", shared["bundle"], new, "--output", tmp_path / "bundle.csv", "--quiet")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    load(shared["a"]).predict(pd.read_csv(new)).to_csv(tmp_path / "run.csv", index=False)
    assert (tmp_path / "bundle.csv").read_text() == (tmp_path / "run.csv").read_text()
    assert len(pd.read_csv(tmp_path / "bundle.csv")) == 40


def test_dlw_share_writes_a_bundle_and_never_overwrites_without_being_told(shared, tmp_path):
    out = tmp_path / "m.dlw.zip"
    first = run_dlw("share", shared["a"], "--output", out)
    assert first.returncode == 0, first.stderr
    assert zipfile.ZipFile(out).namelist()[0] == MANIFEST
    before = out.read_bytes()
    again = run_dlw("share", shared["a"], "--output", out)
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before
    assert run_dlw("share", shared["a"], "--output", out, "--overwrite").returncode == 0
    default = run_dlw("share", shared["a"], cwd=tmp_path)
    assert default.returncode == 0 and (tmp_path / "penguins.dlw.zip").is_file(), "named after the run's config name"
    not_a_run = run_dlw("share", tmp_path, "--output", tmp_path / "x.dlw.zip")
    assert not_a_run.returncode == 2 and "not a dlw run folder" in not_a_run.stderr


def rewritten(source: Path, target: Path, *, drop=(), replace=None, add=None, manifest=None) -> Path:
    """A copy of the bundle ``source`` with members dropped, replaced or added, and the manifest edited."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = old.read(info.filename)
            if info.filename == MANIFEST and manifest is not None:
                data = json.dumps(manifest(json.loads(data))).encode()
            new.writestr(info.filename, (replace or {}).get(info.filename, data))
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return target


@pytest.mark.parametrize(
    "change, member, words",
    [
        ({"drop": ["schema.json"]}, "schema.json", "is missing"),
        ({"replace": {"config.yaml": b"name: evil\n"}}, "config.yaml", "does not match its SHA-256"),
        ({"add": {"ood.json.bak": b"{}"}}, "ood.json.bak", "extra member"),
        ({"add": {"../escape.txt": b"x"}}, "../escape.txt", "absolute path or '..'"),
        ({"add": {"/etc/cron.d/x": b"x"}}, "/etc/cron.d/x", "absolute path or '..'"),
    ],
)
def test_a_tampered_bundle_is_a_one_line_error_naming_the_member(shared, tmp_path, change, member, words):
    bad = rewritten(shared["bundle"], tmp_path / "bad.dlw.zip", **change)
    with pytest.raises(DlwError, match=words) as caught:
        load(bad)
    assert repr(member) in str(caught.value)
    proc = run_dlw("predict", bad, shared["folder"] / "new.csv")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert repr(member) in lines[0] and words in lines[0]
    assert not (tmp_path.parent / "escape.txt").exists()


def test_a_member_the_manifest_does_not_list_is_refused_even_with_a_known_name(shared, tmp_path):
    def forget_ood(manifest):
        manifest["members"].pop("ood.npz")
        return manifest

    bad = rewritten(shared["bundle"], tmp_path / "bad.dlw.zip", manifest=forget_ood)
    with pytest.raises(DlwError, match=r"'ood.npz' is not in manifest.json"):
        load(bad)


def test_a_bundle_from_other_versions_loads_and_says_what_differs(shared, tmp_path):
    def older(manifest):
        return {**manifest, "dlw_version": "0.0.1", "keras_version": "3.0.0"}

    other = rewritten(shared["bundle"], tmp_path / "old.dlw.zip", manifest=older)
    with pytest.warns(BundleVersionWarning, match=r"dlw 0\.0\.1 wrote it, dlw .* reads it; Keras 3\.0\.0 wrote it"):
        run = load(other)
    assert len(run.predict(pd.read_csv(shared["folder"] / "new.csv"))) == 40
    proc = run_dlw("predict", other, shared["folder"] / "new.csv", "--output", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "dlw 0.0.1 wrote it" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bundle_never_runs_code_from_the_archive(shared, tmp_path):
    """A model.keras holding a Lambda layer (Python bytecode) with a matching manifest: refused, not run."""
    import hashlib

    import keras

    marker = tmp_path / "ran.txt"
    code = eval(f"lambda x: x * 2 + 0 * open({str(marker)!r}, 'w').write('ran')")  # the path a constant, not a closure
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(code)])
    model.save(tmp_path / "evil.keras")
    evil = (tmp_path / "evil.keras").read_bytes()
    marker.unlink()

    def matching(manifest):
        manifest["members"]["model.keras"] = {"sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}
        return manifest

    bad = rewritten(shared["bundle"], tmp_path / "evil.dlw.zip", replace={"model.keras": evil}, manifest=matching)
    with pytest.raises(DlwError, match="safe mode and will not run it"):  # a DlwError: one line and exit 2 in the CLI
        load(bad).model
    assert not marker.exists(), "the Lambda's code never ran"


def test_a_zip_that_is_not_a_bundle_is_refused(tmp_path):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("model.keras", b"not really")
    with pytest.raises(DlwError, match="no manifest.json"):
        load(plain)


# --- dlw compare and the notebook view -----------------------------------------------


def test_dlw_compare_prints_and_writes_the_runs_side_by_side(shared, tmp_path):
    out_csv, out_html = tmp_path / "compare.csv", tmp_path / "compare.html"
    proc = run_dlw("compare", shared["a"], shared["b"], "--output", out_csv, "--html", out_html)
    assert proc.returncode == 0, proc.stderr
    assert "dlw compare" in proc.stdout and "baseline" in proc.stdout
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for row, folder in zip(rows, (shared["a"], shared["b"])):
        metrics = json.loads((folder / "metrics.json").read_text())
        manifest = json.loads((folder / "run.json").read_text())
        assert row["metric"] == metrics["main_metric"]
        assert float(row["network"]) == metrics["test"][metrics["main_metric"]]
        assert row["best_baseline"] == metrics["advice"]["baseline"]
        assert float(row["baseline_value"]) == metrics["advice"]["baseline_value"]
        assert float(row["seconds"]) == manifest["seconds"] and int(row["rows"]) == manifest["data"]["rows"]
        assert row["verdict"] and row["model"] == "tabm"
    assert [r["train.epochs"] for r in rows] == ["3", "2"] and [r["model.ensemble"] for r in rows] == ["8", "4"]
    assert "data.source" not in rows[0], "keys that are the same in every run are left out"
    page = out_html.read_text()
    assert "<script" not in page.lower() and "http" not in page and page.count("<tr>") == 3
    again = run_dlw("compare", shared["a"], "--output", out_csv)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert run_dlw("compare", shared["a"], "--output", out_csv, "--overwrite").returncode == 0


def test_a_bundle_compares_like_its_run_folder(shared):
    from dlw.compare import compare_runs

    frame = compare_runs([shared["a"], shared["bundle"]])
    assert frame.iloc[0].equals(frame.iloc[1]) and list(frame.columns[-1:]) == ["created"], "same run, no differing keys"


def test_a_run_shows_as_a_summary_table_in_a_notebook(shared):
    run = load(shared["bundle"])
    page = run._repr_html_()
    metrics = run.metrics
    assert page.startswith("<table>")
    assert f"network {metrics['test'][metrics['main_metric']]:.4f} vs {metrics['advice']['baseline']} {metrics['advice']['baseline_value']:.4f}" in page
    assert "multiclass" in page and "penguins.csv" in page and "tabm" in page


@pytest.mark.slow
def test_an_image_run_bundle_predicts_what_its_folder_predicts_and_its_card_says_images(tmp_path):
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, rows in (("images", slice(0, 60)), ("new", slice(60, 70))):
        for label in (0, 1):
            for i, index in enumerate(np.flatnonzero(digits.target == label)[rows]):
                folder = tmp_path / split / (f"digit_{label}" if split == "images" else "")
                folder.mkdir(parents=True, exist_ok=True)
                pixels = np.round(digits.images[index] * 255 / 16).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{label}_{i:03d}.png")
    overrides = ["train.epochs=2", "model.conv_filters=[8]", "model.dense_layers=[16]"]
    run = Workflow.from_config(str(tmp_path / "images"), overrides=overrides, quiet=True).train(out=tmp_path / "run")
    bundle = write_bundle(run.path, tmp_path / "digits.dlw.zip")
    expected = load(run.path).predict(tmp_path / "new")
    pd.testing.assert_frame_equal(load(bundle).predict(tmp_path / "new"), expected)
    assert len(expected) == 20
    header, body = card_parts(run.path / "MODEL_CARD.md")
    assert header["pipeline_tag"] == "image-classification" and "| images | 120 |" in body and "8x8 pixels" in body
