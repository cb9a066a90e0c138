"""Memory across trials: resident memory after 5 and after 40 trials of one `dlw tune` process.

    python bench/tune_memory.py [--trials 40] [--epochs 30]

Runs dlw's own trial objective (build, train with pruning, free the model, its compiled functions
and the Keras session) in one Optuna study on SQLite, and reads the process's RSS (psutil) after
each trial. The bar: RSS after 40 trials <= 1.2x RSS after 5.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data", default="penguins")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="dlw-bench-keras-"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    import optuna
    import psutil

    from dlw._backend import choose_backend
    from dlw.spec import load_spec
    from dlw.console import QUIET
    from dlw.tune import Objective, make_pruner, make_sampler, make_storage, search_space

    config = load_spec(args.data, overrides=[f"train.epochs={args.epochs}", f"tune.trials={args.trials}"])
    choose_backend(config.images)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = tempfile.mkdtemp(prefix="dlw-bench-mem-")
    study = optuna.create_study(storage=make_storage(f"sqlite:///{folder}/m.db"), sampler=make_sampler(config), pruner=make_pruner(config))
    process = psutil.Process()
    rss: dict[int, float] = {}

    def record(study, trial) -> None:
        done = len(study.trials)
        rss[done] = process.memory_info().rss / 2**20
        if done in (1, 5, 10, 20, 30, 40) or done % 10 == 0:
            print(f"after {done:3d} trials: RSS {rss[done]:7.1f} MiB", flush=True)

    start = time.perf_counter()
    study.optimize(Objective(config, search_space(config), QUIET), n_trials=args.trials, callbacks=[record])
    ratio = rss[args.trials] / rss[5]
    print(f"{args.trials} trials in {time.perf_counter() - start:.0f} s; RSS after {args.trials} / after 5: {ratio:.3f} (bar <= 1.2): {'ok' if ratio <= 1.2 else 'FAILED'}")


if __name__ == "__main__":
    main()
