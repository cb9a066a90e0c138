"""The designs a table's network averages: on a small table, how far its target bends decides them.

Below ``EMBEDDING_MIN_ROWS`` train rows tabm reads its numbers scaled only: embeddings overfit
a few hundred rows where the target is near linear in them (bench/RESULTS.md, stop 25). Where the
target bends, they help. Which of the two holds is read from the baselines, not the network: the
cross-fitted linear baseline's out-of-fold rmse over boosting's (``dlw.baselines.linear_over_boosting``).
At ``BEND_RATIO`` or more the network is the mean of both designs, the cross-fitted networks
reading the numbers scaled only and as many embedding them. Averaging keeps most of what the
embeddings gain and halves what they lose: on ten small regression tables no earlier run had
used, it lowered rmse in 16 of 19 runs where the ratio fired, by 7.2% on average, and raised it
by 0.7% at worst; embeddings alone had lost 3.4% on one of them and 10.3% on ggplot2's mpg
(bench/RESULTS.md, stop 43). From ``STRONG_BEND_RATIO`` the bend is strong enough that the embeddings
alone do better than the mean: on 12 small tables no earlier run had used, in the 23 runs where the ratio
was 1.5 or more, they were better in 20, rmse 14.9% lower on average, and no table was worse by more than
0.1% on average (bench/RESULTS.md, stop 45). The run waits for the baselines only where the ratio could decide.
"""

from __future__ import annotations

from typing import Callable

from dlw.console import QUIET, Console
from dlw.groups import trial_columns
from dlw.models import EMBEDDING_MIN_ROWS, along_a_date, tabm_embeddings

# The linear baseline's out-of-fold rmse over boosting's from which a small table's target is taken to bend.
BEND_RATIO = 1.2
# From this ratio on, the numbers are embedded only: the bend is strong enough that the numbers scaled only add nothing.
STRONG_BEND_RATIO = 1.5
# The design averaged with the numbers scaled only where the target bends, and kept alone where it bends strongly.
BEND_EMBEDDINGS = "piecewise_linear_and_periodic"
# What ``design_embeddings_for`` gives where the ratio chose nothing: the config's own design.
OWN_DESIGN = ("auto",)


def ratio_decides_design(config, prepared) -> bool:
    """Whether the baselines' ratio decides ``prepared``'s network: tabm's auto embeddings left a small regression table's
    numbers scaled only, and the run cross-fits (which gives the baselines an out-of-fold loss)."""
    m, splits = config.model, prepared.splits
    if m.kind != "tabm" or m.embeddings != "auto" or prepared.problem.task != "regression":
        return False
    if splits is None or splits.fold_count < 2 or not any(f.kind == "numeric" for f in prepared.schema.features):
        return False
    return tabm_embeddings(config, prepared.count("train"), "regression", dated=along_a_date(prepared)) == "none"


def design_embeddings_for(config, prepared, ratio: float | None) -> tuple[str, ...]:
    """``model.embeddings`` of each design the network averages, from the baselines' ``ratio``: ``("auto",)`` (the config's
    own) where the ratio does not decide or is under ``BEND_RATIO``; ``("auto", BEND_EMBEDDINGS)`` up to ``STRONG_BEND_RATIO``;
    ``(BEND_EMBEDDINGS,)`` from it."""
    if ratio is None or ratio < BEND_RATIO or not ratio_decides_design(config, prepared):
        return OWN_DESIGN
    return (BEND_EMBEDDINGS,) if ratio >= STRONG_BEND_RATIO else ("auto", BEND_EMBEDDINGS)


def design_configs_and_why(config, prepared, ratio_of: Callable[[], float | None], console: Console = QUIET) -> tuple[list, str]:
    """The configs of the designs the network averages, and what the model line adds where the ratio chose them ("" elsewhere).

    ``ratio_of()`` gives ``dlw.baselines.linear_over_boosting`` of the run's baselines, waiting for them;
    it is called only where the ratio decides, and ``console`` says why the run waits.
    """
    if not ratio_decides_design(config, prepared):
        return [config], ""
    console.say(f"    under {EMBEDDING_MIN_ROWS} train rows: waiting for the cross-fitted baselines, whose out-of-fold losses say whether the target bends")
    ratio = ratio_of()
    chosen = design_embeddings_for(config, prepared, ratio)
    if chosen == OWN_DESIGN:
        return [config], ""
    designs = [with_embeddings(config, embeddings) for embeddings in chosen]
    folds = prepared.splits.fold_count
    embedded = f"piecewise-linear and periodic number embeddings ({BEND_EMBEDDINGS})"
    rule = f"model.embeddings: auto; under {EMBEDDING_MIN_ROWS} train rows, the mean of networks with and without them from {BEND_RATIO}, with them alone from {STRONG_BEND_RATIO}; bench/RESULTS.md, stops 43 and 45"
    bend = f"the linear baseline's out-of-fold rmse is {ratio:.2f} times boosting's, so the target bends in ways a linear model cannot follow, which embeddings can"
    if len(designs) == 1:
        return designs, f", each with {embedded}: {bend}, and strongly ({rule})"
    return designs, f", and {folds} more with {embedded}, all {2 * folds} averaged: {bend} ({rule})"


def with_embeddings(config, embeddings: str):
    """``config`` itself for ``"auto"``, else a copy whose numbers enter by ``embeddings`` (``model.embeddings``)."""
    if embeddings == "auto":
        return config
    other = config.model_copy(deep=True)
    other.model.embeddings = embeddings
    return other


def bend_hint(config, prepared, ratio: float | None) -> str | None:
    """A hint to read a group's number as a category, where the baselines' ratio chose the designs and step 3 noted one; else None.

    The bend boosting follows may be each group's own level, which a category learns and an embedding of the number does
    not: followed on six small tables whose step 3 noted such a number, it lowered the network's rmse in 11 of 11 runs
    (bench/RESULTS.md, stops 43 and 45). Said only where ``data.group_numbers: number`` keeps the number as written: under
    ``auto`` the first fold's networks have already tried the category (``dlw.groups``).
    """
    # the ratio first: only a table's schema has group numbers; where data.group_numbers tried them, its trial answered
    if design_embeddings_for(config, prepared, ratio) == OWN_DESIGN or not (groups := prepared.schema.group_number_names) or trial_columns(config, prepared):
        return None
    types = ", ".join(f"{name}: categorical" for name in groups)
    return (
        f"hint: boosting follows this target better than a linear model ({ratio:.2f} times lower out-of-fold rmse), and step 3 noted "
        f"{', '.join(groups)} as likely a group's number: boosting may be following each group's own level, which a category learns; "
        f"try data.types: {{{types}}} (on six small tables with such a number, a chick's, a boy's, a patient's, its rmse fell in 11 of 11 "
        "runs read as a category, by 41% on average: datasets' ChickWeight 31.4 -> 9.05, nlme's Oxboys 2.79 -> 0.69 at seed 42; bench/RESULTS.md, stop 45)"
    )


__all__ = [
    "BEND_EMBEDDINGS", "BEND_RATIO", "OWN_DESIGN", "STRONG_BEND_RATIO", "bend_hint", "design_configs_and_why", "design_embeddings_for", "ratio_decides_design", "with_embeddings",
]
