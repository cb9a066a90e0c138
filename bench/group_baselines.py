"""The baselines on tables with a group's number: held to the network's reading, or each keeping its own better one.

Since stop 47 the network may read a group's number as a category (``data.group_numbers``), and until
stop 48 the baselines read it as the network did. Now each baseline fits both readings and keeps the one of
lower out-of-fold loss (``dlw.baselines.better_reading_baselines``). This runs ``dlw train`` at the defaults
(the network, and the baselines as they are now), then refits the baselines held to the network's reading
in the same process, on the same rows, and judges the network against both sets with the same verdict.

    python bench/group_baselines.py --tables datasets/ChickWeight:weight nlme/Oxboys:height --seeds 42 0 --json out.jsonl

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

from tables import append_json_line, file_stem, run_dlw, table_csv  # noqa: E402


def held_baselines(run_path: Path, seed: int) -> dict:
    """The baselines of the run at ``run_path`` refitted held to its network's reading, with the verdict against them.

    ``prepare`` with the run's schema gives that one reading alone: only ``dlw.groups`` pairs it with the other.
    """
    import dlw
    from dlw.advice import advise
    from dlw.baselines import fit_baselines
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.evaluate import score

    run = dlw.load(run_path)
    prepared = prepare(run.config, QUIET, schema=run.schema)
    prepared.problem, prepared.target_scaling = run.problem, run.target_scaling
    fitted = fit_baselines(prepared, seed)
    y = prepared.targets["test"]
    outputs = {name: f.predict(prepared.inputs["test"]) for name, f in fitted.items()}
    network = prepared.outputs(run.model, prepared.inputs["test"])
    main = run.metrics["main_metric"]
    advice = advise(prepared.problem.task, main, y, network, outputs, n_boot=run.config.checks.bootstrap, seed=seed)
    return {
        "held": {name: score(prepared.problem, y, out, None)[main] for name, out in outputs.items()},
        "held_outcome": advice["outcome"],
        "held_fit_s": round(sum(f.fit_seconds for f in fitted.values()), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", metavar="PACKAGE/ITEM:TARGET")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.tables:
            path, target = table_csv(name, folder)
            for seed in args.seeds:
                out = folder / f"{file_stem(name)}-{seed}"
                metrics, seconds = run_dlw(path, target, out, [f"data.split.seed={seed}", f"train.seed={seed}"])
                main_metric = metrics["main_metric"]
                row = {
                    "table": name, "seed": seed, "metric": main_metric, "network": metrics["test"][main_metric],
                    "own": {k: m[main_metric] for k, m in metrics["baselines"].items()}, "outcome": metrics["advice"]["outcome"],
                    "readings": {k: f.get("group_numbers") for k, f in metrics["baseline_fits"].items()},
                    "own_fit_s": round(sum(f["fit_seconds"] for f in metrics["baseline_fits"].values()), 2),
                    "wall_s": round(seconds, 1),
                    "notes": [n for n in json.loads((out / "schema.json").read_text())["preparation"]["notes"] if "read as a category" in n or "kept as a number" in n],
                    **held_baselines(out, seed),
                }
                print(json.dumps(row), flush=True)
                append_json_line(args.json, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
