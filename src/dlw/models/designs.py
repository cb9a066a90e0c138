"""The designs a table's network averages: one, or on a small table whose target bends, two.

Below ``EMBEDDING_MIN_ROWS`` train rows tabm reads its numbers scaled only: embeddings overfit
a few hundred rows where the target is near linear in them (bench/RESULTS.md, stop 25). Where the
target bends, they help. Which of the two holds is read from the baselines, not the network: the
cross-fitted linear baseline's out-of-fold rmse over boosting's (``dlw.baselines.linear_over_boosting``).
At ``BEND_RATIO`` or more the network is the mean of both designs, the cross-fitted networks
reading the numbers scaled only and as many embedding them. Averaging keeps most of what the
embeddings gain and halves what they lose: on ten small regression tables no earlier run had
used, it lowered rmse in 16 of 19 runs where the ratio fired, by 7.2% on average, and raised it
by 0.7% at worst; embeddings alone had lost 3.4% on one of them and 10.3% on ggplot2's mpg
(bench/RESULTS.md, stop 43). The run waits for the baselines only where the ratio could decide.
"""

from __future__ import annotations

from typing import Callable

from dlw.console import QUIET, Console
from dlw.models import EMBEDDING_MIN_ROWS, along_a_date, tabm_embeddings

# The linear baseline's out-of-fold rmse over boosting's from which a small table's target is taken to bend.
BEND_RATIO = 1.2
# The design averaged with the numbers scaled only where the target bends.
BEND_EMBEDDINGS = "piecewise_linear_and_periodic"


def ratio_decides_design(config, prepared) -> bool:
    """Whether the baselines' ratio decides ``prepared``'s network: tabm's auto embeddings left a small regression table's
    numbers scaled only, and the run cross-fits (which gives the baselines an out-of-fold loss)."""
    m, splits = config.model, prepared.splits
    if m.kind != "tabm" or m.embeddings != "auto" or prepared.problem.task != "regression":
        return False
    if splits is None or splits.fold_count < 2 or not any(f.kind == "numeric" for f in prepared.schema.features):
        return False
    return tabm_embeddings(config, prepared.count("train"), "regression", dated=along_a_date(prepared)) == "none"


def averages_designs(config, prepared, ratio: float | None) -> bool:
    """Whether the network is the mean of both designs: the ratio decides it, and ``ratio`` is at least ``BEND_RATIO``."""
    return ratio is not None and ratio >= BEND_RATIO and ratio_decides_design(config, prepared)


def design_configs_and_why(config, prepared, ratio_of: Callable[[], float | None], console: Console = QUIET) -> tuple[list, str]:
    """The configs of the designs the network averages, and what the model line adds for a second one ("" for one).

    ``ratio_of()`` gives ``dlw.baselines.linear_over_boosting`` of the run's baselines, waiting for them;
    it is called only where the ratio decides, and ``console`` says why the run waits.
    """
    if not ratio_decides_design(config, prepared):
        return [config], ""
    console.say(f"    under {EMBEDDING_MIN_ROWS} train rows: waiting for the cross-fitted baselines, whose out-of-fold losses say whether the target bends")
    ratio = ratio_of()
    if not averages_designs(config, prepared, ratio):
        return [config], ""
    embedded = config.model_copy(deep=True)
    embedded.model.embeddings = BEND_EMBEDDINGS
    folds = prepared.splits.fold_count
    why = (
        f", and {folds} more with piecewise-linear and periodic number embeddings ({BEND_EMBEDDINGS}), all {2 * folds} averaged: "
        f"the linear baseline's out-of-fold rmse is {ratio:.2f} times boosting's, so the target bends in ways a linear model cannot "
        f"follow, which embeddings can (model.embeddings: auto; under {EMBEDDING_MIN_ROWS} train rows where it is {BEND_RATIO} or more; "
        "bench/RESULTS.md, stop 43)"
    )
    return [config, embedded], why


def bend_hint(config, prepared, ratio: float | None) -> str | None:
    """A hint to read a group's number as a category, where the network averages both designs and step 3 noted one; else None.

    The bend boosting follows may be each group's own level, which a category learns and an embedding of the number does
    not (lme4's grouseticks, one table, one seed: a pointer, not a measured rule; bench/RESULTS.md, stop 43).
    """
    # averages_designs first: only a table's schema has group numbers
    if not averages_designs(config, prepared, ratio) or not (groups := prepared.schema.group_number_names):
        return None
    types = ", ".join(f"{name}: categorical" for name in groups)
    return (
        f"hint: boosting follows this target better than a linear model ({ratio:.2f} times lower out-of-fold rmse), and step 3 noted "
        f"{', '.join(groups)} as likely a group's number: boosting may be following each group's own level, which a category learns; "
        f"try data.types: {{{types}}} (on lme4's grouseticks, whose ticks follow the brood: rmse 8.07 -> 4.10 with the brood's number "
        "read as a category, seed 42)"
    )


__all__ = ["BEND_EMBEDDINGS", "BEND_RATIO", "averages_designs", "bend_hint", "design_configs_and_why", "ratio_decides_design"]
