"""``MODEL_CARD.md``: a run described for whoever receives the model, in the Hugging Face model-card layout.

YAML front matter (``library_name``, ``tags``, ``metrics`` and a ``model-index`` holding the
test metrics exactly as ``metrics.json`` has them), then sections: intended use, the data,
task/model/training, test metrics next to the baselines with the verdict and its interval,
unfamiliar inputs and data sufficiency, limits, how to load and predict, versions. Every
figure is read from the run's own files (``metrics.json``, ``schema.json``, ``run.json``,
``config.yaml``, ``splits.json``, ``run.log``); nothing is typed in by hand, so
``dlw card RUN`` regenerates the same card for an older run.

>>> from dlw.card import write_card      # doctest: +SKIP
>>> write_card("runs/penguins")          # doctest: +SKIP
PosixPath('runs/penguins/MODEL_CARD.md')
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dlw.advice import BASELINE_BETTER, NO_CLEAR_DIFFERENCE
from dlw.crossfit import folds_text
from dlw.data.prepared import logs_target
from dlw.errors import DlwError
from dlw.objectives import higher_is_better
from dlw.ood import calibration_text
from dlw.runs import RunFiles, is_run_folder, write_atomic

CARD = "MODEL_CARD.md"
_PIPELINE = {
    ("table", "binary"): "tabular-classification",
    ("table", "multiclass"): "tabular-classification",
    ("table", "regression"): "tabular-regression",
    ("images", "binary"): "image-classification",
    ("images", "multiclass"): "image-classification",
    ("images", "regression"): "image-regression",
}
_INPUT_WORDS = {"table": ("rows", "a table row"), "images": ("images", "an image")}


def _num(value, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class CardFacts(RunFiles):
    """What the card reads from a run folder, read once."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        config_path = self.folder / "config.yaml"
        self.config = (yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None) or {}
        self.problem = self.schema.get("problem") or {}
        self.task = self.problem.get("task") or self.metrics.get("task")
        self.name = self.config.get("name") or self.folder.name
        self.rows_word, self.one_input = _INPUT_WORDS.get(self.input_kind, _INPUT_WORDS["table"])
        log = self.folder / "run.log"
        self.log = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []

    def logged(self, prefix: str) -> str | None:
        """The text after ``prefix`` on the first ``run.log`` line that has it (the console's own words)."""
        for line in self.log:
            if prefix in line:
                return line.split(prefix, 1)[1].strip()
        return None

    def metric_names(self) -> list[str]:
        return [k for k, v in (self.metrics.get("test") or {}).items() if k != "n" and isinstance(v, (int, float))]


