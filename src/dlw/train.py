"""Step 6, training: the one fit path that every training in dlw takes.

``train_network`` seeds, sets the distribution over devices, builds the model, fits it
(with a second, fine-tuning phase for a pretrained backbone) and releases the devices;
the run, the data-sufficiency curve and every tuning trial train through it. ``fit`` is
``model.fit`` with early stopping (best weights restored) and a progress line. The
validation split drives early stopping; the test split is never seen here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from dlw.classes import balanced_offsets, class_weights
from dlw.config import TrainConfig
from dlw.console import QUIET, Console
from dlw.errors import ConfigError


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: epoch, loss, metrics, val_*
    best_epoch: int  # 1-based epoch whose weights the model holds
    stopped_early: bool
    seconds: float

    def then(self, second: "TrainResult", *, part: str = "phase") -> "TrainResult":
        """This part of the training followed by another: one history, epochs numbered on.

        ``part`` names the column that numbers the parts: ``phase`` (fine-tuning) or ``cycle``.
        """
        first = self.history if part in self.history else self.history.assign(**{part: 1})
        later = second.history.assign(**{part: int(first[part].max()) + 1}, epoch=second.history["epoch"] + len(first))
        history = pd.concat([first, later], ignore_index=True)
        return TrainResult(history, len(first) + second.best_epoch, second.stopped_early, self.seconds + second.seconds)

    def kept_validation_loss(self) -> float | None:
        """``val_loss`` at ``best_epoch``, the weights the model holds (the lowest, when early stopping watches it); None without one."""
        if "val_loss" not in self.history or pd.isna(self.history["val_loss"].iloc[self.best_epoch - 1]):
            return None
        return float(self.history["val_loss"].iloc[self.best_epoch - 1])


@dataclass
class Trained:
    model: object
    base: object  # the pretrained backbone inside ``model``, or None
    result: TrainResult
    distribution: dict
    train: TrainConfig  # the settings it trained with, ``auto`` planned
    calibration: dict | None = None  # what dlw.calibration.calibrate fitted, when it ran
    folds: list[dict] | None = None  # cross-fitted: each network's training (``fold_summary``)
    designs: list | None = None  # the configs of the designs it averages (``dlw.models.designs``), as asked


TARGET_STEPS = 3000
MAX_EPOCHS = 100
MIN_EPOCHS = 4
# 800,000 left a 32,000-row table at 24 epochs, short of its best (diamonds: rmse 559 against 545 at
# 47 epochs; bench/RESULTS.md); 2,000,000 lets 3,000 steps bind up to about 60,000 train rows.
MAX_ROWS_SEEN = 2_000_000
# train.cycles (auto: MAX_CYCLES for tabm on regression targets of up to MAX_CYCLED_ROWS train rows). A cycle
# that lowered the validation loss by CYCLE_GAIN earns another at CYCLE_RATE times its peak rate; measured
# in bench/RESULTS.md ("Stop 28"). Past MAX_CYCLED_ROWS the 336,776-row table's 150 s goal keeps one.
MAX_CYCLES = 3
MAX_CYCLED_ROWS = 100_000
CYCLE_RATE = 0.5
CYCLE_GAIN = 0.005


def train_network(
    config, prepared, objective, *, backbone=None, console: Console = QUIET, callbacks=(), before_fit=None, checkpoint_in=None, designs=None
) -> Trained:
    """Seed, distribute, build, fit, release: the one way dlw trains a network.

    ``before_fit(model, base, train)`` runs between building and fitting, with the train
    settings as planned (the run prints them there; tuning stops there when asked to).
    ``callbacks`` are added to every phase. With ``checkpoint_in`` (a run's partial folder)
    the state is saved there after every epoch (``dlw.resume``), and a killed training's saved
    state there is carried on from; a resume with another config or data is refused.
    Cross-fitted splits (``dlw.crossfit``) train one network per fold, network k seeded with
    ``train.seed + k``, into one model that averages them; ``designs`` (configs differing in
    ``model``, ``dlw.models.designs``; default ``[config]``) each train that many, seeded alike.
    """
    from dlw._backend import import_keras
    from dlw.distribute import apply_distribution, release

    import_keras()
    checkpoint = None
    if checkpoint_in is not None:
        from dlw.resume import TrainingCheckpoint

        checkpoint = TrainingCheckpoint.open(checkpoint_in, config)
    task = prepared.problem.task
    asked = designs or [config]
    designs = [plan_training(design, prepared.count("train"), task=task) for design in asked]
    distribution = apply_distribution(designs[0], console)  # before any variable is created
    folds = prepared.splits.fold_count if prepared.splits is not None else 1
    networks, summaries = [], []
    try:
        for d, design in enumerate(designs):
            for k, part in enumerate(prepared.fold_views()):
                member = design if k == 0 else seeded(design, design.train.seed + k)
                state = None if checkpoint is None else checkpoint.for_fold(k, folds, design=d)
                networks.append(
                    fit_network(
                        member, part, objective, backbone, console, distribution, callbacks=callbacks, before_fit=before_fit if len(networks) == 0 else None,
                        checkpoint=state, heading=network_heading(k, d, folds, len(designs), part) if folds > 1 else None,
                    )
                )
                summaries.append(fold_summary(k, networks[-1][2], embeddings=design_embeddings(design, part) if asked != [config] else None))
    finally:
        release(distribution)
    if len(networks) == 1:
        return Trained(*networks[0], distribution, designs[0].train, designs=asked)
    from dlw.crossfit import crossfit_model

    first = networks[0][2]
    result = TrainResult(first.history, first.best_epoch, first.stopped_early, sum(r.seconds for _, _, r in networks))
    model = crossfit_model([m for m, _, _ in networks], folds=folds)
    return Trained(model, None, result, distribution, designs[0].train, folds=summaries, designs=asked)


def network_heading(k: int, design: int, folds: int, designs: int, part) -> str:
    """The console line before cross-fitted network ``k`` of ``design`` (of ``designs``) trains on its fold view ``part``."""
    number = design * folds + k + 1
    return (
        f"network {number} of {folds * designs}: early-stopped on fold {k + 1} ({part.count('validation')} rows), "
        f"trained on the other {part.count('train')}"
    )


def design_embeddings(config, prepared) -> str:
    """How a design's numbers enter (``model.embeddings`` with ``auto`` decided for ``prepared``), for ``fold_summary``."""
    from dlw.models import along_a_date, tabm_embeddings

    return tabm_embeddings(config, prepared.count("train"), prepared.problem.task, dated=along_a_date(prepared))


def fit_network(config, prepared, objective, backbone, console: Console, distribution, *, callbacks=(), before_fit=None, checkpoint=None, heading=None):
    """One network seeded, built and fitted: ``(model, the pretrained backbone inside it or None, TrainResult)``; ``heading`` said first."""
    from dlw._backend import set_seed
    from dlw.distribute import for_devices
    from dlw.models import build_model

    set_seed(config.train.seed)
    model, base = build_model(config, prepared, objective, backbone)
    if before_fit is not None:
        before_fit(model, base, config.train)
    if heading:
        console.say(f"    {heading}")
    fit_prepared, fit_config = for_devices(prepared, config, distribution)  # batches split evenly over devices
    return model, base, fit_phases(model, base, fit_prepared, objective, fit_config, console, callbacks=callbacks, checkpoint=checkpoint)


def seeded(config, seed: int):
    """``config`` with ``train.seed`` set to ``seed`` (a cross-fitted network's own)."""
    other = config.model_copy(deep=True)
    other.train.seed = seed
    return other


def fold_summary(k: int, result: TrainResult, *, embeddings: str | None = None) -> dict:
    """What metrics.json says of cross-fitted network ``k``'s training (and, where the baselines chose the designs, its design's ``embeddings``)."""
    summary = {"fold": k + 1, **({"embeddings": embeddings} if embeddings else {}), "epochs_run": int(len(result.history)), "best_epoch": result.best_epoch, "stopped_early": result.stopped_early}
    kept = result.kept_validation_loss()
    if kept is not None:
        summary["best_val_loss"] = kept  # on its own fold: out of sample
    return {**summary, "fit_seconds": round(result.seconds, 3)}


def plan_training(config, n_train: int, *, task: str | None = None):
    """``config`` with the batch size, epoch budget and cycles left at ``auto`` chosen from the train rows (and ``task``).

    About 50 steps an epoch (batch 2^round(log2(n / 50)), between 32 and 512) and about
    3,000 steps in all, at most 100 epochs and at most 2,000,000 rows seen in all (so a
    200,000-row table trains 8 epochs), never under 4 epochs. Up to ``MAX_CYCLES`` cycles
    for tabm on a regression target of up to ``MAX_CYCLED_ROWS`` train rows, else one.
    Measured on the development tables (bench/tables.py): see bench/RESULTS.md.
    """
    train = config.train
    if "auto" not in (train.batch_size, train.epochs, train.cycles):
        return config
    n = max(int(n_train), 1)
    batch = train.batch_size if train.batch_size != "auto" else int(np.clip(2 ** round(math.log2(max(n / 50, 1))), 32, 512))
    steps = math.ceil(n / batch)
    epochs = train.epochs
    if epochs == "auto":
        epochs = max(MIN_EPOCHS, min(math.ceil(TARGET_STEPS / steps), MAX_EPOCHS, max(1, MAX_ROWS_SEEN // n)))
    cycles = train.cycles
    if cycles == "auto":
        cycles = MAX_CYCLES if config.model.kind == "tabm" and task == "regression" and n <= MAX_CYCLED_ROWS else 1
    planned = config.model_copy(deep=True)
    planned.train.batch_size, planned.train.epochs, planned.train.cycles = int(batch), int(epochs), int(cycles)
    return planned


def fit_phases(model, base, prepared, objective, config, console: Console, callbacks=(), checkpoint=None) -> TrainResult:
    """Compile and fit: the cycles ``train.cycles`` allows, then for a pretrained backbone with ``fine_tune`` a phase at a lower rate."""
    tc = config.train
    steps = math.ceil(prepared.count("train") / tc.batch_size)
    x, y = prepared.fit_data("train", config, shuffle=True, seed=tc.seed)
    vx, vy = prepared.fit_data("validation", config, shuffle=False, seed=tc.seed)
    weights = class_weights(prepared.problem, prepared.targets["train"], tc.class_weight)
    if weights:
        console.say("    class weights in the loss (train.class_weight): " + ", ".join(f"{prepared.problem.classes[i]!s} {w:.3g}" for i, w in weights.items()))
    elif balanced_offsets(prepared.problem, prepared.targets["train"], tc.class_weight):
        console.say("    imbalanced classes (train.class_weight: auto): an unweighted loss; each class's probability is divided by its share of the train rows to decide")

    def phase(number: int, settings: TrainConfig) -> TrainResult:
        fitted = compile_model(model, objective, settings, steps_per_epoch=steps, kind=config.model.kind)
        state = checkpoint.phase(number, settings.epochs) if checkpoint is not None else None
        return fit(fitted, x, y, vx, vy, settings, console, extra_callbacks=callbacks, class_weight=weights, checkpoint=state)

    result = phase(1, tc)
    how = "early stopping" if result.stopped_early else "the epoch limit"
    console.say(f"    stopped after {len(result.history)} epochs ({how}); weights of epoch {result.best_epoch} kept; {result.seconds:.1f} s")
    result = further_cycles(result, model, tc, phase, console)
    ft = config.model.fine_tune
    if base is None or ft is None:
        return result
    from dlw.models.pretrained import unfreeze_top

    trainable = unfreeze_top(base, ft.layers)
    console.say(f"    fine-tuning: {trainable} top layer(s) of the backbone unfrozen, lr {ft.learning_rate:g}, up to {ft.epochs} epochs")
    second = phase(tc.cycles + 1, tc.model_copy(update={"learning_rate": ft.learning_rate, "epochs": ft.epochs, "schedule": "constant"}))
    console.say(f"    fine-tuning stopped after {len(second.history)} epochs; weights of its epoch {second.best_epoch} kept; {second.seconds:.1f} s")
    return result.then(second)


def further_cycles(result: TrainResult, model, train: TrainConfig, phase, console: Console) -> TrainResult:
    """``result`` followed by the cycles after the first that ``train.cycles`` allows and the validation loss earns.

    Cycle k restarts the schedule from the best weights so far at ``CYCLE_RATE`` times cycle
    k - 1's peak rate; it runs only when cycle k - 1 lowered the kept weights' validation loss by
    ``CYCLE_GAIN`` (relative), and is undone (its time still counted) when it does not lower it.
    ``phase(number, settings)`` compiles and fits one cycle.
    """
    best, gain, rate = result.kept_validation_loss(), 1.0, train.learning_rate
    for number in range(2, train.cycles + 1):
        if best is None or gain < CYCLE_GAIN:
            break
        rate *= CYCLE_RATE
        kept = model.get_weights()
        cycle = phase(number, train.model_copy(update={"learning_rate": rate}))
        loss = cycle.kept_validation_loss()
        loss = math.inf if loss is None else loss
        if loss >= best:
            model.set_weights(kept)
            console.say(f"    cycle {number} (peak lr {rate:g}) did not lower the validation loss ({best:.4g}, then {loss:.4g}): undone; {cycle.seconds:.1f} s")
            return replace(result, seconds=result.seconds + cycle.seconds)
        gain, best = 1 - loss / best, loss
        result = result.then(cycle, part="cycle")
        console.say(f"    cycle {number} (peak lr {rate:g}): validation loss {loss:.4g} ({gain:.1%} lower); weights of epoch {result.best_epoch} kept; {cycle.seconds:.1f} s")
    return result


def compile_model(model, objective, train: TrainConfig, *, steps_per_epoch: int = 1, kind: str = "mlp"):
    """Compile what ``fit`` trains and return it: ``model`` itself, or for an ensemble its members' view."""
    from dlw.models import MODEL_KINDS

    loss, metrics = objective.loss, objective.keras_metrics()
    fitted = model
    if MODEL_KINDS[kind].ensemble:
        from dlw.models.tabm import training_view

        fitted, loss, metrics = training_view(model, loss, metrics)
    fitted.compile(optimizer=make_optimizer(train, steps_per_epoch * train.epochs), loss=loss, metrics=metrics)
    return fitted


def make_optimizer(train: TrainConfig, total_steps: int):
    """The Keras optimizer for ``train``: its learning rate constant, or warmed up then cosine-decayed over ``total_steps``.

    The cosine schedule warms up linearly over the first 5% of the steps (from 1% of the
    peak) and decays to 0 at the end of the epoch budget, as TabM and RealMLP train.
    """
    import keras

    settings = {"weight_decay": train.weight_decay} if train.optimizer == "adamw" else {}
    rate = train.learning_rate
    held = train.schedule == "cosine" and train.cycles > 1  # the cycles share one compiled step (dlw.schedules)
    if train.schedule == "cosine":
        from dlw.schedules import HeldPeakCosineDecay

        warmup = max(1, int(0.05 * total_steps))
        schedule = HeldPeakCosineDecay if held else keras.optimizers.schedules.CosineDecay
        rate = schedule(
            initial_learning_rate=train.learning_rate * 0.01, decay_steps=max(1, total_steps - warmup), alpha=0.0,
            warmup_target=train.learning_rate, warmup_steps=warmup,
        )
    optimizer = keras.optimizers.get({"class_name": train.optimizer, "config": {**settings, "learning_rate": rate}})
    return rate.hold_in(optimizer) if held else optimizer


def fit(
    model, train_inputs, y_train, val_inputs, y_val, train: TrainConfig, console: Console, extra_callbacks=(), class_weight=None, checkpoint=None
) -> TrainResult:
    """Fit ``model`` (already compiled); return its per-epoch history and where it stopped.

    ``train_inputs`` are arrays with targets ``y_train``, or (``y_train`` None) a
    ``keras.utils.PyDataset`` of (x, y) batches with ``val_inputs`` another.
    ``class_weight`` (class index to weight, ``dlw.classes.class_weights``) weighs the train rows' loss.
    With a ``checkpoint`` (a ``dlw.resume.PhaseState``) the phase's state is saved after every
    epoch, and a saved state is trained on from its next epoch.
    """
    callbacks: list = [_MonitorCheck(train), *extra_callbacks]
    stopper = None
    if train.early_stopping:
        # A cosine schedule does its best work late, at small rates: no stop in its first half,
        # though the best epoch may still be an early one (validation decides, as in RealMLP).
        stopper = _EarlyStopping(
            monitor=train.early_stopping.monitor, patience=train.early_stopping.patience, restore_best_weights=True,
            min_epochs=train.epochs // 2 if train.schedule == "cosine" else 0,
        )
        callbacks.append(stopper)
    state, saver = resumed_state(model, stopper, checkpoint)
    if state is not None and saver is None:  # the killed run had finished this phase
        return finished_result(state, stopper)
    if saver is not None:
        callbacks.append(saver)  # after the stopper: it restores and saves the stopper's state
        if state or checkpoint.first:
            console.say(f"    resumed after epoch {state['epoch']} of {train.epochs}" if state else "    progress saved after every epoch (--resume)")
    callbacks.append(_Progress(train.epochs, console))
    start = time.perf_counter()
    initial = state["epoch"] if state else 0
    if y_train is None:  # a keras.utils.PyDataset yielding (x, y) batches; it shuffles itself
        fitted = model.fit(
            train_inputs, validation_data=val_inputs, epochs=train.epochs, initial_epoch=initial, verbose=0, callbacks=callbacks, class_weight=class_weight
        )
    else:
        fitted = model.fit(
            train_inputs,
            y_train,
            validation_data=(val_inputs, y_val),
            epochs=train.epochs,
            initial_epoch=initial,
            batch_size=train.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
            class_weight=class_weight,
        )
    seconds = time.perf_counter() - start + (state["seconds"] if state else 0.0)
    rows = saver.history if saver is not None else pd.DataFrame(fitted.history).to_dict(orient="records")
    stopped = stopper is not None and stopper.stopped_epoch > 0
    return TrainResult(history_frame(rows), best_epoch_of(stopper, len(rows)), stopped, seconds)


def resumed_state(model, stopper, checkpoint):
    """``(saved state or None, the checkpoint callback or None)``; no callback when the saved phase was finished."""
    if checkpoint is None:
        return None, None
    from dlw.resume import CheckpointCallback, check_saved_variables_fit, finish_restored

    state = checkpoint.load()
    if state is not None:
        check_saved_variables_fit(model, state)  # once, before either way of putting it back
        if finish_restored(model, stopper, state):
            return state, None
    return state, CheckpointCallback(checkpoint, stopper, state)


def finished_result(state: dict, stopper) -> TrainResult:
    """The result of a phase the killed run had finished, from its saved state."""
    saved = state["stopper"] or {}
    best = saved.get("best_epoch", 0) + 1 if stopper is not None and state["best"] else len(state["history"])
    return TrainResult(history_frame(state["history"]), int(best), saved.get("stopped_epoch", 0) > 0, float(state["seconds"]))


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per epoch, numbered from 1 in its first column."""
    history = pd.DataFrame(rows)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return history


def best_epoch_of(stopper, epochs_run: int) -> int:
    """The 1-based epoch whose weights the model holds after fitting."""
    if stopper is not None and stopper.best_weights is not None:
        return int(stopper.best_epoch) + 1
    return epochs_run


class _EarlyStopping:
    """Keras's ``EarlyStopping`` that keeps the best epoch from the first one on but stops no earlier than ``min_epochs``.

    Keras's own ``start_from_epoch`` would also ignore the best epoch when it falls before
    that point (attrition's AUC fell from 0.79 to 0.74 with it).
    """

    def __new__(cls, *, min_epochs: int, **kwargs):
        import keras

        class EarlyStopping(keras.callbacks.EarlyStopping):
            def on_epoch_end(self, epoch, logs=None):
                stopping_before = self.model.stop_training  # another callback's stop is left alone
                super().on_epoch_end(epoch, logs)
                if not stopping_before and self.stopped_epoch == epoch and epoch + 1 < min_epochs:
                    self.model.stop_training, self.stopped_epoch = False, 0

        return EarlyStopping(**kwargs)


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
    """A live epoch bar on a terminal, a line updated in place in a notebook; a line every few epochs in run.log."""

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
                self.line = console.live_line() if self.bar is None else None  # Jupyter: no terminal to redraw
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                order = sorted(logs, key=lambda k: (k.removeprefix("val_") != "loss", k.removeprefix("val_"), k.startswith("val_")))
                text = "  ".join(f"{k} {logs[k]:.4g}" for k in order)
                if self.bar is not None:
                    self.bar.update(self.task, advance=1, description=text)
                if self.line is not None:
                    self.line(f"    epoch {epoch + 1}/{epochs}: {text}  ({time.perf_counter() - self.started:.1f} s)")
                if (epoch + 1) % self.every == 0 or epoch == 0:
                    console.log_only(f"    epoch {epoch + 1}: {text}")

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.stop()

        return Progress()
