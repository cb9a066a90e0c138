"""Cross-fitting: K networks, each validated on one fold of the non-test rows, predicting as their mean.

One network leaves its validation rows (a fifth of the labelled rows that are not test rows)
out of training. Cross-fitted, the train and validation rows together are cut into K folds
(stratified for classes); network k trains on every fold but fold k and is early-stopped on
fold k, so each of those rows trains K - 1 networks. The test rows are the one-network run's,
and ``model.keras`` holds the K networks (``fold_0`` ... ``fold_{K-1}``) and their mean.

The first fold is the run's validation split, and ``fold_0`` the network that never saw it.
So every check that reads the validation split (temperature scaling, the decision threshold,
the unfamiliar-input detector's calibration, the validation metrics) reads ``fold_0`` there
(``validation_network``): an out-of-fold output, not the mean of networks that trained on
those rows. The baselines are cross-fitted the same way (``dlw.baselines``), so the verdict
compares like with like. This is AutoGluon's bagging, and TabArena's protocol for every model.

``folds: auto`` cross-fits tabm on regression tables of up to ``AUTO_MAX_ROWS`` non-test rows, where
it was measured worth five times the training (bench/RESULTS.md, 3-5 seeds): five folds lowered
the network's rmse by 3.3% (development tables, 31 of 35 runs better) and 6.5% (held-out, 14 of
18). On classification the gain was within the 0.005 that the verdict's bars call a difference
(AUC +0.008 and +0.002, accuracy +0.002; 5 of 9 held-out runs better), and on 43,000 non-test
rows (diamonds) 0-0.7%: there ``auto`` trains one network.
"""

from __future__ import annotations

import numpy as np

from dlw.errors import ConfigError

AUTO_FOLDS = 5
AUTO_MAX_ROWS = 20_000
MEMBER_PREFIX = "fold_"
DESIGN_INFIX = "_design_"


def fold_count(config, task: str, n_rest: int) -> int:
    """How many networks a table run trains: ``train.folds``, with ``auto`` decided from the kind, the task, the split and ``n_rest`` non-test rows.

    Raises ``ConfigError`` for an explicit count a chronological split or the rows cannot take.
    """
    folds = config.train.folds
    ordered = bool(config.data.split.time_column)
    if folds == "auto":
        worth_it = config.model.kind == "tabm" and task == "regression" and not ordered
        return AUTO_FOLDS if worth_it and n_rest <= AUTO_MAX_ROWS else 1
    if folds > 1 and ordered:
        raise ConfigError(
            f"key 'train.folds': cross-fitting ({folds} folds) needs a random split, but data.split.order is set; set train.folds: 1 or remove data.split.order"
        )
    if folds > 1 and n_rest < 2 * folds:
        raise ConfigError(f"key 'train.folds': {folds} folds need at least {2 * folds} train and validation rows; found {n_rest}; use fewer folds")
    return int(folds)


