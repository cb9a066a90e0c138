"""One baseline alone on real tables, as `dlw train` fits it: its test figures, what it chose, its fit time.

The baselines are half of every verdict, so a change to how one reads a table is measured
here on the development and held-out tables of ``bench/tables.py`` without training a network
(seconds per table instead of minutes). Run it at two commits and compare.

    python bench/baselines_alone.py                       # the linear baseline, every table of bench/tables.py
    python bench/baselines_alone.py --baseline hist_gradient_boosting --tables Boston MASS/fgl:type --seeds 42 0 1

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

from tables import HELD_OUT, TABLES, table_csv  # noqa: E402


def baseline_figures(path: Path, target: str, seed: int, baseline: str, *, most_probable: bool = False) -> dict:
    from dlw.baselines import fit_baselines
    from dlw.classes import baseline_decision
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.evaluate import score
    from dlw.spec import load_spec

    config = load_spec(str(path), target=target, overrides=[f"data.split.seed={seed}", f"train.seed={seed}"])
    prepared = prepare(config, QUIET)
    started = time.perf_counter()
    fitted = fit_baselines(prepared, seed)[baseline]  # cross-fitted where dlw train cross-fits
    seconds = time.perf_counter() - started
    rule = None if most_probable else baseline_decision(prepared.problem, prepared.targets["train"], config)
    test = score(prepared.problem, prepared.targets["test"], fitted.predict(prepared.inputs["test"]), rule)
    validation = score(prepared.problem, prepared.targets["validation"], fitted.predict(prepared.inputs["validation"]), rule)
    outputs = {}
    if prepared.problem.task == "regression" and len(prepared.targets["test"]) <= 5000:  # to judge the verdict offline
        outputs = {"test_target": prepared.targets["test"].tolist(), "test_output": fitted.predict(prepared.inputs["test"]).tolist()}
    return {**outputs, "test": test, "validation": validation, "train_rows": len(prepared.targets["train"]), "chosen": fitted.chosen, "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="*", default=[*TABLES, *HELD_OUT])
    parser.add_argument("--baseline", default="linear", choices=["linear", "hist_gradient_boosting"])
    parser.add_argument("--boosting-leaf", type=int, help="fix boosting's min_samples_leaf instead of choosing it (to study the choice)")
    parser.add_argument("--most-probable", action="store_true", help="decide classes by the most probable one (before stop 31), not as dlw does")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    args = parser.parse_args()
    if args.boosting_leaf:
        import dlw.baselines

        dlw.baselines.BOOSTING_LEAF_GRID = (args.boosting_leaf,)
    folder = Path(tempfile.mkdtemp(prefix="dlw-baselines-bench-"))
    for name in args.tables:
        path, target = table_csv(name, folder)
        for seed in args.seeds:
            figures = baseline_figures(path, target, seed, args.baseline, most_probable=args.most_probable)
            main_figures = {k: round(v, 5) for k, v in figures["test"].items() if k in ("rmse", "accuracy", "balanced_accuracy", "roc_auc", "log_loss")}
            print(f"{name:<16} seed {seed:<3} {main_figures}  chose {figures['chosen']}  {figures['seconds']:.1f} s", flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"table": name, "seed": seed, "baseline": args.baseline, **figures}) + "\n")


if __name__ == "__main__":
    main()
