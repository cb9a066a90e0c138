"""A group's number, read as a number or as a category: where the run cross-fits, the first fold's network decides.

Step 3 notes an integer column as likely a group's number (``dlw.schema.group_number_note``: 10
values or more, each on one block of consecutive rows: a chick, a patient, a school). Read as a
number, the network can only cut it into bins; as a category each group gets its own embedding,
which the network crosses with the other inputs (a chick's own growth curve). But a file sorted by a
measurement (a mother's age, a quarter, an income) has such blocks too, and a category cuts that
measurement into unrelated levels. Nothing in the column tells the two apart (bench/RESULTS.md,
stops 39 and 45), so the data decide: with ``data.group_numbers: auto``, on a cross-fitted regression
run of tabm, the first fold's network is trained both ways before the run's own networks, and the
categories are kept where their validation loss is ``GROUP_GAIN`` lower; the whole run (network and
baselines alike, as if ``data.types`` said so) then reads them that way. The test rows choose nothing.
"""

from __future__ import annotations

from dlw.console import QUIET, Console

# How much lower (a share) the first fold's validation loss must be with the group numbers read as categories
# for the run to read them so; below it, the number as written is kept (the reading of every earlier stop).
GROUP_GAIN = 0.10


def trial_columns(config, prepared) -> list[str]:
    """The columns ``data.group_numbers`` may read as categories: step 3's group numbers that ``data.types`` leaves inferred.

    ``auto`` tries them only where the run cross-fits a tabm network on a regression target; ``category`` everywhere on a table.
    """
    choice = config.data.group_numbers
    if choice == "number" or prepared.kind != "table":
        return []
    names = [name for name in prepared.schema.group_number_names if name not in config.data.types]
    if choice == "auto":
        cross_fitted = prepared.splits is not None and prepared.splits.fold_count > 1
        if config.model.kind != "tabm" or prepared.problem.task != "regression" or not cross_fitted:
            return []
    return names


def as_categories(config, names: list[str]):
    """A copy of ``config`` whose ``data.types`` reads ``names`` as categories."""
    other = config.model_copy(deep=True)
    other.data.types = {**config.data.types, **{name: "categorical" for name in names}}
    return other


def first_fold_loss(config, prepared, objective) -> float:
    """The validation loss (at its best epoch) of the network ``config`` trains on ``prepared``'s first fold, as the run would train it."""
    from dlw.distribute import apply_distribution, release
    from dlw.train import fit_network, plan_training

    planned = plan_training(config, prepared.count("train"), task=prepared.problem.task)
    distribution = apply_distribution(planned, QUIET)
    try:
        _, _, result = fit_network(planned, prepared.without_folds(), objective, None, QUIET, distribution)
    finally:
        release(distribution)
    loss = result.kept_validation_loss()
    return float("inf") if loss is None else loss


def group_reading(config, prepared, objective, console: Console = QUIET):
    """``prepared``, or the same rows re-read with step 3's group numbers as categories (``data.group_numbers``; see the module).

    The re-read data carry a note of what decided, which the run folder keeps (``schema.json``'s notes).
    """
    names = trial_columns(config, prepared)
    if not names:
        return prepared
    columns = f"column{'s' if len(names) > 1 else ''} {', '.join(repr(name) for name in names)}"
    other_config = as_categories(config, names)
    other = prepared.read_again(other_config)  # a table's: only a table has group numbers (trial_columns)
    if config.data.group_numbers == "category":
        return with_note(other, f"{columns} read as a category, one level per group (data.group_numbers: category)", console)
    console.say(f"    {columns} likely a group's number: the first fold's network trains reading it as a number, then as a category, to choose")
    as_number, as_category = first_fold_loss(config, prepared, objective), first_fold_loss(other_config, other, objective)
    if as_category <= (1 - GROUP_GAIN) * as_number:
        figures = f"the first fold's validation loss {as_category:.4g}, against {as_number:.4g} read as a number"
        return with_note(other, f"{columns} read as a category, one level per group: {figures} (data.group_numbers: number keeps the number)", console)
    figures = f"the first fold's validation loss {as_number:.4g}, against {as_category:.4g} read as a category"
    return with_note(prepared, f"{columns} kept as a number: {figures}, not {GROUP_GAIN:.0%} lower (data.group_numbers: category reads it as one)", console)


def with_note(prepared, note: str, console: Console):
    """``prepared`` with ``note`` said and added to its notes."""
    console.say(f"    {note}")
    prepared.notes.append(note)
    return prepared


__all__ = ["GROUP_GAIN", "as_categories", "first_fold_loss", "group_reading", "trial_columns"]