def front_matter(f: CardFacts) -> str:
    """The YAML header: library, tags, metric names and the test metrics in ``model-index`` form."""
    pipeline = _PIPELINE.get((f.input_kind, f.task), "other")
    test = f.metrics.get("test") or {}
    header = {
        "library_name": "keras",
        "pipeline_tag": pipeline,
        "tags": ["dlw", "keras", pipeline, f.task or "unknown-task", f"model-{(f.config.get('model') or {}).get('kind', 'unknown')}"],
        "metrics": f.metric_names(),
        "model-index": [
            {
                "name": f.name,
                "results": [
                    {
                        "task": {"type": pipeline},
                        "dataset": {"name": str((f.config.get("data") or {}).get("source", "")), "type": "custom", "split": "test"},
                        "metrics": [{"type": name, "value": test[name]} for name in f.metric_names()],
                    }
                ],
            }
        ],
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def section_intended_use(f: CardFacts) -> str:
    target = f.problem.get("target") or f.schema.get("target")
    classes = [str(c) for c in f.problem.get("classes") or []]
    what = f"which of {len(classes)} classes ({', '.join(classes)}) {f.one_input} belongs to" if classes else f"a number for {f.one_input}"
    return (
        f"## Intended use\n\nPredicts **{target}** ({f.task}): {what}, for inputs shaped like the training data "
        f"described below. It was trained and measured by dlw on one data set; use it on data "
        "from the same source and population, and check the `ood` flag on each prediction. It is not meant for "
        "decisions about people without a human review, nor for data unlike its training data.\n"
    )


def section_data(f: CardFacts) -> str:
    data = f.manifest.get("data") or {}
    features = f.schema.get("features") or []
    lines = [
        "## Data\n",
        "| | |",
        "| --- | --- |",
        f"| source | `{data.get('source', (f.config.get('data') or {}).get('source'))}` |",
        f"| {f.rows_word} | {_num(data.get('rows'))} |",
    ]
    if features:
        lines.append(f"| input columns | {len(features)}: {', '.join(str(c.get('name')) + ' (' + str(c.get('kind')) + ')' for c in features)} |")
    if f.schema.get("size"):
        lines.append(f"| image size | {'x'.join(map(str, f.schema['size']))} pixels, {f.schema.get('channels')} channel(s) |")
    lines.append(f"| target | {f.problem.get('target') or f.schema.get('target')} |")
    sha = data.get("sha256")
    lines.append(f"| fingerprint (SHA-256) | {'`' + sha + '`' if sha else 'none: a built-in data set, fixed by the dlw version'} |")
    sizes = {k: len(v) for k, v in f.splits.items() if isinstance(v, list)}
    if sizes:
        # the method says what the test metrics mean: a split by group's test rows are groups the model never saw
        method = f"{f.splits['method']}: " if f.splits.get("method") else ""
        lines.append(f"| split | {method}{', '.join(f'{k} {n:,}' for k, n in sizes.items())} |")
    for excluded, why in (f.schema.get("excluded") or {}).items():
        lines.append(f"| left out | {excluded}: {why} |")
    return "\n".join(lines) + "\n"


def section_model(f: CardFacts) -> str:
    training = f.metrics.get("training") or {}
    objective = f.schema.get("objective") or {}
    model = f.logged("[5] model:") or f"{(f.config.get('model') or {}).get('kind')}, {_num(training.get('parameters'))} parameters"
    plan = training.get("plan") or {}
    lines = [
        "## Task, model and training\n",
        f"- task: {f.task} ({f.problem.get('reason', '')})",
        f"- model: {model}",
        f"- loss: {objective.get('loss')}" + (f" ({objective['why']})" if objective.get("why") else ""),
        f"- training: {', '.join(f'{k} {v}' for k, v in plan.items())}; ran {training.get('epochs_run')} epoch(s), "
        f"kept the weights of epoch {training.get('best_epoch')}" + (", stopped early" if training.get("stopped_early") else "")
        + f"; {_num(training.get('fit_seconds'), 1)} s",
    ]
    if training.get("folds"):
        lines.append(f"- cross-fitted: {folds_text(training['folds'])}")
    if f.schema.get("target_scaling"):
        logged = "log(1 + target) " if logs_target(f.schema["target_scaling"]) else ""
        lines.append(f"- the target was standardized {logged}for training (data.target_transform); predictions are in its own units")
    return "\n".join(lines) + "\n"



def section_metrics(f: CardFacts) -> str:
    test, baselines = f.metrics.get("test") or {}, f.metrics.get("baselines") or {}
    names = f.metric_names()
    if not names:
        return "## Test metrics\n\nNot available for this run.\n"
    lines = [f"## Test metrics\n\nOn the untouched test split ({_num(test.get('n'))} {f.rows_word}):\n"]
    lines += ["| model | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for label, values in [("network", test), *((f"baseline: {k}", v) for k, v in baselines.items())]:
        lines.append(f"| {label} | " + " | ".join(_num(values.get(n)) for n in names) + " |")
    advice = f.metrics.get("advice") or {}
    if advice:
        lo, hi = advice.get("ci95") or (None, None)
        better = "higher" if advice.get("higher_is_better", higher_is_better(advice.get("metric", ""))) else "lower"
        lines.append(
            f"\n**Verdict: {advice.get('verdict')}.** Network vs the best baseline ({advice.get('baseline')}) on "
            f"{advice.get('metric')}: {_num(advice.get('network'))} vs {_num(advice.get('baseline_value'))}, difference "
            f"{_num(advice.get('difference'))}, 95% interval {_num(lo)} to {_num(hi)} ({better} is better; paired "
            f"bootstrap, {_num(advice.get('n_bootstrap'))} resamples).\n\n{advice.get('explanation', '')}"
        )
    return "\n".join(lines) + "\n"


def section_checks(f: CardFacts) -> str:
    ood, sufficiency = f.metrics.get("ood") or {}, f.metrics.get("sufficiency") or f.sufficiency or {}
    lines = ["## Unfamiliar inputs and data sufficiency\n"]
    if ood.get("flag_rate") is not None:
        lines.append(
            f"- unfamiliar inputs: {_num(ood.get('flagged'))} of {_num(ood.get('n'))} test {f.rows_word} flagged "
            f"({ood['flag_rate']:.1%}); the detector is {calibration_text(ood.get('rate', 0), ood.get('calibration_rows'))} "
            "(the `ood` column of every prediction)"
        )
    else:
        lines.append("- unfamiliar inputs: not measured for this run")
    message = sufficiency.get("message")
    lines.append(f"- data sufficiency: {message}" if message else "- data sufficiency: not run (`dlw run` or `dlw sufficiency` runs it)")
    return "\n".join(lines) + "\n"


def applicable_limits(f: CardFacts) -> list[str]:
    """The honest "can't solve" cases that apply to this run, from its own measurements."""
    limits = []
    outcome = (f.metrics.get("advice") or {}).get("outcome")
    baseline = (f.metrics.get("advice") or {}).get("baseline")
    if outcome == BASELINE_BETTER:
        limits.append(f"The baseline ({baseline}) beat the network on the test split: prefer the baseline for this data.")
    elif outcome == NO_CLEAR_DIFFERENCE:
        limits.append(f"The network is not clearly better than the simpler {baseline}: the simpler model is the safer choice.")
    for warning in f.metrics.get("warnings") or []:
        limits.append(f"{warning[:1].upper()}{warning[1:]}.")
    explanations = (f.metrics.get("explanations") or {}).get("limits")
    if explanations:
        limits.append(f"Explanations: {explanations}.")
    limits.append(
        "Unfamiliar inputs: for inputs unlike the training data (flagged `ood`) the prediction is a guess, whatever its "
        "probability; the detector misses some and flags some familiar ones."
    )
    limits.append("It learnt associations in this data set, not causes, and it knows nothing about data from other sources or times.")
    return limits


def section_limits(f: CardFacts) -> str:
    return "## Limits\n\n" + "\n".join(f"- {limit}" for limit in applicable_limits(f)) + "\n"


def section_usage(f: CardFacts) -> str:
    return (
        "## How to load and predict\n\n"
        "```\npip install dlw\n"
        f"dlw predict {f.name}.dlw.zip new.csv --output predictions.csv   # or the run folder instead of the bundle\n```\n\n"
        "```python\nimport dlw\n"
        f'run = dlw.load("{f.name}.dlw.zip")   # checks every member\'s SHA-256; loads model.keras in safe mode\n'
        "predictions = run.predict(new_rows)   # prediction, prob_<class>, ood, ood_score\n```\n\n"
        "Inputs need the training's input columns (or images); unseen categories and missing values are handled as "
        "in training.\n"
    )


def section_versions(f: CardFacts) -> str:
    m = f.manifest
    pairs = [("dlw", m.get("dlw_version")), ("Keras", m.get("keras_version")), ("backend", m.get("backend")),
             ("Python", m.get("python")), ("created", m.get("created"))]
    return "## Versions\n\n" + "\n".join(f"- {k}: {v}" for k, v in pairs if v is not None) + "\n"


SECTIONS = (section_intended_use, section_data, section_model, section_metrics, section_checks, section_limits,
            section_usage, section_versions)


def model_card(run_folder) -> str:
    """The Markdown text of the run's model card, built from its files only.

    Example:
        >>> print(model_card("runs/penguins")[:3])   # doctest: +SKIP
        ---
    """
    folder = Path(run_folder)
    if not folder.is_dir() or not is_run_folder(folder):
        raise DlwError(f"{folder}: not a dlw run folder (no run.json); pass the folder `dlw train` wrote")
    facts = CardFacts(folder)
    body = "\n".join(section(facts) for section in SECTIONS)
    return f"{front_matter(facts)}\n# Model card: {facts.name}\n\n{body}"


def write_card(run_folder) -> Path:
    """Write (or rewrite) ``MODEL_CARD.md`` in the run folder; returns its path."""
    return write_atomic(Path(run_folder) / CARD, model_card(run_folder))