def fold_rows(rest: np.ndarray, labels: np.ndarray | None, folds: int, seed: int, *, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The non-test rows ``rest`` cut into ``folds`` seeded folds, each sorted: stratified on ``labels``, or of whole
    ``groups`` (each row's group code, a split by group's: ``dlw.data.splits.make_group_splits``), when given."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    order = np.argsort(rest, kind="stable")
    rest = rest[order]
    if groups is not None:
        cut = GroupKFold(folds, shuffle=True, random_state=seed).split(rest, groups=np.asarray(groups)[order])
        return [np.sort(rest[at]) for _, at in cut]
    labels = None if labels is None else np.asarray(labels)[order]
    if labels is not None and np.unique(labels, return_counts=True)[1].min() < folds:
        labels = None  # a class with fewer rows than folds cannot be in every fold
    cutter = (StratifiedKFold if labels is not None else KFold)(folds, shuffle=True, random_state=seed)
    return [np.sort(rest[at]) for _, at in cutter.split(rest, labels)]


def member_name(k: int, design: int = 0) -> str:
    """The layer name of the network early-stopped on fold ``k``: ``fold_k``, or ``fold_k_design_2`` for a second design's."""
    return f"{MEMBER_PREFIX}{k}" + (f"{DESIGN_INFIX}{design + 1}" if design else "")


def member_place(name: str) -> tuple[int, int]:
    """``(design, fold)`` of a member's layer name (``member_name``), both counted from 0."""
    fold, _, design = name.removeprefix(MEMBER_PREFIX).partition(DESIGN_INFIX)
    return (int(design) - 1 if design else 0), int(fold)


def crossfit_model(members: list, name: str = "dlw_crossfit", *, folds: int | None = None):
    """One Keras model predicting the mean of ``members``, which it holds named by ``member_name``.

    ``members`` are in design order, ``folds`` networks each (default: all of them, one design).
    """
    import keras

    folds = folds or len(members)
    for j, member in enumerate(members):
        member.name = member_name(j % folds, j // folds)
    inputs = keras.tree.map_structure(lambda t: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name), members[0].input)
    mean = keras.layers.Average(name="crossfit_mean")([member(inputs) for member in members])
    return keras.Model(inputs, mean, name=name)


def fold_members(model) -> list:
    """The networks a cross-fitted ``model`` averages, design by design, in fold order; ``[]`` for one network."""
    members = [layer for layer in model.layers if layer.name.startswith(MEMBER_PREFIX)]
    return sorted(members, key=lambda m: member_place(m.name))


def fold_networks(model) -> list:
    """The first design's network of each fold, in fold order; ``[]`` for one network."""
    return [member for member in fold_members(model) if member_place(member.name)[0] == 0]


def validation_network(model):
    """What predicts the validation split out of sample: ``model``, or for a cross-fitted one the first fold's network
    (with two designs, the mean of both first-fold networks).

    A calibrated model's ``calibration`` layer is kept on top of that network.
    """
    first = [member for member in fold_members(model) if member_place(member.name)[1] == 0]
    if not first:
        return model
    import keras

    outputs = [member(model.input) for member in first]
    output = outputs[0] if len(outputs) == 1 else keras.layers.Average(name="first_fold_mean")(outputs)
    if "calibration" in {layer.name for layer in model.layers}:
        output = model.get_layer("calibration")(output)
    return keras.Model(model.input, output, name="validation_network")


def features_network(model):
    """The network whose penultimate layer the unfamiliar-input detector reads: ``model`` or its first fold's.

    The detector is calibrated on the validation split, which only the first fold's network
    never trained on.
    """
    members = fold_members(model)
    return members[0] if members else model


def describe_folds(splits) -> str:
    """One console line for cross-fitted ``splits``."""
    folds, n_rest = splits.fold_count, len(splits.train) + len(splits.validation)
    return (
        f"cross-fitted (train.folds): {folds} networks, each early-stopped on one of {folds} folds of the {n_rest} train and "
        f"validation rows and trained on the other {folds - 1}; they predict as their mean"
    )


def networks_note(splits, designs_why: str = "") -> str:
    """What the model line adds for a cross-fitted run: how many such networks (empty for one), and ``designs_why``
    (``dlw.models.designs.design_configs_and_why``) where a second design is averaged with them."""
    folds = splits.fold_count if splits is not None else 1
    return f"; {folds} such networks, cross-fitted (train.folds){designs_why}" if folds > 1 else ""


def folds_text(folds: list[dict]) -> str:
    """A cross-fitted run's networks in one sentence (metrics.json's ``training.folds``)."""
    each = ", ".join(f"{fold['best_epoch']} of {fold['epochs_run']}" for fold in folds)
    embeddings = [fold["embeddings"] for fold in folds if "embeddings" in fold]  # set where the baselines chose the designs
    kinds = dict.fromkeys(embeddings)
    if len(kinds) > 1:
        of = " (" + ", ".join(f"{embeddings.count(kind)} with number embeddings {kind}" for kind in kinds) + ")"
    else:
        of = "".join(f" (each with number embeddings {kind})" for kind in kinds)
    return (
        f"{len(folds)} networks{of}, each early-stopped on one fold of the train and validation rows and trained on the others; "
        f"the model predicts their mean. The epochs above are the first network's; best epoch of epochs run, network by network: {each}"
    )
