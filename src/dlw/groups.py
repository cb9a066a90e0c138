"""A group's number, read as a number or as a category: where the run cross-fits, the first fold's network decides.

Step 3 notes an integer column as likely a group's number (``dlw.schema.group_number_note``: 10
values or more, each on one block of consecutive rows: a chick, a patient, a school). Read as a
number, the network can only cut it into bins; as a category each group gets its own embedding,
which the network crosses with the other inputs (a chick's own growth curve). But a file sorted by a
measurement (a mother's age, a quarter, an income) has such blocks too, and a category cuts that
measurement into unrelated levels. Nothing in the column tells the two apart (bench/RESULTS.md,
stops 39 and 45), so the data decide: with ``data.group_numbers: auto``, on a cross-fitted regression
run of tabm, the first fold's network is trained both ways before the run's own networks, and the
categories are kept where their validation loss is ``GROUP_GAIN`` lower; the network then reads them
that way, as if ``data.types`` said so. The test rows choose nothing.

The baselines are not bound by the network's choice: the run's data carry the other reading too
(``Prepared.other_reading``), and each baseline fits both and keeps the one of lower out-of-fold
loss (``dlw.baselines``), so the verdict measures the network against each baseline's own best reading.
"""

from __future__ import annotations

from dlw.console import QUIET, Console

# How much lower (a share) the first fold's validation loss must be with the group numbers read as categories
# for the run to read them so; below it, the number as written is kept (the reading of every earlier stop).
GROUP_GAIN = 0.10


def trial_columns(config, prepared) -> list[str]:
    """The columns ``data.group_numbers`` may read as categories: step 3's group numbers that ``data.types`` leaves inferred
    (also once read as categories: ``group_reading`` keeps their mark).

    ``auto`` tries them only where the run cross-fits a tabm network on a regression target; ``category`` everywhere on a table.
    """
    choice = config.data.group_numbers
    if choice == "number" or prepared.kind != "table":
        return []
    names = [f.name for f in prepared.schema.features if f.group_number and f.name not in config.data.types]
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

    The reading chosen carries a note of what decided, which the run folder keeps (``schema.json``'s notes),
    and the other reading as ``other_reading``, for the baselines.
    """
    names = trial_columns(config, prepared)
    if not names:
        return prepared
    columns = f"column{'s' if len(names) > 1 else ''} {', '.join(repr(name) for name in names)}"
    other_config = as_categories(config, names)
    other = category_reading(prepared, other_config, names)
    if config.data.group_numbers == "category":
        return with_note(paired(other, prepared), f"{columns} read as a category, one level per group (data.group_numbers: category)", console)
    console.say(f"    {columns} likely a group's number: the first fold's network trains reading it as a number, then as a category, to choose")
    as_number, as_category = first_fold_loss(config, prepared, objective), first_fold_loss(other_config, other, objective)
    if as_category <= (1 - GROUP_GAIN) * as_number:
        figures = f"the first fold's validation loss {as_category:.4g}, against {as_number:.4g} read as a number"
        note = f"{columns} read as a category, one level per group: {figures} (data.group_numbers: number keeps the number)"
        return with_note(paired(other, prepared), note, console)
    figures = f"the first fold's validation loss {as_number:.4g}, against {as_category:.4g} read as a category"
    note = f"{columns} kept as a number: {figures}, not {GROUP_GAIN:.0%} lower (data.group_numbers: category reads it as one)"
    return with_note(paired(prepared, other), note, console)


def category_reading(prepared, config, names: list[str]):
    """``prepared``'s rows read again under ``config`` (``as_categories``), the categories ``names`` still marked as group numbers."""
    other = prepared.read_again(config)  # a table's: only a table has group numbers (trial_columns)
    for f in other.schema.features:
        f.group_number = f.group_number or f.name in names  # so that a finished run knows it had two readings
    return other


def paired(chosen, other):
    """``chosen``, carrying ``other`` as the reading its baselines may take instead."""
    chosen.other_reading = other
    return chosen


def with_other_reading(config, prepared, data=None, *, metrics: dict | None = None):
    """A finished run's ``prepared`` (its saved schema's reading) paired with the other reading of its group numbers, as training paired them.

    ``data``: new labelled rows (``Run.evaluate``), which the other reading encodes too, as its split ``"data"``. ``metrics``: the
    run's ``metrics.json``; a run whose baselines did not choose a reading (written before they could) is left unpaired, as it trained.
    """
    names = trial_columns(config, prepared)
    chose = metrics is None or any("group_numbers" in fit for fit in (metrics.get("baseline_fits") or {}).values())
    if not names or not chose:
        return prepared
    as_category = reading_name(prepared) == "category"
    other = prepared.read_again(config) if as_category else category_reading(prepared, as_categories(config, names), names)
    if data is not None:
        other.inputs["data"], other.targets["data"] = other.encode_labelled(data, QUIET)
    return paired(prepared, other)


def reading_name(prepared) -> str:
    """How ``prepared`` reads its marked group numbers: ``"category"`` or ``"number"``."""
    return "category" if any(f.group_number and f.kind == "categorical" for f in prepared.schema.features) else "number"


def with_note(prepared, note: str, console: Console):
    """``prepared`` with ``note`` said and added to its notes."""
    console.say(f"    {note}")
    prepared.notes.append(note)
    return prepared


__all__ = ["GROUP_GAIN", "as_categories", "category_reading", "first_fold_loss", "group_reading", "reading_name", "trial_columns", "with_other_reading"]
