"""Resuming a killed training: its state saved after every epoch, in the run's partial folder.

``TrainingCheckpoint`` lives in ``PARTIAL/checkpoint/``: ``identity.json`` (the config, the
data's fingerprint and the command that resumes it), ``progress.json`` (how far it got, for
messages) and one ``phaseN.npz`` per training phase, rewritten atomically after each epoch.
That file holds everything the next epoch depends on: every model variable (weights, and the
dropout seeds' state), the optimizer's variables (its iteration count, so a cosine schedule
carries on where it was), early stopping's state and best weights, the history so far and
NumPy's random state (Keras shuffles the rows with it). A run resumed from it trains the
remaining epochs only and, on JAX on a CPU, ends with the same weights as one never killed.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from dlw.errors import ConfigError, DataError
from dlw.runs import CHECKPOINT, data_fingerprint, phase_file_name, pause_point, read_json_or_none, write_atomic, write_json


class TrainingCheckpoint:
    """The per-epoch state of a run's training, in ``folder/checkpoint``; checked against the run resuming it."""

    def __init__(self, folder: Path, config, *, epochs: int | None = None, prefix: str = ""):
        self.folder = Path(folder) / CHECKPOINT
        self.config = config
        self.epochs = epochs
        self.prefix = prefix  # a cross-fitted network's: "fold2_"

    @classmethod
    def open(cls, folder: Path, config, *, command: str | None = None) -> "TrainingCheckpoint":
        """The checkpoint in ``folder``: a new one, or the one a killed run left there if it is the same run.

        Raises ``ConfigError``/``DataError`` naming what changed when the config or the
        data file differ from the killed run's.
        """
        checkpoint = cls(folder, config)
        identity = {
            "config": config.model_dump(mode="json"),
            "data_sha256": data_fingerprint(config.data.source),
            "command": command or default_resume_command(),
        }
        saved = read_json_or_none(checkpoint.folder / "identity.json")
        if saved is not None:
            check_same_run(saved, identity, config.data.source)
            return checkpoint
        checkpoint.folder.mkdir(parents=True, exist_ok=True)
        write_json(checkpoint.folder / "identity.json", identity)
        return checkpoint

    def phase(self, number: int, epochs: int) -> "PhaseState":
        every = self.config.train.checkpoint_seconds
        return PhaseState(self.folder / phase_file_name(number, prefix=self.prefix), self.folder / "progress.json", epochs, every=every, first=number == 1)

    def for_fold(self, k: int, folds: int, *, design: int = 0) -> "TrainingCheckpoint":
        """The checkpoint of cross-fitted network ``k`` of ``folds`` in ``design`` (this one when there is one network).

        Each network's phases have their own files, so a resumed run keeps the networks that
        had finished and carries on the one that was killed.
        """
        if folds == 1:
            return self
        prefix = f"fold{k + 1}_" + (f"design{design + 1}_" if design else "")
        return TrainingCheckpoint(self.folder.parent, self.config, epochs=self.epochs, prefix=prefix)


def default_resume_command() -> str:
    """This process's command line with ``--resume`` added (how a user continues it)."""
    args = [a for a in sys.argv[1:] if a != "--resume"]
    # `dlw ...` or `python -m dlw ...`; another `python -m` (pytest, a user's tool) is the Python API.
    started = Path(sys.argv[0])
    if started.name == "dlw" or started.resolve() == Path(__file__).with_name("__main__.py").resolve():
        return shlex.join(["dlw", *args, "--resume"])
    return "Workflow.train(..., resume=True) with the same config"


def flat_keys(value, prefix: str = "") -> dict:
    """A nested config dict as ``{"train.epochs": 20, ...}``."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(flat_keys(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


IGNORED_ON_RESUME = {"train.checkpoint_seconds"}  # how often to save does not change what is trained


def check_same_run(saved: dict, current: dict, source: str) -> None:
    """Raise unless the resuming run has the killed run's config and data."""
    before, now = flat_keys(saved.get("config", {})), flat_keys(current["config"])
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k) and k not in IGNORED_ON_RESUME)
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            f"--resume: the config differs from the killed run's ({shown}{more}); resume with its command "
            f"`{saved.get('command', '')}`, or pass --overwrite instead of --resume to start afresh"
        )
    if saved.get("data_sha256") != current["data_sha256"]:
        raise DataError(
            f"{source}: the data file changed since the killed run started (its SHA-256 differs), so its training "
            "cannot be continued; pass --overwrite instead of --resume to start afresh on the new data"
        )


