"""Step 6, training: ``model.fit`` with early stopping (best weights restored) and a progress line.

The validation split drives early stopping; the test split is never seen here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dlw.config import TrainConfig
from dlw.console import Console
from dlw.errors import ConfigError


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: epoch, loss, metrics, val_*
    best_epoch: int  # 1-based epoch whose weights the model holds
    stopped_early: bool
    seconds: float

    def then(self, second: "TrainResult") -> "TrainResult":
        """This phase followed by another (fine-tuning): one history, epochs numbered on."""
        first = self.history.assign(phase=1)
        later = second.history.assign(phase=2, epoch=second.history["epoch"] + len(first))
        history = pd.concat([first, later], ignore_index=True)
        return TrainResult(history, len(first) + second.best_epoch, second.stopped_early, self.seconds + second.seconds)


def compile_model(model, objective, train: TrainConfig) -> None:
    import keras

    optimizer = keras.optimizers.get({"class_name": train.optimizer, "config": {"learning_rate": train.learning_rate}})
    model.compile(optimizer=optimizer, loss=objective.loss, metrics=objective.keras_metrics())


def fit(model, train_inputs, y_train, val_inputs, y_val, train: TrainConfig, console: Console, extra_callbacks=()) -> TrainResult:
    """Fit ``model`` (already compiled); return its per-epoch history and where it stopped.

    ``train_inputs`` are arrays with targets ``y_train``, or (``y_train`` None) a
    ``keras.utils.PyDataset`` of (x, y) batches with ``val_inputs`` another.
    """
    import keras

    callbacks: list = [_MonitorCheck(train), *extra_callbacks]
    stopper = None
    if train.early_stopping:
        stopper = keras.callbacks.EarlyStopping(
            monitor=train.early_stopping.monitor, patience=train.early_stopping.patience, restore_best_weights=True
        )
        callbacks.append(stopper)
    callbacks.append(_Progress(train.epochs, console))
    start = time.perf_counter()
    if y_train is None:  # a keras.utils.PyDataset yielding (x, y) batches; it shuffles itself
        fitted = model.fit(train_inputs, validation_data=val_inputs, epochs=train.epochs, verbose=0, callbacks=callbacks)
    else:
        fitted = model.fit(
            train_inputs,
            y_train,
            validation_data=(val_inputs, y_val),
            epochs=train.epochs,
            batch_size=train.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    seconds = time.perf_counter() - start
    history = pd.DataFrame(fitted.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    if stopper is not None and stopper.best_weights is not None:
        best_epoch = int(stopper.best_epoch) + 1
    else:
        best_epoch = len(history)
    stopped = stopper is not None and stopper.stopped_epoch > 0
    return TrainResult(history, best_epoch, stopped, seconds)


class _MonitorCheck:
    """Fails on the first epoch when early stopping watches a quantity that is never logged."""

    def __new__(cls, train: TrainConfig):
        import keras

        class MonitorCheck(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0 and train.early_stopping and train.early_stopping.monitor not in (logs or {}):
                    known = ", ".join(sorted(logs or {}))
                    raise ConfigError(
                        f"key 'train.early_stopping.monitor': {train.early_stopping.monitor!r} is not logged; choose one of {known}"
                    )

        return MonitorCheck()


class _Progress:
    """A live epoch bar on a terminal; a line every few epochs in run.log otherwise."""

    def __new__(cls, epochs: int, console: Console):
        import keras

        class Progress(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = None
                self.every = max(1, epochs // 10)
                if console.interactive:
                    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

                    self.bar = Bar(TextColumn("    epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True)
                    self.bar.start()
                    self.task = self.bar.add_task("", total=epochs)

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                order = sorted(logs, key=lambda k: (k.removeprefix("val_") != "loss", k.removeprefix("val_"), k.startswith("val_")))
                text = "  ".join(f"{k} {logs[k]:.4g}" for k in order)
                if self.bar is not None:
                    self.bar.update(self.task, advance=1, description=text)
                if (epoch + 1) % self.every == 0 or epoch == 0:
                    console.log_only(f"    epoch {epoch + 1}: {text}")

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.stop()

        return Progress()