class PhaseState:
    """One training phase's saved state: read on resume, rewritten after every epoch."""

    def __init__(self, path: Path, progress: Path, epochs: int, *, every: float = 0.0, first: bool = True):
        self.path, self.progress, self.epochs = path, progress, epochs
        self.first = first  # a network's first phase: where the console says that progress is saved
        self.every = every  # seconds between saves: short epochs are not slowed by a save each

    def load(self) -> dict | None:
        """The saved state (``epoch``, ``done``, ``history``, ... and the arrays), or None."""
        if not self.path.is_file():
            return None
        with np.load(self.path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))
            for group in ("variables", "optimizer", "best"):
                count = state["counts"][group]
                state[group] = [data[f"{group}_{i}"] for i in range(count)]
            state["numpy_random"] = (str(data["rng_kind"]), data["rng_keys"], *state["rng_rest"])
        state["file"] = str(self.path)
        return state

    def save(self, *, model, stopper, history: list[dict], done: bool, seconds: float) -> None:
        arrays = {f"variables_{i}": np.asarray(v) for i, v in enumerate(model.variables)}
        arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
        best = (stopper.best_weights or []) if stopper is not None else []
        arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(best)})
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        arrays.update(rng_kind=np.asarray(kind), rng_keys=keys)
        state = {
            "epoch": len(history),
            "done": done,
            "history": history,
            "seconds": seconds,
            "counts": {"variables": len(model.variables), "optimizer": len(model.optimizer.variables), "best": len(best)},
            "stopper": stopper_state(stopper),
            "rng_rest": [int(pos), int(has_gauss), float(gauss)],
        }
        arrays["state"] = np.asarray(json.dumps(state, default=float))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(self.path, buffer.getvalue())  # one file: weights and progress can never disagree
        write_json(self.progress, {"epoch": len(history), "epochs": self.epochs, "done": done, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def stopper_state(stopper) -> dict | None:
    if stopper is None:
        return None
    best = None if stopper.best is None else float(stopper.best)
    return {"wait": int(stopper.wait), "best": best, "best_epoch": int(stopper.best_epoch), "stopped_epoch": int(stopper.stopped_epoch)}


def check_saved_variables_fit(model, state: dict) -> None:
    """Raise ``ConfigError`` when the saved variables, the model's or its optimizer's, are not this run's (another dlw version's)."""
    held = [("variables", "variables", model.variables)]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and "optimizer" in state:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        held.append(("optimizer", "optimizer variables", optimizer.variables))  # stop 30's cycles hold their rates there
    for key, what, current in held:
        saved = [tuple(np.shape(v)) for v in state[key]]
        if saved != [tuple(v.shape) for v in current]:
            raise ConfigError(
                f"--resume: {state.get('file', 'the saved training state')} holds {len(saved)} {what} that do not fit this model's "
                f"{len(current)} (it was saved by another version of dlw); pass --overwrite instead of --resume to start afresh"
            )


def finish_restored(model, stopper, state: dict) -> bool:
    """For a phase the killed run had finished (or early stopping had ended): its final weights back; True then."""
    stopped = bool(state["stopper"] and state["stopper"]["stopped_epoch"] > 0)
    if not (state["done"] or stopped):
        return False
    for variable, value in zip(model.variables, state["variables"], strict=True):
        variable.assign(value)
    if not state["done"] and state["best"]:
        model.set_weights(state["best"])  # what early stopping's on_train_end would have done
    return True


def restore(model, stopper, state: dict) -> None:
    """Put ``state`` back into a freshly built and compiled ``model`` and its early stopping."""
    for variable, value in zip(model.variables, state["variables"], strict=True):
        variable.assign(value)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    for variable, value in zip(optimizer.variables, state["optimizer"], strict=True):
        variable.assign(value)
    if stopper is not None and state["stopper"] is not None:
        for name, value in state["stopper"].items():
            setattr(stopper, name, value)
        stopper.best_weights = state["best"] or None
    np.random.set_state(state["numpy_random"])


class CheckpointCallback:
    """The Keras callback that restores a phase's state when training begins and saves it after each epoch.

    It must come after ``EarlyStopping`` in the callback list: it restores early stopping's
    state after that resets itself, and saves it after that updates it.
    """

    def __new__(cls, phase: PhaseState, stopper, state: dict | None):
        import keras

        class Checkpoint(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.history = list(state["history"]) if state else []
                self.earlier = state["seconds"] if state else 0.0
                self.start = self.saved_at = time.perf_counter()
                if state is not None:
                    restore(self.model, stopper, state)

            def on_epoch_end(self, epoch, logs=None):
                self.history.append({k: float(v) for k, v in (logs or {}).items()})
                if time.perf_counter() - self.saved_at >= phase.every or self.model.stop_training:
                    self._save(done=False)
                    pause_point(f"epoch:{epoch + 1}")

            def on_train_end(self, logs=None):
                self._save(done=True)  # after early stopping put the best weights back

            def _save(self, done: bool):
                seconds = self.earlier + time.perf_counter() - self.start
                phase.save(model=self.model, stopper=stopper, history=self.history, done=done, seconds=seconds)
                self.saved_at = time.perf_counter()

        return Checkpoint()
